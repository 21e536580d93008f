"""The engine's position keeping (phases A–C): every symbol with an open position is shown each
bar of the price path it has not seen yet — after a restart or an outage, every bar it missed,
in order (catch-up) — and managed on it. Part of `quorum.engine.Engine` (a mixin)."""

from __future__ import annotations

from collections.abc import Awaitable, Sequence
from typing import TYPE_CHECKING

import structlog

from quorum.domain.exits import Bar
from quorum.domain.models import Candle, IntentKind, OrderIntent, PositionState, SymbolFilters
from quorum.market.data_files import CandleSeries
from quorum.notify import events as ev

if TYPE_CHECKING:
    from quorum.engine.equity import EquityRecorder
    from quorum.engine.guard import StepGuard
    from quorum.engine.runtime import RuntimeState
    from quorum.engine.shared import EngineStats
    from quorum.ports import MarketData, RiskGate, TradeExecutor, Venue, VenueFeed

log = structlog.get_logger("quorum.engine")

MAX_CATCH_UP_MS = 30 * 86_400_000  # the longest gap the paper venue replays bar by bar


def candle_at(series: CandleSeries, i: int) -> Candle:
    return Candle(int(series.open_ms[i]), float(series.open[i]), float(series.high[i]), float(series.low[i]),
                  float(series.close[i]), float(series.volume[i]))


class PositionKeeper:
    """Mixin of `Engine` (see the module docstring)."""

    exchange: Venue
    executor: TradeExecutor
    market: MarketData
    feed: VenueFeed
    risk: RiskGate
    runtime: RuntimeState
    guard: StepGuard
    stats: EngineStats
    symbols: list[str]
    monitor_timeframe: str
    step_ms: int
    _fed_until: dict[str, int]
    _step_errors: list[BaseException]
    _seen_closed: set[str]
    _dirty: bool
    equity: EquityRecorder | None

    if TYPE_CHECKING:  # provided by `quorum.engine.Engine`
        async def _error(self, what: str, symbol: str | None, exc: Exception, *, fatal: bool = False) -> None: ...

        async def _guarded(self, what: str, symbol: str | None, work: Awaitable[object]) -> bool: ...

        async def _symbol_filters(self, symbol: str) -> SymbolFilters: ...

    async def _held(self) -> dict[str, int | None]:
        """Symbols with an open position (ours or the venue's) → how far the venue has seen their
        price path (None when the venue does not say)."""
        out: dict[str, int | None] = dict(await self.feed.held())
        for pos in await self.executor.positions.open_positions():
            out.setdefault(pos.symbol, None)
        return dict(sorted(out.items()))

    async def _advance(self, sym: str, until: int | None, t: int) -> None:
        """Show `sym`'s venue every bar closing in (until, t], oldest first, and manage the position
        on each (A–C). A gap longer than one bar is a catch-up: logged, counted."""
        after = until if until is not None else self._fed_until.get(sym, t - self.step_ms)
        if after < t - MAX_CATCH_UP_MS:
            log.warning("engine.catch_up_truncated", symbol=sym, missed_s=(t - after) // 1000,
                        replayed_s=MAX_CATCH_UP_MS // 1000)
            after = t - MAX_CATCH_UP_MS
        bars: CandleSeries | None = None
        # live data can stream any symbol; a replay only the files it has (an adopted position on
        # another symbol is synced with the venue, not shown bars)
        servable = sym in self.symbols or self.market.streams_any_symbol
        if after < t and servable:
            try:
                bars = await self.market.bars_after(sym, self.monitor_timeframe, after, t)
            except Exception as exc:
                if await self.guard.database_down(exc):
                    raise
                self._step_errors.append(exc)
                await self._error("market_data_failed", sym, exc)
        if bars is None or not len(bars):
            await self._guarded("position_step_failed", sym, self._manage(sym, t, None))
            await self._fills_recorded(sym)
            return
        if len(bars) > 1:
            self.stats.catch_up_bars += len(bars) - 1
            log.info("engine.catch_up", symbol=sym, bars=len(bars), since_ms=after)
        self.runtime.mark_market_data()
        for i in range(len(bars)):
            bar = candle_at(bars, i)
            close = bar.open_ms + self.step_ms
            await self.feed.bar_closed(sym, bar, self.step_ms)
            await self.feed.price_now(sym, close, bar)
            self._fed_until[sym] = close
            managed = await self._guarded("position_step_failed", sym, self._manage(sym, close, bar))
            await self._fills_recorded(sym)  # a fill's row shows the account at its bar
            if not managed:
                return

    async def _fills_recorded(self, sym: str) -> None:
        if self.equity is not None:
            await self._guarded("equity_failed", sym, self.equity.fills())

    async def _manage(self, sym: str, t: int, bar: Candle | None) -> None:
        """Sync the position with the venue (fills, funding) and step it through `bar`: partials,
        trailing, break-even, time stop; the intents act at once at the venue's price."""
        pos = await self.executor.positions.open_for_symbol(sym)
        if pos is None or pos.position_id is None:
            return
        pid = pos.position_id
        await self.executor.sync_funding(pos)
        await self.executor.sync_position(pid)
        if await self._closed(pid, t):
            return
        state = await self.executor.positions.get(pid)
        if state is None or bar is None:
            return
        filters = await self._symbol_filters(sym)
        new_state, intents = await self.risk.on_bar(
            state, Bar(bar.open_ms, bar.open, bar.high, bar.low, bar.close), filters)
        await self._execute_exit_intents(pid, new_state, intents, t, state.stop_price)

    async def _execute_exit_intents(self, pid: str, state: PositionState, intents: Sequence[OrderIntent],
                                    t: int, old_stop: float | None = None) -> None:
        for intent in intents:
            if intent.kind is IntentKind.REDUCE:
                await self.executor.reduce(pid, intent.quantity, intent.reason)
            elif intent.kind is IntentKind.CLOSE:
                await self.executor.close(pid, intent.reason)
                await self._closed(pid, t)
                return
        if await self._closed(pid, t):
            return
        move = next((i for i in intents if i.kind is IntentKind.MOVE_STOP), None)
        if move is not None:
            res = await self.executor.move_stop(pid, state.stop_price)
            self._dirty = True
            await self.runtime.emit("stop_moved", ev.stop_moved_payload(
                state.symbol, state.side.value, old_stop, state.stop_price, move.reason, res.status))
            await self._closed(pid, t)

    async def _closed(self, pid: str, t: int) -> bool:
        """True when the position is closed; the first time, tell the breakers and listeners."""
        closed = await self.executor.positions.closed_position(pid)
        if closed is None:
            return False
        if pid in self._seen_closed:
            return True
        self._seen_closed.add(pid)
        self._dirty = True
        net, reason, symbol = closed.net_pnl, closed.exit_reason, closed.symbol
        # listeners hear of the trade before of the breakers it may trip
        await self.runtime.emit("trade_closed", {"symbol": symbol, "net_pnl": net, "exit_reason": reason})
        await self.risk.record_trade_closed(symbol, net, reason, t)
        self.stats.closes += 1
        self.stats.trades.append({"symbol": symbol, "net_pnl": net, "exit_reason": reason, "time_ms": t})
        return True
