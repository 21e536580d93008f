"""The engine's decision cycle (phase D): snapshots → consensus for every symbol at once →
risk and execution in sorted symbol order. Part of `quorum.engine.Engine` (a mixin: it uses the
engine's market, consensus, risk, executor, runtime, guard and trading lock).

On live data the cycle runs in the background (`_decide_at`), so positions are still managed
while the votes are gathered; only its execution phase holds the trading lock."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import structlog

from quorum import metrics
from quorum.ai.context import AccountView, PositionView, VoteContext
from quorum.domain.clusters import clusters_can_bind
from quorum.domain.models import Action, ExitReason, IntentKind, OrderIntent, PositionState
from quorum.engine.clusters import ClusterTracker
from quorum.engine.shared import wants_close

if TYPE_CHECKING:
    from quorum.ai.consensus import ConsensusResult
    from quorum.clock import Clock
    from quorum.config import Settings
    from quorum.domain.models import Proposal, Snapshot, SymbolFilters
    from quorum.engine.equity import EquityRecorder
    from quorum.engine.guard import StepGuard
    from quorum.engine.runtime import RuntimeState
    from quorum.engine.shared import EngineStats
    from quorum.execution.exchange import Balance
    from quorum.ports import Consensus, MarketData, RiskGate, TradeExecutor, Venue

log = structlog.get_logger("quorum.engine")


def indicators_defined(snap: Snapshot) -> bool:
    """Every timeframe of the snapshot has a closed bar with every indicator defined (no
    `no_data:` or `short_history:` flag). The fast backtest tests the same thing
    (`quorum.backtest.warmup.defined_mask`), so both decide at the same times."""
    return not any(f.startswith(("no_data:", "short_history:")) for f in snap.flags)


class DecisionCycle:
    """Mixin of `Engine` (see the module docstring)."""

    _cycle_task: asyncio.Task[None] | None
    trading_lock: asyncio.Lock
    concurrent_cycles: bool
    decision_tf_ms: int
    settings: Settings
    symbols: list[str]
    stats: EngineStats
    runtime: RuntimeState
    guard: StepGuard
    clock: Clock
    market: MarketData
    consensus: Consensus
    risk: RiskGate
    executor: TradeExecutor
    exchange: Venue
    _dirty: bool
    equity: EquityRecorder | None
    _cluster_tracker: ClusterTracker | None = None  # built at the first entry beside an open position

    if TYPE_CHECKING:  # provided by `quorum.engine.Engine` and `PositionKeeper`
        async def _error(self, what: str, symbol: str | None, exc: Exception, *, fatal: bool = False) -> None: ...

        async def _publish(self, t: int) -> None: ...

        async def _closed(self, pid: str, t: int) -> bool: ...

        def entry_block(self, symbol: str | None = None) -> str | None: ...

        async def _symbol_filters(self, symbol: str) -> SymbolFilters: ...

    async def _decide_at(self, t: int) -> None:
        """Phase D: inline in a replay; in the background on live data (one cycle at a time; a
        cycle too late to matter is skipped and counted)."""
        late_ms = self.clock.now_ms() - t
        if self.concurrent_cycles and late_ms > self.decision_tf_ms // 3:
            self.stats.cycles_skipped += 1
            log.warning("engine.cycle_skipped", reason="too late", late_s=late_ms // 1000)
            return
        if not self.concurrent_cycles:
            await self._cycle(t)
            return
        if self._cycle_task is not None and not self._cycle_task.done():
            self.stats.cycles_skipped += 1
            log.warning("engine.cycle_skipped", reason="the previous cycle is still running")
            return
        self._cycle_task = asyncio.create_task(self._cycle(t), name=f"cycle-{t}")

    async def _cycle(self, t: int) -> None:
        try:
            await self.run_cycle(t)
        except Exception as exc:
            if not self.concurrent_cycles:
                raise  # inline: the step fails and the loop's guard handles it
            if not await self.guard.database_down(exc):  # (a lost database: the next step waits for it)
                await self._error("cycle_failed", None, exc)
                await self.guard.failed(exc)
            return
        if self.concurrent_cycles and self._dirty:  # what it opened or closed shows now, not a step later
            try:
                async with self.trading_lock:
                    if self.equity is not None:  # the rows of its fills
                        await self.equity.fills()
                    await self._publish(t)
                self._dirty = False
            except Exception as exc:  # the database went away: the loop's next step waits for it
                log.warning("engine.publish_skipped", error=type(exc).__name__)

    async def _finish_cycle(self) -> None:
        """At the end of run(): a cycle still gathering votes is cancelled (nothing was sent);
        one that is placing orders (it holds the trading lock) may finish."""
        task = self._cycle_task
        if task is None or task.done():
            return
        if self.trading_lock.locked():
            try:
                await asyncio.wait_for(asyncio.shield(task), 10.0)
                return
            except (TimeoutError, Exception):
                pass
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)

    # --- the decision cycle ------------------------------------------------------------------
    async def run_cycle(self, t: int) -> None:
        """Phase D at decision time t. The consensus for every symbol is gathered at once (at most
        MAX_CONCURRENT_DECISIONS in flight; each provider also caps its own calls), from one view
        of the account; then, holding `trading_lock`, risk and execution act symbol by symbol in
        sorted order, each on a fresh read of the account (an entry on A counts in B's limits).
        One symbol's failure does not stop the others; a lost database propagates."""
        self.stats.cycles += 1
        t0 = time.perf_counter()
        snaps = await self.market.snapshots(t, self.symbols)
        # no decision before every timeframe's indicators are defined (warm-up)
        todo = [(sym, snap) for sym in self.symbols
                if (snap := snaps.get(sym)) is not None and indicators_defined(snap)]
        if todo:
            balance, marks, positions = await self._account()
            results = await self._gather_consensus(todo, balance, marks, positions)
            held = {p.symbol: p.position_id for p in positions}
            async with self.trading_lock:
                for sym, snap in todo:
                    result = results.get(sym)
                    if result is None:
                        continue
                    if self.runtime.kill_requested:  # flattened while the votes were gathered
                        log.warning("engine.cycle_execution_skipped", reason="kill requested", symbol=sym)
                        break
                    try:
                        await self._decide(sym, snap, t, result, held.get(sym))
                    except Exception as exc:  # one symbol's failure must not stop the cycle
                        if await self.guard.database_down(exc):
                            raise
                        await self._error("decision_failed", sym, exc)
        self.runtime.mark_scan()
        metrics.LOOP_DURATION.labels("decision_cycle").observe(time.perf_counter() - t0)

    async def _gather_consensus(self, todo: Sequence[tuple[str, Snapshot]], balance: Balance,
                                marks: dict[str, float], positions: list[PositionState]) -> dict[str, ConsensusResult]:
        """`consensus.decide` for every (symbol, snapshot) concurrently, bounded by
        MAX_CONCURRENT_DECISIONS; symbol → result for those that answered (failures are logged)."""
        views = tuple(PositionView(p.symbol, p.side, p.entry_price, marks.get(p.symbol, p.entry_price), p.quantity,
                                   p.leverage, (marks.get(p.symbol, p.entry_price) - p.entry_price) * p.quantity
                                   * p.side.sign, 0.0, p.stop_price, p.liquidation_price) for p in positions)
        account = AccountView(balance.equity, balance.available_balance, self.runtime.day_pnl, len(positions))
        gate = asyncio.Semaphore(self.settings.max_concurrent_decisions)

        async def one(snap: Snapshot) -> ConsensusResult | Exception:
            async with gate:
                try:
                    return await self.consensus.decide(VoteContext(snap, account, views))
                except Exception as exc:  # kept per symbol; the others go on
                    return exc

        async with self.consensus.batched():  # the cycle's decisions stored together
            outcomes = await asyncio.gather(*(one(snap) for _, snap in todo))
        results: dict[str, ConsensusResult] = {}
        failed: list[tuple[str, Exception]] = []
        for (sym, _), outcome in zip(todo, outcomes, strict=True):
            if isinstance(outcome, Exception):
                failed.append((sym, outcome))
            else:
                results[sym] = outcome
        if failed and await self.guard.database_down(failed[0][1]):
            raise failed[0][1]
        for sym, exc in failed:
            await self._error("decision_failed", sym, exc)
        return results

    async def _account(self) -> tuple[Balance, dict[str, float], list[PositionState]]:
        balance = await self.exchange.balance()
        venue = await self.exchange.fetch_positions()
        marks = {p.symbol: float(p.mark_price or p.entry_price) for p in venue}
        positions = await self.executor.positions.open_positions()
        return balance, marks, positions

    async def _decide(self, sym: str, snap: Snapshot, t: int, result: ConsensusResult,
                      asked_about: str | None) -> None:
        """Act on one symbol's consensus: close, enter or nothing, on a fresh read of the account.
        `asked_about` is the id of the position the voters were shown on this symbol (None: none)."""
        balance, marks, positions = await self._account()
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
        if (pos.position_id if pos is not None else None) != asked_about:
            # the position the voters judged was opened or closed meanwhile (e.g. its stop filled):
            # their answer is about a state that no longer exists
            record["verdict"] = "position_changed"
            self.runtime.record_decision(record)
            return
        if pos is not None:
            closed = False
            if wants_close(proposal, pos.side):
                _, intents = await self.risk.on_consensus_close(pos, t, snap.price)
                record["verdict"] = "close" if intents else "close_blocked_min_hold"
                if intents and pos.position_id:
                    await self.executor.close(pos.position_id, ExitReason.CONSENSUS_CLOSE.value)
                    await self._closed(pos.position_id, t)
                    closed = True
            if not (closed and proposal.action.side is not None):
                self.runtime.record_decision(record)
                return
            # a reversal: the other side is entered now, like any entry (the backtest does the same)
            record["reversal"] = "closed " + pos.side.value
            balance, marks, positions = await self._account()
        block = self.entry_block(sym)
        if proposal.action not in (Action.LONG, Action.SHORT) or block is not None:
            record["verdict"] = "none"
            if block is not None and proposal.action.side:
                record["verdict"] = block if block in ("paused", "paused_symbol") else "entries_blocked"
                if block not in ("paused", "paused_symbol"):
                    record["reasons"] = [block]
            self.runtime.record_decision(record)
            return
        await self._enter(sym, snap, t, proposal, balance, marks, positions, record)
        self.runtime.record_decision(record)

    async def _clusters_at(self, t: int, positions: list[PositionState]) -> tuple[frozenset[str], ...]:
        """The correlation clusters in force at t among the symbols traded and held (not computed
        while too few positions are open for any cluster to be full)."""
        if not clusters_can_bind(len(positions), self.settings.max_positions_per_cluster):
            return ()
        if self._cluster_tracker is None:
            self._cluster_tracker = ClusterTracker(self.market, self.settings)
        return await self._cluster_tracker.at(t, {*self.symbols, *(p.symbol for p in positions)})

    async def _enter(self, sym: str, snap: Snapshot, t: int, proposal: Proposal, balance: Balance,
                     marks: dict[str, float],
                     positions: list[PositionState], record: dict[str, Any]) -> None:
        view = snap.view(self.settings.decision_timeframe)
        filters = await self._symbol_filters(sym)
        verdict = await self.risk.evaluate(
            proposal, equity=balance.equity, now_ms=t, available_balance=balance.available_balance,
            filters=filters, atr=view.atr if view else None,
            atr_pct_percentile=view.atr_pct_percentile if view else None, regime=snap.regime,
            funding_rate=snap.funding_rate, open_positions=positions, marks=marks,
            clusters=await self._clusters_at(t, positions), decision_id=proposal.decision_id)
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
