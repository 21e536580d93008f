"""PARITY: the same bars through the engine in paper mode (replay feed, simulated clock, the real
PaperExchange in Postgres, executor, risk manager, consensus engine with the rules analyst) and
through the fast backtest give identical fills (time, side, price, quantity, fee), funding and
closed trades — on single-symbol slices chosen for their exits, and on all six symbols for a
month (partials, trailing and break-even stops, funding, several positions at once)."""

from __future__ import annotations

from pathlib import Path

import asyncpg
import pytest

from quorum.backtest.request import BacktestRequest, load_market, parse_time
from quorum.backtest.runner import run_backtest
from quorum.bootstrap import bootstrap
from quorum.config import load_settings

TF = 300_000


SIX = ("BNBUSDT", "BTCUSDT", "DOGEUSDT", "ETHUSDT", "SOLUSDT", "XRPUSDT")


@pytest.mark.parametrize(("SYMBOLS", "START", "DAYS", "extra_reasons"), [
    (("BTCUSDT",), "2025-10-02", 1, set()),
    # a trailing stop the price had already crossed when it was to be placed: closed at market
    (("XRPUSDT",), "2025-03-10", 2, {"trailing_stop"}),  # (after the 34-day indicator warm-up)
    (SIX, "2025-03-01", 30, {"trailing_stop", "consensus_close"}),
], ids=["BTCUSDT-1d", "XRPUSDT-2d", "six-symbols-30d"])
async def test_engine_paper_mode_and_fast_backtest_fill_identically(
        pool: asyncpg.Pool, shared_data: Path, SYMBOLS: tuple[str, ...], START: str, DAYS: int,
        extra_reasons: set[str]) -> None:
    settings = load_settings(min_ai_confidence=0.55, symbols=list(SYMBOLS))
    start = parse_time(START, "start")
    assert start is not None
    end = start + DAYS * 86_400_000

    fast = run_backtest(load_market(BacktestRequest(shared_data, SYMBOLS, start, end)), settings)
    fast_fills = sorted((f.symbol, f.order_side, f.time_ms, f.price, f.quantity, f.fee)
                        for f in fast.run.fills if f.time_ms < end - TF)
    assert len(fast_fills) >= 8 * len(SYMBOLS), "the slice must trade for parity to mean something"
    assert {f.reason for f in fast.run.fills} >= {"entry", "stop", "take_profit", "partial_take_profit"} | extra_reasons

    app = await bootstrap(settings, pool=pool, mode="backtest", data_dir=shared_data, symbols=list(SYMBOLS),
                          start_ms=start)
    await app.engine.start()
    await app.engine.run(until_ms=end - TF)
    engine_fills, venue_funding = [], []
    for sym in SYMBOLS:
        engine_fills += [(f.symbol, f.order_side, f.time_ms, f.price, f.quantity, f.fee)
                         for f in await app.exchange.fetch_fills(sym) if f.time_ms < end - TF]
    venue_funding = [(f.symbol, f.time_ms, f.amount) for f in await app.exchange.funding_history()]
    await app.close()

    assert sorted(engine_fills) == fast_fills
    fast_funding = sorted((t, sym, a) for sym, t, a in fast.run.venue.funding_payments if t < end - TF)
    engine_funding = sorted((t, sym, a) for sym, t, a in venue_funding if t < end - TF)
    assert fast_funding and [(t, s) for t, s, _ in engine_funding] == [(t, s) for t, s, _ in fast_funding]
    assert all(abs(a - b) < 1e-9 for (_, _, a), (_, _, b) in zip(engine_funding, fast_funding, strict=True))
    # and the engine recorded the closed trades with the same net P&L and exit reason
    rows = await pool.fetch("SELECT symbol, net_pnl, exit_reason, closed_at FROM positions "
                            "WHERE mode='backtest' AND status='closed'")
    engine_trades = sorted((int(r["closed_at"].timestamp() * 1000), r["symbol"], r["exit_reason"],
                            float(r["net_pnl"])) for r in rows)
    fast_trades = sorted((t.exit_ms, t.symbol, t.exit_reason, t.net_pnl) for t in fast.run.trades
                         if t.exit_ms < end - TF)
    assert [e[:3] for e in engine_trades] == [f[:3] for f in fast_trades]
    for e, f in zip(engine_trades, fast_trades, strict=True):
        assert abs(e[3] - f[3]) < 0.005
