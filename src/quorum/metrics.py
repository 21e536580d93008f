"""Every Prometheus metric Quorum exposes, defined once. Adapters import and update them;
`GET /metrics` serves `REGISTRY`. Labels are low-cardinality (symbol, side, voter, class)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

REGISTRY = CollectorRegistry(auto_describe=True)

# --- account and record -----------------------------------------------------------------
EQUITY = Gauge("quorum_equity_usd", "Account equity (wallet + unrealised P&L)", registry=REGISTRY)
REALIZED_PNL = Gauge("quorum_realized_pnl_usd", "Realised net P&L since start of record", registry=REGISTRY)
UNREALIZED_PNL = Gauge("quorum_unrealized_pnl_usd", "Unrealised P&L of open positions", registry=REGISTRY)
FEES_PAID = Counter("quorum_fees_paid_usd", "Trading fees paid", registry=REGISTRY)
FUNDING_PAID = Counter("quorum_funding_paid_usd", "Funding paid (negative increments not allowed: see received)",
                       registry=REGISTRY)
FUNDING_RECEIVED = Counter("quorum_funding_received_usd", "Funding received", registry=REGISTRY)
OPEN_POSITIONS = Gauge("quorum_open_positions", "Open positions", registry=REGISTRY)
TRADES = Counter("quorum_trades_total", "Closed trades", ["symbol", "side"], registry=REGISTRY)
WINS = Counter("quorum_wins_total", "Closed trades with net P&L > 0", ["symbol", "side"], registry=REGISTRY)
WIN_RATE = Gauge("quorum_win_rate", "Win rate of the record (see trades for n)", registry=REGISTRY)
DRAWDOWN = Gauge("quorum_drawdown_pct", "Drawdown from the equity peak, percent", registry=REGISTRY)

# --- breakers ---------------------------------------------------------------------------
BREAKER_TRIPPED = Gauge("quorum_breaker_tripped", "1 while a breaker blocks entries", ["breaker"],
                        registry=REGISTRY)
BREAKER_TRIPS = Counter("quorum_breaker_trips_total", "Breaker trips", ["breaker"], registry=REGISTRY)

# --- models -----------------------------------------------------------------------------
MODEL_CALLS = Counter("quorum_model_calls_total", "Model calls", ["voter"], registry=REGISTRY)
MODEL_ERRORS = Counter("quorum_model_errors_total", "Model call errors and abstentions", ["voter", "kind"],
                       registry=REGISTRY)
MODEL_LATENCY = Histogram(
    "quorum_model_latency_seconds", "Model call latency", ["voter"], registry=REGISTRY,
    buckets=(0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 120, 300),
)
MODEL_TOKENS = Counter("quorum_model_tokens_total", "Model tokens", ["voter", "direction"], registry=REGISTRY)
MODEL_COST = Counter("quorum_model_cost_usd_total", "Model cost in USD", ["voter"], registry=REGISTRY)
CACHE_HITS = Counter("quorum_cache_hits_total", "AI cache hits", registry=REGISTRY)
CACHE_MISSES = Counter("quorum_cache_misses_total", "AI cache misses", registry=REGISTRY)

# --- exchange and loops -----------------------------------------------------------------
EXCHANGE_WEIGHT = Gauge("quorum_exchange_weight_used_1m", "Binance X-MBX-USED-WEIGHT-1M last seen",
                        registry=REGISTRY)
ORDER_ERRORS = Counter("quorum_order_errors_total", "Order errors by class", ["error_class"], registry=REGISTRY)
LOOP_DURATION = Histogram(
    "quorum_loop_duration_seconds", "Duration of one engine loop iteration", ["loop"], registry=REGISTRY,
    buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 120),
)
STEP_FAILURES = Counter("quorum_engine_step_failures_total", "Engine steps that failed, by where and error type",
                        ["where", "error"], registry=REGISTRY)
FUNDING_EVENTS = Counter("quorum_paper_funding_events_total",
                         "Paper funding events by rate source (published rate or the PAPER_FUNDING_RATE fallback)",
                         ["source"], registry=REGISTRY)
LAST_SCAN = Gauge("quorum_last_scan_timestamp_seconds", "Unix time of the last completed scan", registry=REGISTRY)
