"""CORRELATION_THRESHOLD / MAX_POSITIONS_PER_CLUSTER and KELLY_FRACTION in the engine's paper path
(replay feed, simulated clock, the real PaperExchange in Postgres, risk manager): a same-direction
entry in a full cluster is rejected with a reason naming the cluster, the Kelly cap sizes entries
from the mode's closed trades once there are KELLY_MIN_TRADES (30) of them — and the fast backtest
makes the same decisions (identical fills)."""

from __future__ import annotations

from pathlib import Path

import asyncpg

from quorum.backtest.request import BacktestRequest, load_market, parse_time
from quorum.backtest.runner import run_backtest
from quorum.bootstrap import bootstrap
from quorum.config import load_settings

TF = 300_000
SYMBOLS = ("BTCUSDT", "ETHUSDT")


def same_direction_overlaps(trades: list[tuple[str, str, int, int]]) -> int:
    """Pairs of BTC and ETH positions open at once in the same direction: (symbol, side, in, out)."""
    btc = [t for t in trades if t[0] == "BTCUSDT"]
    eth = [t for t in trades if t[0] == "ETHUSDT"]
    return sum(1 for b in btc for e in eth if b[1] == e[1] and b[2] < e[3] and e[2] < b[3])


async def test_cluster_rejection_and_kelly_cap_in_the_paper_engine(pool: asyncpg.Pool, shared_data: Path) -> None:
    settings = load_settings(min_ai_confidence=0.55, symbols=list(SYMBOLS), correlation_threshold=0.5,
                             max_positions_per_cluster=1, kelly_fraction=0.1)
    start = parse_time("2025-04-01", "start")
    assert start is not None
    end = start + 9 * 86_400_000

    app = await bootstrap(settings, pool=pool, mode="backtest", data_dir=shared_data, symbols=list(SYMBOLS),
                          start_ms=start)
    await app.engine.start()
    await app.engine.run(until_ms=end - TF)
    engine_fills = []
    for sym in SYMBOLS:
        engine_fills += [(f.symbol, f.order_side, f.time_ms, f.price, f.quantity, f.fee)
                         for f in await app.exchange.fetch_fills(sym) if f.time_ms < end - TF]
    await app.close()

    verdicts = await pool.fetch("SELECT symbol, reason_codes FROM risk_verdicts ORDER BY id")
    reasons = [set(r["reason_codes"]) for r in verdicts]
    cluster_rejections = [r for r in reasons if "correlation_cluster_full:BTCUSDT+ETHUSDT" in r]
    assert cluster_rejections, "a same-direction BTC/ETH entry must meet the full cluster"
    assert any("kelly_capped" in r for r in reasons), "after 30 closed trades the Kelly cap must size an entry"
    rows = await pool.fetch("SELECT symbol, side, opened_at, closed_at FROM positions WHERE mode = 'backtest'")
    held = [(r["symbol"], r["side"], int(r["opened_at"].timestamp() * 1000),
             int(r["closed_at"].timestamp() * 1000) if r["closed_at"] else end) for r in rows]
    assert len(held) >= 30 and same_direction_overlaps(held) == 0

    fast = run_backtest(load_market(BacktestRequest(shared_data, SYMBOLS, start, end)), settings)
    fast_fills = sorted((f.symbol, f.order_side, f.time_ms, f.price, f.quantity, f.fee)
                        for f in fast.run.fills if f.time_ms < end - TF)
    assert sorted(engine_fills) == fast_fills
    fast_reasons = [set(d.get("reasons", ())) for d in fast.run.decisions]
    assert sum("correlation_cluster_full:BTCUSDT+ETHUSDT" in r for r in fast_reasons) == len(cluster_rejections)
