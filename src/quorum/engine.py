"""The engine: the one place that knows the order of things (see `engine_parts.shared`).

Every mode runs this code; only the adapters differ (chosen in `quorum.bootstrap`):
market data (replay | live), clock (simulated | wall), venue (paper | Binance), and the
`VenueFeed` that shows market data to a paper venue (a no-op for a real one).

    engine = Engine(...)            # built by bootstrap()
    await engine.start()            # reconcile (entries stay blocked until it succeeds), load breakers
    await engine.run(until_ms=None) # loop over execution-bar closes until stop() / until_ms
    await engine.stop()             # finish the current step, leave protective stops in place

`step(t)` handles one execution-bar close (phases A–C) and calls `run_cycle(t)` (phase D)
when t closes a decision bar. Nothing sleeps except `clock.sleep_until`. What it tells
`RuntimeState` listeners (trades, stop moves, breakers, reconciliations, errors): `quorum.notify.events`.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import structlog

from quorum import metrics
from quorum.ai.context import AccountView, PositionView, VoteContext
from quorum.clock import Clock
from quorum.domain.exits import Bar
from quorum.domain.models import Action, Candle, ExitReason, IntentKind, OrderIntent, PositionState, Side
from quorum.engine_parts.shared import wants_close
from quorum.execution.exchange import Exchange, ExchangeError
from quorum.notify import events as ev
from quorum.runtime import RuntimeState

log = structlog.get_logger(__name__)


class VenueFeed(Protocol):
    """What a simulated venue must be shown of the market (no-op for a real exchange)."""

    async def bar_closed(self, symbol: str, bar: Candle) -> None: ...

    async def price_now(self, symbol: str, time_ms: int) -> None: ...


class NullVenueFeed:
    """A real venue sees the market itself."""

    async def bar_closed(self, symbol: str, bar: Candle) -> None:
        return None

    async def price_now(self, symbol: str, time_ms: int) -> None:
        return None


@dataclass
class EngineStats:
    steps: int = 0
    cycles: int = 0
    decisions: int = 0
    entries: int = 0
    closes: int = 0
    errors: int = 0
    trades: list[dict[str, Any]] = field(default_factory=list)


class Engine:
    """Scan → consensus → risk → execution on decision-bar closes; exits, funding and
    protection on every execution-bar close; reconciliation at start and every
    `reconcile_every` steps. See the module docstring."""

    def __init__(self, *, settings: Any, clock: Clock, market: Any, exchange: Exchange, executor: Any,
                 risk: Any, consensus: Any, runtime: RuntimeState, symbols: Sequence[str],
                 venue_feed: VenueFeed | None = None, reconciler: Any = None, kill_switch: Any = None,
                 reconcile_every: int = 12, bar_settle_ms: int = 0) -> None:
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
        self.reconcile_every = reconcile_every
        self.bar_settle_ms = bar_settle_ms  # live data: wait this long after a close for the bar
        self.exec_tf_ms = timeframe_seconds(settings.execution_timeframe) * 1000
        self.decision_tf_ms = timeframe_seconds(settings.decision_timeframe) * 1000
        self.stats = EngineStats()
        self._stopping = False
        self._filters: dict[str, Any] = {}
        self._seen_closed: set[str] = set()
        self._dirty = True
        runtime.symbols = list(self.symbols)
        runtime.scan_interval_s = self.decision_tf_ms / 1000.0
        runtime.on_kill = self._on_kill
        self._errors = ev.ErrorThrottle()
        if hasattr(risk, "on_breaker_event"):  # breakers trip/reset inside the risk manager
            risk.on_breaker_event = self._breaker_event

    # --- lifecycle ---------------------------------------------------------------------------
    async def start(self) -> None:
        """Reconcile with the venue (entries blocked until it succeeds) and load the breakers."""
        starter = getattr(self.market, "start", None)
        if starter is not None:  # live data: backfill and open the streams
            await starter(self.symbols or None)
        if not self.symbols:  # no SYMBOLS configured: the market data's universe
            self.symbols = sorted(await self.market.universe())
            self.runtime.symbols = list(self.symbols)
        await self.risk.load()
        await self.reconcile()

    async def reconcile(self) -> bool:
        if self.reconciler is None:
            self.executor.entries_allowed = True
            return True
        report = await self.reconciler.run()
        self.runtime.mark_exchange(bool(report.ok), getattr(report, "error", None))
        payload = ev.reconciliation_payload(report)
        if payload is not None:
            self._dirty = True
            await self.runtime.emit("reconciliation", payload)
        return bool(report.ok)

    async def stop(self) -> None:
        """Graceful shutdown: the current step finishes; protective stops stay on the venue."""
        self._stopping = True
        wake = getattr(self.clock, "wake", None)
        if wake is not None:
            wake()

    async def run(self, *, until_ms: int | None = None) -> EngineStats:
        """Loop over execution-bar closes from the clock's now until `until_ms` or `stop()`."""
        t = (self.clock.now_ms() // self.exec_tf_ms + 1) * self.exec_tf_ms
        while not self._stopping and (until_ms is None or t <= until_ms):
            await self.clock.sleep_until(t + self.bar_settle_ms)
            if self._stopping:
                break
            try:
                await self.step(t)
            except Exception as exc:  # crash-only: say so, then let the supervisor restart us
                await self._error("step_failed", None, exc, fatal=True)
                raise
            t += self.exec_tf_ms
        return self.stats

    async def _on_kill(self) -> Any:
        if self.kill_switch is None:
            return None
        return await self.kill_switch.engage("kill requested", actor="operator")

    # --- one execution-bar close -------------------------------------------------------------
    async def step(self, t: int) -> None:
        """Phases A–C for the bar closing at t, then the decision cycle if t closes one."""
        t0 = time.perf_counter()
        self.stats.steps += 1
        self.runtime.sim_time_ms = t
        bars: dict[str, Candle] = {}
        for sym in self.symbols:  # A: the venue sees the closed bar
            series = await self.market.closed_bars(sym, self.settings.execution_timeframe, t - self.exec_tf_ms, t)
            if len(series):
                i = len(series) - 1
                bar = Candle(int(series.open_ms[i]), float(series.open[i]), float(series.high[i]),
                             float(series.low[i]), float(series.close[i]), float(series.volume[i]))
                if bar.open_ms + self.exec_tf_ms == t:
                    bars[sym] = bar
                    await self.feed.bar_closed(sym, bar)
        if bars:
            self.runtime.mark_market_data()
        for sym in self.symbols:  # B: the venue's price is now the next bar's open
            await self.feed.price_now(sym, t)
        await self._manage_positions(t, bars)  # C
        if t % self.decision_tf_ms == 0 and not self.runtime.kill_requested:  # D
            await self.run_cycle(t)
        if self.reconciler is not None and self.stats.steps % self.reconcile_every == 0:
            await self.reconcile()
        if t % self.decision_tf_ms == 0 or self._dirty:
            await self._publish(t)  # status for /status and /metrics (every decision bar, or on a change)
            self._dirty = False
        metrics.LOOP_DURATION.labels("step").observe(time.perf_counter() - t0)

    async def _manage_positions(self, t: int, bars: dict[str, Candle]) -> None:
        for pos in sorted(await self.executor.positions.open_positions(), key=lambda p: p.symbol):
            pid = pos.position_id
            assert pid is not None
            try:
                await self.executor.ledger.sync_funding(pos)
                await self.executor.sync_position(pid)
                if await self._closed(pid, t):
                    continue
                state = await self.executor.positions.get(pid)
                bar = bars.get(pos.symbol)
                if state is None or bar is None:
                    continue
                filters = await self._symbol_filters(pos.symbol)
                new_state, intents = await self.risk.on_bar(
                    state, Bar(bar.open_ms, bar.open, bar.high, bar.low, bar.close), filters)
                await self._execute_exit_intents(pid, new_state, intents, t, state.stop_price)
            except Exception as exc:  # one position's failure must not stop the others' protection
                await self._error("position_step_failed", pos.symbol, exc)

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
                state.symbol, state.side.value, old_stop, state.stop_price, move.reason, getattr(res, "status", None)))
            await self._closed(pid, t)

    async def _closed(self, pid: str, t: int) -> bool:
        """True when the position is closed; the first time, tell the breakers and listeners."""
        row = await self.executor.positions.get_row(pid)
        if row is None or row["status"] != "closed":
            return False
        if pid in self._seen_closed:
            return True
        self._seen_closed.add(pid)
        self._dirty = True
        net = float(row["net_pnl"] or 0.0)
        reason = str(row["exit_reason"] or "")
        # listeners hear of the trade before of the breakers it may trip
        await self.runtime.emit("trade_closed", {"symbol": row["symbol"], "net_pnl": net, "exit_reason": reason})
        await self.risk.record_trade_closed(row["symbol"], net, reason, t)
        self.stats.closes += 1
        self.stats.trades.append({"symbol": row["symbol"], "net_pnl": net, "exit_reason": reason, "time_ms": t})
        metrics.TRADES.labels(row["symbol"], row["side"]).inc()
        if net > 0:
            metrics.WINS.labels(row["symbol"], row["side"]).inc()
        return True

    async def _error(self, what: str, symbol: str | None, exc: Exception, *, fatal: bool = False) -> None:
        """Count, log and tell listeners (identical repeats within an hour are held back)."""
        self.stats.errors += 1
        text = ev.error_text(exc)
        if isinstance(exc, ExchangeError):  # expected trouble: no traceback
            self.runtime.mark_exchange(False, str(exc))
            log.warning("engine." + what, symbol=symbol, error=text)
        else:
            log.error("engine." + what, symbol=symbol, error=text, exc_info=exc)
        repeats = self._errors.admit(what, symbol, exc, self.clock.now_ms())
        if repeats is not None or fatal:
            await self.runtime.emit("error", ev.error_payload(what, symbol, exc, fatal=fatal, repeats=repeats or 0))

    async def _breaker_event(self, event: Any) -> None:
        """RiskManager hook: a breaker tripped or reset."""
        self._dirty = True
        key = f"{event.breaker}:{event.symbol}" if event.symbol else event.breaker
        self.runtime.set_breaker(key, event.reason if event.event == "trip" else None)
        kind, payload = ev.breaker_payload(event)
        await self.runtime.emit(kind, payload)

    async def _symbol_filters(self, symbol: str) -> Any:
        if symbol not in self._filters:
            self._filters[symbol] = await self.exchange.symbol_filters(symbol)
        return self._filters[symbol]

    # --- the decision cycle ------------------------------------------------------------------
    async def run_cycle(self, t: int) -> None:
        """Phase D at decision time t: every symbol, sorted, one after the other."""
        self.stats.cycles += 1
        t0 = time.perf_counter()
        snaps = await self.market.snapshots(t, self.symbols)
        for sym in self.symbols:
            snap = snaps.get(sym)
            if snap is None:
                continue
            try:
                await self._decide(sym, snap, t)
            except Exception as exc:  # one symbol's failure must not stop the cycle
                await self._error("decision_failed", sym, exc)
        self.runtime.mark_scan()
        metrics.LAST_SCAN.set(time.time())
        metrics.LOOP_DURATION.labels("decision_cycle").observe(time.perf_counter() - t0)

    async def _account(self) -> tuple[Any, dict[str, float], list[PositionState]]:
        balance = await self.exchange.balance()
        venue = await self.exchange.fetch_positions()
        marks = {p.symbol: float(p.mark_price or p.entry_price) for p in venue}
        positions = await self.executor.positions.open_positions()
        return balance, marks, positions

    async def _decide(self, sym: str, snap: Any, t: int) -> None:
        balance, marks, positions = await self._account()
        views = tuple(PositionView(p.symbol, p.side, p.entry_price, marks.get(p.symbol, p.entry_price), p.quantity,
                                   p.leverage, (marks.get(p.symbol, p.entry_price) - p.entry_price) * p.quantity
                                   * p.side.sign, 0.0, p.stop_price, p.liquidation_price) for p in positions)
        ctx = VoteContext(snap, AccountView(balance.equity, balance.available_balance, self.runtime.day_pnl,
                                            len(positions)), views)
        result = await self.consensus.decide(ctx)
        proposal = result.proposal
        self.stats.decisions += 1
        record: dict[str, Any] = {"time_ms": t, "symbol": sym, "action": proposal.action.value,
                                  "confidence": proposal.confidence, "decision_id": result.decision_id,
                                  "votes": [{"voter": v.voter, "action": v.action.value, "confidence": v.confidence}
                                            for v in result.votes],
                                  "abstentions": [{"voter": a.voter, "reason": a.reason} for a in result.abstentions]}
        for v in result.votes:
            self.runtime.mark_provider(v.voter, True)
        for a in result.abstentions:
            self.runtime.mark_provider(a.voter, False, a.reason)
        pos = next((p for p in positions if p.symbol == sym), None)
        if pos is not None:
            if wants_close(proposal, pos.side):
                _, intents = await self.risk.on_consensus_close(pos, t, snap.price)
                record["verdict"] = "close" if intents else "close_blocked_min_hold"
                if intents and pos.position_id:
                    await self.executor.close(pos.position_id, ExitReason.CONSENSUS_CLOSE.value)
                    await self._closed(pos.position_id, t)
            self.runtime.record_decision(record)
            return
        if proposal.action not in (Action.LONG, Action.SHORT) or self.runtime.paused:
            record["verdict"] = "paused" if self.runtime.paused and proposal.action.side else "none"
            self.runtime.record_decision(record)
            return
        await self._enter(sym, snap, t, proposal, balance, marks, positions, record)
        self.runtime.record_decision(record)

    async def _enter(self, sym: str, snap: Any, t: int, proposal: Any, balance: Any, marks: dict[str, float],
                     positions: list[PositionState], record: dict[str, Any]) -> None:
        view = snap.view(self.settings.decision_timeframe)
        filters = await self._symbol_filters(sym)
        verdict = await self.risk.evaluate(
            proposal, equity=balance.equity, now_ms=t, available_balance=balance.available_balance,
            filters=filters, atr=view.atr if view else None,
            atr_pct_percentile=view.atr_pct_percentile if view else None, regime=snap.regime,
            funding_rate=snap.funding_rate, open_positions=positions, marks=marks,
            decision_id=result_id(proposal))
        record["verdict"] = verdict.status
        record["reasons"] = list(verdict.reasons)
        self.runtime.breakers = dict(self.risk.breakers_status(t))
        if not verdict.accepted or verdict.side is None:
            return
        intent = OrderIntent(kind=IntentKind.OPEN, symbol=sym, side=verdict.side, quantity=verdict.quantity,
                             reason="entry", price_hint=proposal.reference_price, stop_price=verdict.stop_price,
                             leverage=verdict.leverage, decision_id=proposal.decision_id)
        res = await self.executor.open_position(intent, take_profit=verdict.take_profit, risk_usd=verdict.risk_usd,
                                                atr=view.atr if view else None)
        record["execution"] = res.status
        self._dirty = True
        if res.status == "opened":
            self.stats.entries += 1
            await self.runtime.emit("trade_opened", {"symbol": sym, "side": verdict.side.value,
                                                     "quantity": res.quantity, "price": res.price})
        elif res.position_id:
            await self._closed(res.position_id, t)

    # --- status ------------------------------------------------------------------------------
    async def _publish(self, t: int) -> None:
        try:
            balance = await self.exchange.balance()
            venue = await self.exchange.fetch_positions()
        except ExchangeError as exc:
            self.runtime.mark_exchange(False, str(exc))
            return
        self.runtime.equity = balance.equity
        self.runtime.wallet_balance = balance.wallet_balance
        book = getattr(self.risk, "book", None)
        start = getattr(book, "day_start_equity", None)
        self.runtime.day_pnl = balance.equity - start if start else 0.0
        peak = getattr(book, "equity_peak", None)
        metrics.EQUITY.set(balance.equity)
        metrics.UNREALIZED_PNL.set(balance.unrealized_pnl)
        metrics.OPEN_POSITIONS.set(len(venue))
        if peak:
            metrics.DRAWDOWN.set(max(0.0, (peak - balance.equity) / peak * 100.0))
        states = {p.symbol: p for p in await self.executor.positions.open_positions()}
        self.runtime.positions = [
            {"symbol": p.symbol, "side": p.side.value, "entry_price": p.entry_price, "mark_price": p.mark_price,
             "quantity": p.quantity, "leverage": p.leverage, "pnl": p.unrealized_pnl,
             "liquidation_price": p.liquidation_price,
             "stop_price": states[p.symbol].stop_price if p.symbol in states else None,
             "take_profit": states[p.symbol].take_profit if p.symbol in states else None,
             "trailing_active": states[p.symbol].trailing_active if p.symbol in states else None,
             "peak_price": states[p.symbol].peak_price if p.symbol in states else None,
             "opened_ms": states[p.symbol].opened_ms if p.symbol in states else None}
            for p in venue]
        self.runtime.breakers = dict(self.risk.breakers_status(t))


def result_id(proposal: Any) -> str | None:
    return getattr(proposal, "decision_id", None)


__all__ = ["Engine", "EngineStats", "NullVenueFeed", "Side", "VenueFeed"]
