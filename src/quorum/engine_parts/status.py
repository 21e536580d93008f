"""What the engine tells the service surface about itself (RuntimeState → /status and the state
families of /metrics)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from quorum.engine_parts.guard import STEP_FAILURES

if TYPE_CHECKING:
    from quorum.engine import Engine


async def publish_status(engine: Engine, t: int) -> None:
    """Equity, open positions with their protection, breakers (the risk manager's and the
    engine's own entry block), loop counters and the paper venue's funding sources."""
    rt = engine.runtime
    balance = await engine.exchange.balance()
    venue = await engine.exchange.fetch_positions()
    rt.equity = balance.equity
    rt.wallet_balance = balance.wallet_balance
    book = engine.risk.book
    start = book.day_start_equity
    rt.day_pnl = balance.equity - start if start else 0.0
    peak = book.equity_peak
    rt.unrealized_pnl = balance.unrealized_pnl
    if engine.equity is not None and engine.equity.drawdown_pct is not None:  # from the equity history
        rt.drawdown_pct = max(0.0, engine.equity.drawdown_pct)
    else:
        rt.drawdown_pct = max(0.0, (peak - balance.equity) / peak * 100.0) if peak else None
    states = {p.symbol: p for p in await engine.executor.positions.open_positions()}
    rt.positions = [
        {"symbol": p.symbol, "side": p.side.value, "entry_price": p.entry_price, "mark_price": p.mark_price,
         "quantity": p.quantity, "leverage": p.leverage, "pnl": p.unrealized_pnl,
         "liquidation_price": p.liquidation_price,
         "stop_price": states[p.symbol].stop_price if p.symbol in states else None,
         "take_profit": states[p.symbol].take_profit if p.symbol in states else None,
         "trailing_active": states[p.symbol].trailing_active if p.symbol in states else None,
         "peak_price": states[p.symbol].peak_price if p.symbol in states else None,
         "opened_ms": states[p.symbol].opened_ms if p.symbol in states else None}
        for p in venue]
    breakers = dict(engine.risk.breakers_status(t))
    if engine.guard.entry_block is not None:
        breakers[STEP_FAILURES] = engine.guard.entry_block
    rt.breakers = breakers
    publish_counters(engine)


def publish_counters(engine: Engine) -> None:
    """Loop counters and funding sources (cheap: no I/O)."""
    s, g = engine.stats, engine.guard
    engine.runtime.engine = {
        "steps": s.steps, "failed_steps": g.failed_steps, "consecutive_failures": g.consecutive_failures,
        "cycles": s.cycles, "cycles_skipped": s.cycles_skipped, "catch_up_bars": s.catch_up_bars,
        "database_outages": g.database_outages, "entries_blocked": g.entry_block,
        "monitor_timeframe": engine.monitor_timeframe, "lag_s": round(engine.lag_ms / 1000, 1),
    }
    recent = sorted(engine.step_seconds)
    if recent:
        engine.runtime.engine["step_ms_p50"] = round(recent[len(recent) // 2] * 1000, 1)
        engine.runtime.engine["step_ms_max"] = round(recent[-1] * 1000, 1)
    funding = engine.feed.funding_info()
    if funding is not None:
        engine.runtime.funding = funding
