"""PARITY: the same bars through the engine in paper mode (replay feed, simulated clock, the real
PaperExchange in Postgres, executor, risk manager, consensus engine with the rules analyst) and
through the fast backtest give identical fills (time, side, price, quantity, fee)."""

from __future__ import annotations

from pathlib import Path

import asyncpg
import pytest

from quorum.backtest.request import BacktestRequest, load_market, parse_time
from quorum.backtest.runner import run_backtest
from quorum.bootstrap import bootstrap
from quorum.config import load_settings

TF = 300_000


@pytest.mark.parametrize(("SYMBOL", "START", "DAYS", "extra_reasons"), [
    ("BTCUSDT", "2025-10-02", 1, set()),
    # a trailing stop the price had already crossed when it was to be placed: closed at market
    ("XRPUSDT", "2025-01-12", 2, {"trailing_stop"}),
])
async def test_engine_paper_mode_and_fast_backtest_fill_identically(
        pool: asyncpg.Pool, shared_data: Path, SYMBOL: str, START: str, DAYS: int, extra_reasons: set[str]) -> None:
    settings = load_settings(min_ai_confidence=0.55, symbols=[SYMBOL])
    start = parse_time(START, "start")
    assert start is not None
    end = start + DAYS * 86_400_000

    fast = run_backtest(load_market(BacktestRequest(shared_data, (SYMBOL,), start, end)), settings)
    fast_fills = [(f.symbol, f.order_side, f.time_ms, f.price, f.quantity, f.fee)
                  for f in fast.run.fills if f.time_ms < end - TF]
    assert len(fast_fills) >= 8, "the slice must trade for parity to mean something"
    assert {f.reason for f in fast.run.fills} >= {"entry", "stop", "take_profit", "partial_take_profit"} | extra_reasons

    app = await bootstrap(settings, pool=pool, mode="backtest", data_dir=shared_data, symbols=[SYMBOL],
                          start_ms=start)
    await app.engine.start()
    await app.engine.run(until_ms=end - TF)
    venue_fills = await app.exchange.fetch_fills(SYMBOL)
    venue_funding = [(f.symbol, f.time_ms, f.amount) for f in await app.exchange.funding_history(SYMBOL)]
    engine_fills = [(f.symbol, f.order_side, f.time_ms, f.price, f.quantity, f.fee)
                    for f in venue_fills if f.time_ms < end - TF]
    await app.close()

    assert engine_fills == fast_fills
    fast_funding = [(sym, t, a) for sym, t, a in fast.run.venue.funding_payments if t < end - TF]
    assert fast_funding and [(s, t) for s, t, _ in venue_funding] == [(s, t) for s, t, _ in fast_funding]
    assert all(abs(a - b) < 1e-9 for (_, _, a), (_, _, b) in zip(venue_funding, fast_funding, strict=True))
    # and the engine recorded the closed trades with the same net P&L
    rows = await pool.fetch("SELECT symbol, net_pnl, exit_reason, closed_at FROM positions "
                            "WHERE mode='backtest' AND status='closed' ORDER BY closed_at")
    fast_trades = [t for t in fast.run.trades if t.exit_ms < end - TF]
    assert [r["exit_reason"] for r in rows] == [t.exit_reason for t in fast_trades]
    for r, t in zip(rows, fast_trades, strict=True):
        assert abs(float(r["net_pnl"]) - t.net_pnl) < 0.005
