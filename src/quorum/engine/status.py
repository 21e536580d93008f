"""What the engine tells the service surface about itself (RuntimeState → /status and the state
families of /metrics). Part of `quorum.engine.Engine` (a mixin)."""

from __future__ import annotations

from collections import deque
from typing import TYPE_CHECKING

from quorum.engine.guard import STEP_FAILURES

if TYPE_CHECKING:
    from quorum.engine.equity import EquityRecorder
    from quorum.engine.guard import StepGuard
    from quorum.engine.runtime import RuntimeState
    from quorum.engine.shared import EngineStats
    from quorum.ports import RiskGate, TradeExecutor, Venue, VenueFeed


class StatusPublisher:
    """Mixin of `Engine` (see the module docstring)."""

    runtime: RuntimeState
    exchange: Venue
    risk: RiskGate
    executor: TradeExecutor
    equity: EquityRecorder | None
    guard: StepGuard
    stats: EngineStats
    feed: VenueFeed
    monitor_timeframe: str
    step_seconds: deque[float]
    lag_ms: int

    async def publish_status(self, t: int) -> None:
        """Equity, open positions with their protection, breakers (the risk manager's and the
        engine's own entry block), loop counters and the paper venue's funding sources."""
        rt = self.runtime
        balance = await self.exchange.balance()
        venue = await self.exchange.fetch_positions()
        rt.equity = balance.equity
        rt.wallet_balance = balance.wallet_balance
        book = self.risk.book
        start = book.day_start_equity
        rt.day_pnl = balance.equity - start if start else 0.0
        peak = book.equity_peak
        rt.unrealized_pnl = balance.unrealized_pnl
        if self.equity is not None and self.equity.drawdown_pct is not None:  # from the equity history
            rt.drawdown_pct = max(0.0, self.equity.drawdown_pct)
        else:
            rt.drawdown_pct = max(0.0, (peak - balance.equity) / peak * 100.0) if peak else None
        states = {p.symbol: p for p in await self.executor.positions.open_positions()}
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
        breakers = dict(self.risk.breakers_status(t))
        if self.guard.entry_block is not None:
            breakers[STEP_FAILURES] = self.guard.entry_block
        rt.breakers = breakers
        self.publish_counters()


    def publish_counters(self) -> None:
        """Loop counters and funding sources (cheap: no I/O)."""
        s, g = self.stats, self.guard
        self.runtime.engine = {
            "steps": s.steps, "failed_steps": g.failed_steps, "consecutive_failures": g.consecutive_failures,
            "cycles": s.cycles, "cycles_skipped": s.cycles_skipped, "catch_up_bars": s.catch_up_bars,
            "database_outages": g.database_outages, "entries_blocked": g.entry_block,
            "monitor_timeframe": self.monitor_timeframe, "lag_s": round(self.lag_ms / 1000, 1),
        }
        recent = sorted(self.step_seconds)
        if recent:
            self.runtime.engine["step_ms_p50"] = round(recent[len(recent) // 2] * 1000, 1)
            self.runtime.engine["step_ms_max"] = round(recent[-1] * 1000, 1)
        funding = self.feed.funding_info()
        if funding is not None:
            self.runtime.funding = funding
