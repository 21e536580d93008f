"""The engine: the one place that knows the order of things (see `engine.shared`).

Every mode runs this code; only the adapters differ (chosen in `quorum.bootstrap`):
market data (replay | live), clock (simulated | wall), venue (paper | Binance), and the
`VenueFeed` that shows market data to a paper venue (a no-op for a real one).

    engine = Engine(...)            # built by bootstrap()
    await engine.start()            # reconcile (entries stay blocked until it succeeds), load breakers
    await engine.run(until_ms=None) # loop over price-bar closes until stop() / until_ms
    await engine.stop()             # finish the current step, leave protective stops in place

`step(t)` handles one close of the price path's bars (the monitor timeframe: 1m on live data,
the execution timeframe in a replay): every open position's symbol is shown each bar it has not
seen yet, in order — after a restart or an outage that is every bar it missed, so stops,
take-profits, trailing moves, liquidations and funding land on their true bar (catch-up) — and
is managed on it (phases A–C). When t closes a decision bar, `run_cycle(t)` decides (phase D):
inline in a replay, in the background on live data, so positions keep being managed while the
votes are gathered. Nothing sleeps except `clock.sleep_until`.

No fault ends the loop (`engine.guard`): a failed step is logged, counted, alerted and the
loop goes on; a lost database suspends it until the database answers, then the same step runs
again. What it tells `RuntimeState` listeners: `quorum.notify.events`.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import structlog

from quorum import metrics
from quorum.config import Settings
from quorum.domain.breakers import BreakerEvent
from quorum.domain.models import Candle, Side, SymbolFilters
from quorum.engine.controls import EngineControls
from quorum.engine.cycle import DecisionCycle
from quorum.engine.equity import EquityRecorder
from quorum.engine.guard import StepGuard, is_exchange_error, short_reason
from quorum.engine.positions import PositionKeeper
from quorum.engine.runtime import RuntimeState
from quorum.engine.shared import EngineStats
from quorum.engine.status import StatusPublisher
from quorum.execution.killswitch import KillReport
from quorum.notify import events as ev
from quorum.ports import (
    Clock,
    Consensus,
    KillSwitch,
    MarketData,
    Reconciliation,
    RiskGate,
    TradeExecutor,
    Venue,
    VenueFeed,
)
from quorum.store.controls import ControlStore

log = structlog.get_logger(__name__)

RECONCILE_EVERY_MS = 3_600_000


class NullVenueFeed:
    """A real venue sees the market itself."""

    async def bar_closed(self, symbol: str, bar: Candle, timeframe_ms: int) -> None:
        return None

    async def price_now(self, symbol: str, time_ms: int, bar: Candle | None = None) -> None:
        return None

    async def step_done(self) -> None:
        return None

    async def held(self) -> dict[str, int | None]:
        return {}  # the engine's record says what is held

    def funding_info(self) -> dict[str, Any] | None:
        return None


class Engine(PositionKeeper, DecisionCycle, StatusPublisher):
    """Exits, funding and protection on every price-bar close; scan → consensus → risk →
    execution on decision-bar closes; reconciliation at start, hourly and after an outage.
    See the module docstring."""

    def __init__(self, *, settings: Settings, clock: Clock, market: MarketData, exchange: Venue,
                 executor: TradeExecutor, risk: RiskGate, consensus: Consensus, runtime: RuntimeState,
                 symbols: Sequence[str], venue_feed: VenueFeed | None = None,
                 reconciler: Reconciliation | None = None, kill_switch: KillSwitch | None = None,
                 bar_settle_ms: int = 0, equity: EquityRecorder | None = None, controls: ControlStore | None = None,
                 database_probe: Callable[[], Awaitable[object]] | None = None,
                 monitor_timeframe: str | None = None, concurrent_cycles: bool = False) -> None:
        from quorum.config import timeframe_seconds

        self.settings = settings
        self.clock = clock
        self.market = market
        self.exchange = exchange
        self.executor = executor
        self.risk = risk
        self.consensus = consensus
        self.runtime = runtime
        self.symbols = sorted(symbols)
        self.feed = venue_feed or NullVenueFeed()
        self.reconciler = reconciler
        self.kill_switch = kill_switch
        self.bar_settle_ms = bar_settle_ms  # live data: wait this long after a close for the bar
        self.exec_tf_ms = timeframe_seconds(settings.execution_timeframe) * 1000
        self.decision_tf_ms = timeframe_seconds(settings.decision_timeframe) * 1000
        self.monitor_timeframe = monitor_timeframe or settings.execution_timeframe
        self.step_ms = timeframe_seconds(self.monitor_timeframe) * 1000
        self.concurrent_cycles = concurrent_cycles
        self.stats = EngineStats()
        self._stopping = False
        self._stop_event = asyncio.Event()
        self._filters: dict[str, SymbolFilters] = {}
        self._seen_closed: set[str] = set()
        self._fed_until: dict[str, int] = {}  # venues that do not track it (a real exchange)
        self._step_errors: list[BaseException] = []
        self._cycle_task: asyncio.Task[None] | None = None
        self._next_reconcile_ms: int | None = None
        self._market_started = False
        self.step_seconds: deque[float] = deque(maxlen=500)  # wall seconds of the recent steps
        self.lag_ms = 0
        self._dirty = True
        runtime.symbols = list(self.symbols)
        runtime.scan_interval_s = self.decision_tf_ms / 1000.0 / float(clock.speed or 1.0)
        runtime.on_kill = self._on_kill
        self._errors = ev.ErrorThrottle()
        self.equity = equity  # the mark-to-market equity history (every execution-bar close, every fill)
        self.guard = StepGuard(runtime, probe=database_probe, alerts=executor.alerts,
                               max_failures=settings.max_consecutive_step_failures)
        # operator controls from any process (CLI, API, Telegram): picked up at every step
        self.controls = EngineControls(self, controls) if controls is not None else None
        risk.on_breaker_event = self._breaker_event  # breakers trip/reset inside the risk manager
        # held by whatever acts on the venue (position management, a cycle's execution phase), so
        # a decision cycle can gather its votes while positions are still being managed
        self.trading_lock = asyncio.Lock()

    # --- lifecycle ---------------------------------------------------------------------------
    async def start(self) -> None:
        """Open the market data, load the breakers and reconcile with the venue (entries stay
        blocked until that succeeds). An unreachable exchange or database is waited for, one log
        line per attempt, until it answers or `stop()`."""
        delay = 1.0
        while not self._stopping:
            try:
                await self._start_once()
                await self.guard.component_ok("exchange")
                return
            except Exception as exc:
                if await self.guard.database_down(exc):
                    await self.guard.wait_for_database(lambda: self._stopping)
                    continue
                if not is_exchange_error(exc):
                    raise
                await self.guard.component_failed("exchange", exc)
                log.warning("engine.start_waiting_for_exchange", host=self.market.rest_host,
                            error=short_reason(exc), retry_in_s=delay,
                            action="check the network and BINANCE_FAPI_URL / BINANCE_FSTREAM_URL")
                await self._pause(delay)
                delay = min(delay * 2, 60.0)

    async def _start_once(self) -> None:
        if not self._market_started:
            await self.market.start(self.symbols or None)  # live data: backfill and open the streams
            self._market_started = True
        if not self.symbols:  # no SYMBOLS configured: the market data's universe
            self.symbols = sorted(await self.market.universe())
            self.runtime.symbols = list(self.symbols)
        await self.risk.load()
        if self.equity is not None:
            await self.equity.load()
        if self.controls is not None:
            await self.controls.load()
        await self.reconcile()

    async def _pause(self, seconds: float) -> None:
        """Wait wall seconds, or until stop()."""
        try:
            await asyncio.wait_for(self._stop_event.wait(), seconds)
        except TimeoutError:
            pass

    async def reconcile(self) -> bool:
        if self.reconciler is None:
            self.executor.entries_allowed = True
            return True
        report = await self.reconciler.run()
        self.runtime.mark_exchange(bool(report.ok), report.error)
        payload = ev.reconciliation_payload(report)
        if payload is not None:
            self._dirty = True
            await self.runtime.emit("reconciliation", payload)
        return bool(report.ok)

    @property
    def stopping(self) -> bool:
        return self._stopping

    async def stop(self) -> None:
        """Graceful shutdown: the current step finishes; protective stops stay on the venue."""
        self._stopping = True
        self._stop_event.set()
        self.clock.wake()

    async def run(self, *, until_ms: int | None = None) -> EngineStats:
        """Loop over price-bar closes from the clock's now until `until_ms` or `stop()`. Never
        ends on a fault (see the module docstring)."""
        t = (self.clock.now_ms() // self.step_ms + 1) * self.step_ms
        poller = asyncio.create_task(self.controls.poll()) if self.controls and self.concurrent_cycles else None
        try:
            await self._loop(t, until_ms)
        finally:
            if poller is not None:
                poller.cancel()
                await asyncio.gather(poller, return_exceptions=True)
        await self._finish_cycle()
        stats: EngineStats = self.stats
        return stats

    async def _loop(self, t: int, until_ms: int | None) -> None:
        while not self._stopping and (until_ms is None or t <= until_ms):
            await self.clock.sleep_until(t + self.bar_settle_ms)
            if self._stopping:
                break
            self._step_errors = []
            worked = True
            try:
                worked = await self.step(t)
            except Exception as exc:
                if await self.guard.database_down(exc):
                    await self.guard.wait_for_database(lambda: self._stopping)
                    if not self._stopping:
                        await self._after_outage()
                    continue  # the same t again: nothing was skipped
                await self._error("step_failed", None, exc)
                self._step_errors.append(exc)
            if self._step_errors:
                await self.guard.failed(self._step_errors[-1])
            elif worked:  # an idle step (nothing held, no decision) proves nothing either way
                await self.guard.succeeded()
                if self.runtime.exchange_ok is False:
                    await self.guard.component_ok("exchange")
            t += self.step_ms

    async def _after_outage(self) -> None:
        """Back from a database outage: re-check the venue before anything else."""
        try:
            await self.reconcile()
        except Exception as exc:
            await self._error("reconcile_failed", None, exc)

    async def _on_kill(self) -> KillReport | None:
        if self.kill_switch is None:
            return None
        async with self.trading_lock:
            return await self.kill_switch.engage("kill requested", actor="operator")

    # --- one close of the price path ---------------------------------------------------------
    async def step(self, t: int) -> bool:
        """Phases A–C for every symbol with a position (each bar it has not seen, up to t), then
        the decision cycle if t closes one. False when there was nothing to do."""
        t0 = time.perf_counter()
        self.stats.steps += 1
        self.runtime.sim_time_ms = t
        decision = t % self.decision_tf_ms == 0
        async with self.trading_lock:
            held = await self._held()
            for sym, until in held.items():
                await self._advance(sym, until, t)
            applied = await self.controls.apply_pending(t) if self.controls is not None else 0
            if decision:  # B for the flat symbols: the venue's price at t, which entries fill from (a held
                # symbol's price is its last processed bar's: never ahead of what the venue has seen)
                for sym in self.symbols:
                    if sym not in held:
                        await self._guarded("price_failed", sym, self.feed.price_now(sym, t))
        if decision and not self.runtime.kill_requested:  # D
            await self._decide_at(t)
        if self._next_reconcile_ms is None:
            self._next_reconcile_ms = t + RECONCILE_EVERY_MS
        elif self.reconciler is not None and t >= self._next_reconcile_ms:
            self._next_reconcile_ms = t + RECONCILE_EVERY_MS
            await self.reconcile()
        if self.equity is not None:
            await self._guarded("equity_failed", None, self._record_equity(t))
        await self._guarded("venue_flush_failed", None, self.feed.step_done())
        if decision or self._dirty or self.runtime.positions:
            await self._publish(t)  # status for /status and /metrics
            self._dirty = False
        took = time.perf_counter() - t0
        metrics.LOOP_DURATION.labels("step").observe(took)
        self.step_seconds.append(took)
        self.lag_ms = self.clock.now_ms() - t  # how far behind the market the loop runs (clock time)
        return bool(held) or decision or applied > 0

    async def _record_equity(self, t: int) -> None:
        """The equity history: the bar row at an execution-bar close (else the rows of new fills),
        and the hourly retention run."""
        assert self.equity is not None
        if t % self.exec_tf_ms == 0:
            await self.equity.bar_closed(t)
        else:
            await self.equity.fills()
        await self.equity.retention(t)

    async def _guarded(self, what: str, symbol: str | None, work: Awaitable[object]) -> bool:
        """Await `work`; a failure other than a lost database is recorded for this step and
        skipped (False). A lost database propagates: the whole step waits and runs again."""
        try:
            await work
            return True
        except Exception as exc:
            if await self.guard.database_down(exc):
                raise
            self._step_errors.append(exc)
            await self._error(what, symbol, exc)
            return False

    def entry_block(self, symbol: str | None = None) -> str | None:
        """Why new entries (on `symbol`) are not taken now (operator pause, the symbol paused by
        an operator, failing steps), or None."""
        if self.runtime.paused:
            return "paused"
        if symbol is not None and symbol in self.runtime.paused_symbols:
            return "paused_symbol"
        block: str | None = self.guard.entry_block
        return block

    async def _error(self, what: str, symbol: str | None, exc: Exception, *, fatal: bool = False) -> None:
        """Count, log (the first of a kind with its traceback, repeats in one line; venue trouble
        never with one) and tell listeners (identical repeats within an hour are held back)."""
        self.stats.errors += 1
        text = ev.error_text(exc)
        first = self.guard.first_of_kind(what, exc)
        if is_exchange_error(exc):  # expected trouble: no traceback
            self.runtime.mark_exchange(False, str(exc))
            log.warning("engine." + what, symbol=symbol, error=text)
        elif first:
            log.error("engine." + what, symbol=symbol, error=text, exc_info=exc)
            await self.guard.unexpected(what, exc)
        else:
            log.warning("engine." + what, symbol=symbol, error=text, repeated=True)
        repeats = self._errors.admit(what, symbol, exc, self.clock.now_ms())
        if repeats is not None or fatal:
            await self.runtime.emit("error", ev.error_payload(what, symbol, exc, fatal=fatal, repeats=repeats or 0))

    async def _breaker_event(self, event: BreakerEvent) -> None:
        """RiskManager hook: a breaker tripped or reset."""
        self._dirty = True
        if event.breaker == "drawdown" and event.event == "reset" and self.equity is not None:
            self.equity.rebase()  # drawdown is measured from the reset on
        key = f"{event.breaker}:{event.symbol}" if event.symbol else event.breaker
        self.runtime.set_breaker(key, event.reason if event.event == "trip" else None)
        kind, payload = ev.breaker_payload(event)
        await self.runtime.emit(kind, payload)

    async def _symbol_filters(self, symbol: str) -> SymbolFilters:
        if symbol not in self._filters:
            self._filters[symbol] = await self.exchange.symbol_filters(symbol)
        return self._filters[symbol]

    # --- status ------------------------------------------------------------------------------
    async def _publish(self, t: int) -> None:
        """Status for /status and /metrics: equity, positions, breakers, loop counters."""
        try:
            await self.publish_status(t)
        except Exception as exc:
            if await self.guard.database_down(exc):
                raise
            if is_exchange_error(exc):
                self.runtime.mark_exchange(False, str(exc))
            else:
                await self._error("publish_failed", None, exc)


__all__ = ["Engine", "EngineStats", "NullVenueFeed", "Side", "VenueFeed"]
