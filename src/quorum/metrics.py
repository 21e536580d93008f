"""Every Prometheus metric family Quorum exposes, defined once. Three kinds, by where the truth is:

- RECORD families (trades, wins, win rate, realised P&L, fees, funding, breaker trips): totals of
  the record in Postgres, read when /metrics is scraped, so a restart never zeroes them;
- STATE families (equity, unrealised P&L, open positions, drawdown, breakers tripped, last scan,
  engine start): the engine's current state as its `RuntimeState` carries it — the figures /status
  shows, rendered from the same /status body;
- PROCESS families (model calls, errors, latency, tokens, cost; cache hits and misses; exchange
  weight; order errors; loop duration; step failures; funding events): counters and histograms
  the engine process keeps in `REGISTRY` since it started (a restart resets them, as any
  Prometheus counter; their `_created` samples and `quorum_engine_start_time_seconds` say when).
  Adapters import and update them; the engine process publishes `REGISTRY` to the API process.

`quorum.api.metrics_view` renders all three for GET /metrics. Labels are low-cardinality
(symbol, side, voter, class).
"""

from __future__ import annotations

from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


@dataclass(frozen=True, slots=True)
class Family:
    """A record or state family: rendered at scrape time, never updated in place. `name` is the
    family name (a counter's samples add `_total`)."""

    name: str
    help: str
    type: str  # "gauge" | "counter"
    labels: tuple[str, ...] = ()


# --- record (Postgres) ------------------------------------------------------------------------
TRADES = Family("quorum_trades", "Closed trades in the record (Postgres)", "counter", ("symbol", "side"))
WINS = Family("quorum_wins", "Closed trades with net P&L > 0 in the record (Postgres)", "counter",
              ("symbol", "side"))
WIN_RATE = Family("quorum_win_rate", "Win rate of the record (wins / trades; NaN before the first trade)", "gauge")
REALIZED_PNL = Family("quorum_realized_pnl_usd", "Net P&L of the closed trades in the record (after fees and funding)",
                      "gauge")
FEES_PAID = Family("quorum_fees_paid_usd", "Trading fees of every fill in the record", "counter")
FUNDING_PAID = Family("quorum_funding_paid_usd", "Funding paid, summed over the record's funding payments", "counter")
FUNDING_RECEIVED = Family("quorum_funding_received_usd", "Funding received, summed over the record's funding payments",
                          "counter")
BREAKER_TRIPS = Family("quorum_breaker_trips", "Breaker trips in the record (breaker_events)", "counter", ("breaker",))
RECORD_FAMILIES = (TRADES, WINS, WIN_RATE, REALIZED_PNL, FEES_PAID, FUNDING_PAID, FUNDING_RECEIVED, BREAKER_TRIPS)

# --- state (the engine's RuntimeState, as /status shows it) ------------------------------------
EQUITY = Family("quorum_equity_usd", "Account equity (wallet + unrealised P&L)", "gauge")
UNREALIZED_PNL = Family("quorum_unrealized_pnl_usd", "Unrealised P&L of open positions", "gauge")
OPEN_POSITIONS = Family("quorum_open_positions", "Open positions", "gauge")
DRAWDOWN = Family("quorum_drawdown_pct", "Drawdown from the equity peak, percent", "gauge")
BREAKER_TRIPPED = Family("quorum_breaker_tripped",
                         "Active trips: 1 while a breaker blocks entries, 0 when not (symbol_cooldown: symbols cooling "
                         "down)", "gauge", ("breaker",))
LAST_SCAN = Family("quorum_last_scan_timestamp_seconds", "Unix time of the last completed scan", "gauge")
ENGINE_START = Family("quorum_engine_start_time_seconds",
                      "Unix time the engine process started (process counters count from here)", "gauge")
STATE_FAMILIES = (EQUITY, UNREALIZED_PNL, OPEN_POSITIONS, DRAWDOWN, BREAKER_TRIPPED, LAST_SCAN, ENGINE_START)

# --- process (this engine process, since it started) -------------------------------------------
REGISTRY = CollectorRegistry(auto_describe=True)
_SINCE = " (this engine process, since its start)"

MODEL_CALLS = Counter("quorum_model_calls_total", "Model calls" + _SINCE, ["voter"], registry=REGISTRY)
MODEL_ERRORS = Counter("quorum_model_errors_total", "Model call errors and abstentions" + _SINCE, ["voter", "kind"],
                       registry=REGISTRY)
MODEL_LATENCY = Histogram(
    "quorum_model_latency_seconds", "Model call latency" + _SINCE, ["voter"], registry=REGISTRY,
    buckets=(0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 120, 300),
)
MODEL_TOKENS = Counter("quorum_model_tokens_total", "Model tokens" + _SINCE, ["voter", "direction"], registry=REGISTRY)
MODEL_COST = Counter("quorum_model_cost_usd_total", "Model cost in USD" + _SINCE, ["voter"], registry=REGISTRY)
CACHE_HITS = Counter("quorum_cache_hits_total", "AI cache hits" + _SINCE, registry=REGISTRY)
CACHE_MISSES = Counter("quorum_cache_misses_total", "AI cache misses" + _SINCE, registry=REGISTRY)

EXCHANGE_WEIGHT = Gauge("quorum_exchange_weight_used_1m", "Binance X-MBX-USED-WEIGHT-1M last seen" + _SINCE,
                        registry=REGISTRY)
ORDER_ERRORS = Counter("quorum_order_errors_total", "Order errors by class" + _SINCE, ["error_class"],
                       registry=REGISTRY)
LOOP_DURATION = Histogram(
    "quorum_loop_duration_seconds", "Duration of one engine loop iteration" + _SINCE, ["loop"], registry=REGISTRY,
    buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 120),
)
STEP_FAILURES = Counter("quorum_engine_step_failures_total",
                        "Engine steps that failed, by where and error type" + _SINCE, ["where", "error"],
                        registry=REGISTRY)
FUNDING_EVENTS = Counter("quorum_paper_funding_events_total",
                         "Paper funding events by rate source (published rate or the PAPER_FUNDING_RATE fallback)"
                         + _SINCE, ["source"], registry=REGISTRY)

