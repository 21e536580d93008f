"""`RiskManager`: the adapter around the pure risk domain.

It keeps the breaker book in Postgres (bot_state) and writes a `breaker_events` row for every
trip and reset, a `risk_verdicts` row for every proposal it judges, and every change of an open
position's risk state (stop, peak, trailing flag, partial progress, quantity) through
`PositionRepository.update_risk_state` — so a restart (`await RiskManager(...).load()`) changes
nothing.

Engine usage (all times UTC ms):

    rm = RiskManager(pool, settings, mode="paper")
    await rm.load()
    await rm.update_equity(equity, now_ms)                 # every cycle (breakers, day roll)
    verdict = await rm.evaluate(proposal, equity=..., now_ms=..., filters=..., atr=..., clusters=..., ...)
    state = rm.open_state(verdict, fill_price=..., quantity=..., opened_ms=..., position_id=...)
    state, intents = await rm.on_bar(state, bar)           # every execution bar / price update
    state, intents = await rm.on_consensus_close(state, now_ms, price)
    await rm.record_trade_closed(symbol, net_pnl, exit_reason, now_ms)
    await rm.reset_breaker("drawdown", actor="operator", now_ms=...)

Optional hook: `rm.on_breaker_event = async fn(BreakerEvent)` is awaited for every trip and reset
after it is stored (the engine registers one to notify listeners); a failing hook is logged and
never stops the risk manager.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import replace
from typing import Any

import asyncpg
import structlog

from quorum.domain import breakers as brk
from quorum.domain.exits import BarLike, ExitPolicy, consensus_close, step_bar
from quorum.domain.exposure import ExposureState, OpenExposure
from quorum.domain.models import OrderIntent, PositionState, Proposal, Regime, SymbolFilters
from quorum.domain.risk import RiskContext, RiskPolicy, RiskVerdict, TrackRecord, evaluate, position_from_verdict
from quorum.risk.brackets import BracketTable
from quorum.store.positions import PositionRepository
from quorum.store.reports import profit_totals
from quorum.store.risk import RiskStore

log = structlog.get_logger(__name__)
HOUR_MS = 3_600_000
BreakerHook = Callable[[brk.BreakerEvent], Awaitable[None]]


class RiskManager:
    """Risk gate and exit keeper for one trading mode (see the module docstring)."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        settings: Any,
        mode: str | None = None,
        *,
        brackets: BracketTable | None = None,
        policy: RiskPolicy | None = None,
        exit_policy: ExitPolicy | None = None,
        on_breaker_event: BreakerHook | None = None,
    ) -> None:
        self.mode = mode or str(getattr(settings.trading_mode, "value", settings.trading_mode))
        self.policy = policy or RiskPolicy.from_settings(settings)
        self.exit_policy = exit_policy or ExitPolicy.from_settings(settings)
        self.brackets = brackets or BracketTable()
        self.pool = pool
        self.store = RiskStore(pool, self.mode)
        self.positions = PositionRepository(pool, self.mode)
        self.book = brk.BreakerBook()
        self._loaded = False
        self.on_breaker_event = on_breaker_event

    # --- state ----------------------------------------------------------------------------------
    async def load(self) -> brk.BreakerBook:
        """Read the breaker book from Postgres (call once at start; a restart resumes exactly)."""
        self.book = await self.store.load_book()
        self._loaded = True
        return self.book

    async def _apply(self, book: brk.BreakerBook, events: tuple[brk.BreakerEvent, ...]) -> tuple[brk.BreakerEvent, ...]:
        if book != self.book or events:
            await self.store.save_transition(book, events)
            self.book = book
            for e in events:
                log.warning("breaker_" + e.event, breaker=e.breaker, symbol=e.symbol, reason=e.reason, actor=e.actor)
                await self._notify(e)
        return events

    async def _notify(self, event: brk.BreakerEvent) -> None:
        if self.on_breaker_event is None:
            return
        try:
            await self.on_breaker_event(event)
        except Exception as exc:  # a notification failure must never block the risk gate
            log.warning("breaker_hook_failed", breaker=event.breaker, error=type(exc).__name__)

    def breakers_status(self, now_ms: int) -> dict[str, str]:
        """{breaker: reason} of the active trips (for RuntimeState.breakers and /status)."""
        return brk.status(self.book, now_ms)

    def entries_blocked(self, symbol: str, now_ms: int) -> tuple[str, ...]:
        return brk.entry_block_reasons(self.book, symbol, now_ms)

    async def update_equity(self, equity: float, now_ms: int) -> tuple[brk.BreakerEvent, ...]:
        """Feed the mark-to-market equity: day roll, daily loss, drawdown, cool-down expiry."""
        book, events = brk.on_equity(self.book, equity, now_ms, self.policy.breakers)
        return await self._apply(book, events)

    async def record_trade_closed(self, symbol: str, net_pnl: float, exit_reason: str,
                                  now_ms: int) -> tuple[brk.BreakerEvent, ...]:
        """A closed trade: loss streak and the per-symbol cool-down after a stop-out."""
        book, events = brk.on_trade_closed(self.book, symbol, net_pnl, exit_reason, now_ms, self.policy.breakers)
        return await self._apply(book, events)

    async def reset_breaker(self, breaker: str, *, actor: str, now_ms: int,
                            symbol: str | None = None) -> tuple[brk.BreakerEvent, ...]:
        """Operator reset (the only way to clear the drawdown breaker)."""
        book, events = brk.operator_reset(self.book, breaker, now_ms, actor, symbol)
        return await self._apply(book, events)

    # --- entries --------------------------------------------------------------------------------
    async def exposure_state(self, now_ms: int, open_positions: Sequence[PositionState] | None = None,
                             marks: Mapping[str, float] | None = None,
                             clusters: tuple[frozenset[str], ...] = ()) -> ExposureState:
        positions = list(open_positions) if open_positions is not None else await self.positions.open_positions()
        marks = marks or {}
        return ExposureState(
            open_positions=tuple(OpenExposure(p.symbol, p.side, p.quantity * marks.get(p.symbol, p.entry_price))
                                 for p in positions if p.quantity > 0),
            recent_open_ms=tuple(await self.store.recent_open_ms(now_ms - HOUR_MS)),
            last_exit_ms=await self.store.last_exit_ms(),
            clusters=clusters,
        )

    async def evaluate(
        self,
        proposal: Proposal,
        *,
        equity: float,
        now_ms: int,
        available_balance: float | None = None,
        filters: SymbolFilters | None = None,
        atr: float | None = None,
        atr_pct_percentile: float | None = None,
        regime: Regime = Regime.UNKNOWN,
        funding_rate: float | None = None,
        open_positions: Sequence[PositionState] | None = None,
        marks: Mapping[str, float] | None = None,
        clusters: tuple[frozenset[str], ...] = (),
        record: TrackRecord | None = None,
        decision_id: str | None = None,
        proposal_id: int | None = None,
    ) -> RiskVerdict:
        """Judge one proposal and store the verdict (every proposal gets a row). Never raises for
        bad proposal input: that is a rejected verdict. The breakers see `equity` first.
        `clusters`: the correlation clusters in force (`engine.clusters`); `record`: the Kelly
        cap's record, by default this mode's closed trades (`track_record`)."""
        await self.update_equity(equity, now_ms)
        exposure = await self.exposure_state(now_ms, open_positions, marks, clusters)
        if record is None:
            record = await self.track_record()
        ctx = RiskContext(
            equity=equity, now_ms=now_ms, brackets=self.brackets.for_symbol(proposal.symbol),
            available_balance=available_balance, filters=filters, atr=atr, atr_pct_percentile=atr_pct_percentile,
            regime=regime, funding_rate=funding_rate, exposure=exposure, breakers=self.book, record=record,
            policy=self.policy,
        )
        verdict = evaluate(proposal, ctx)
        await self.store.record_verdict(verdict, at_ms=now_ms, decision_id=decision_id or proposal.decision_id,
                                        proposal_id=proposal_id)
        log.info("risk_verdict", symbol=proposal.symbol, status=verdict.status, reasons=list(verdict.reasons),
                 quantity=verdict.quantity, leverage=verdict.leverage)
        return verdict

    async def track_record(self) -> TrackRecord | None:
        """This mode's closed trades as a record for the Kelly cap (None while KELLY_FRACTION is 0:
        no query then)."""
        if self.policy.kelly_fraction <= 0:
            return None
        row = await profit_totals(self.pool, self.mode)
        return TrackRecord.from_totals(int(row["n"]), int(row["wins"]), float(row["won"]), float(row["lost"]))

    def open_state(self, verdict: RiskVerdict, *, fill_price: float, quantity: float, opened_ms: int,
                   position_id: str, atr: float | None = None, decision_id: str | None = None) -> PositionState:
        """The PositionState of a filled entry (stop re-anchored at the fill, see
        `domain.risk.position_from_verdict`); persist it with `PositionRepository.open`."""
        return position_from_verdict(verdict, fill_price=fill_price, quantity=quantity, opened_ms=opened_ms,
                                     position_id=position_id, atr=atr, decision_id=decision_id,
                                     brackets=self.brackets.for_symbol(verdict.symbol))

    # --- exits ----------------------------------------------------------------------------------
    def policy_for(self, filters: SymbolFilters | None) -> ExitPolicy:
        return replace(self.exit_policy, qty_step=filters.step_size) if filters else self.exit_policy

    async def on_bar(self, position: PositionState, bar: BarLike,
                     filters: SymbolFilters | None = None) -> tuple[PositionState, tuple[OrderIntent, ...]]:
        """Step one open position over one execution bar (or a price tick) and persist its new
        risk state when it changed. Closing the position in the store is execution's job once
        the exit fills; a fully exited state (quantity 0) is therefore not written here."""
        state, intents = step_bar(position, bar, self.policy_for(filters))
        if state != position and state.quantity > 0 and position.position_id:
            await self.positions.update_risk_state(state)
        return state, intents

    async def on_consensus_close(self, position: PositionState, now_ms: int,
                                 price: float) -> tuple[PositionState, tuple[OrderIntent, ...]]:
        """Exit on a consensus CLOSE unless the minimum hold time has not passed yet."""
        return consensus_close(position, now_ms, price, self.exit_policy)
