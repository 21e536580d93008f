"""The engine's ports: what `quorum.engine.Engine` needs from the world, as typed protocols.

The engine is written against these only; `quorum.bootstrap` (the composition root) chooses the
implementations — replayed or live market data, a simulated or a wall clock, the paper venue or
Binance, the Postgres stores. mypy checks every implementation against its port where it is
wired, so an adapter cannot drift from what the engine calls.

    MarketData       snapshots, closed bars after a time, the last price, the universe
    Clock            now, sleep until a time, wake a sleeper
    VenueFeed        what a simulated venue is shown of the market (a real venue: nothing)
    Venue            the exchange itself (`quorum.execution.exchange.Exchange`)
    PositionReader   the record of positions the engine reads (open ones, a closed trade)
    TradeExecutor    acting on intents: open, reduce, close, move a stop, sync with the venue
    RiskGate         breakers, the entry verdict, exits bar by bar
    Consensus        one decision per symbol; a cycle's decisions stored together
    Reconciliation   the venue against the record; KillSwitch: flatten everything
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from typing import Any, Protocol

from quorum.ai.consensus import ConsensusResult
from quorum.ai.context import VoteContext
from quorum.clock import Clock
from quorum.domain.breakers import BreakerBook, BreakerEvent
from quorum.domain.exits import BarLike
from quorum.domain.models import Candle, OrderIntent, PositionState, Proposal, Regime, SymbolFilters
from quorum.domain.risk import RiskVerdict
from quorum.execution.exchange import Exchange as Venue
from quorum.execution.killswitch import KillReport
from quorum.execution.reconcile import ReconcileReport
from quorum.market.feeds import MarketData
from quorum.store.positions import ClosedPosition

__all__ = ["Alerts", "Clock", "ClosedPosition", "Consensus", "KillSwitch", "MarketData", "PositionReader",
           "Reconciliation", "RiskGate", "TradeExecutor", "Venue", "VenueFeed"]


class VenueFeed(Protocol):
    """What a simulated venue must be shown of the market, and what it says of its own progress
    (a real exchange sees the market itself: `quorum.engine.NullVenueFeed`)."""

    async def bar_closed(self, symbol: str, bar: Candle, timeframe_ms: int) -> None: ...

    async def price_now(self, symbol: str, time_ms: int, bar: Candle | None = None) -> None: ...

    async def held(self) -> dict[str, int | None]:
        """Symbols the venue holds → the close of the last bar it processed for them."""

    async def step_done(self) -> None:
        """The end of a step: what the venue holds only in memory is made durable."""

    def funding_info(self) -> dict[str, Any] | None:
        """How the venue's funding was charged (published / fallback counts), if it charges it."""


class PositionReader(Protocol):
    async def open_positions(self) -> list[PositionState]: ...

    async def open_for_symbol(self, symbol: str) -> PositionState | None: ...

    async def get(self, position_id: str) -> PositionState | None: ...

    async def closed_position(self, position_id: str) -> ClosedPosition | None: ...


class Alerts(Protocol):
    async def raise_alert(self, severity: str, kind: str, message: str, *, symbol: str | None = None,
                          details: dict[str, Any] | None = None) -> int: ...

    async def resolve(self, alert_id: int) -> Any: ...


class ExecOutcome(Protocol):
    @property
    def status(self) -> str: ...

    @property
    def position_id(self) -> str | None: ...

    @property
    def quantity(self) -> float: ...

    @property
    def price(self) -> float | None: ...


class TradeExecutor(Protocol):
    entries_allowed: bool

    @property
    def positions(self) -> PositionReader: ...

    @property
    def alerts(self) -> Alerts: ...

    @property
    def fills_stored(self) -> int:
        """How many fills this process has stored (a new one: something to look at)."""

    async def open_position(self, intent: OrderIntent, *, position_id: str | None = None,
                            take_profit: float | None = None, risk_usd: float | None = None,
                            atr: float | None = None) -> ExecOutcome: ...

    async def reduce(self, position_id: str, quantity: float, reason: str) -> ExecOutcome: ...

    async def close(self, position_id: str, reason: str, *, ensure: bool = True,
                    purpose: str = "exit") -> ExecOutcome: ...

    async def move_stop(self, position_id: str, new_stop: float, reason: str | None = None) -> ExecOutcome: ...

    async def sync_position(self, position_id: str, *, reason: str | None = None, ensure: bool = True) -> None: ...

    async def sync_funding(self, position: PositionState) -> float: ...


class RiskGate(Protocol):
    @property
    def mode(self) -> str: ...

    @property
    def book(self) -> BreakerBook: ...

    on_breaker_event: Callable[[BreakerEvent], Awaitable[None]] | None

    async def load(self) -> BreakerBook: ...

    def breakers_status(self, now_ms: int) -> dict[str, str]: ...

    async def evaluate(self, proposal: Proposal, *, equity: float, now_ms: int,
                       available_balance: float | None = None, filters: SymbolFilters | None = None,
                       atr: float | None = None, atr_pct_percentile: float | None = None,
                       regime: Regime = ..., funding_rate: float | None = None,
                       open_positions: Sequence[PositionState] | None = None,
                       marks: Mapping[str, float] | None = None, clusters: tuple[frozenset[str], ...] = (),
                       record: Any = None, decision_id: str | None = None,
                       proposal_id: int | None = None) -> RiskVerdict: ...

    async def on_bar(self, position: PositionState, bar: BarLike,
                     filters: SymbolFilters | None = None) -> tuple[PositionState, tuple[OrderIntent, ...]]: ...

    async def on_consensus_close(self, position: PositionState, now_ms: int,
                                 price: float) -> tuple[PositionState, tuple[OrderIntent, ...]]: ...

    async def record_trade_closed(self, symbol: str, net_pnl: float, exit_reason: str,
                                  now_ms: int) -> tuple[BreakerEvent, ...]: ...

    async def reset_breaker(self, breaker: str, *, actor: str, now_ms: int,
                            symbol: str | None = None) -> tuple[BreakerEvent, ...]: ...


class Consensus(Protocol):
    async def decide(self, ctx: VoteContext, *, persist: bool = True, decision_id: str | None = None,
                     snapshot_hash: str | None = None) -> ConsensusResult: ...

    def batched(self) -> AbstractAsyncContextManager[None]:
        """Decisions taken inside are stored together when it ends."""


class Reconciliation(Protocol):
    async def run(self) -> ReconcileReport: ...


class KillSwitch(Protocol):
    async def engage(self, reason: str, *, actor: str = "system") -> KillReport: ...
