"""The rows of the paper venue's books (`quorum.execution.paper_book`): symbols' progress marks,
positions, orders, trades, funding, a change set to write, and where ids and funding rates come
from."""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Protocol

from quorum.domain.fills import FillModel
from quorum.domain.models import OrderState, Side
from quorum.domain.venue import VenueOrder

MAX_TRIGGERS_PER_BAR = 4  # a partial TP and the stop may both trigger on one bar


class FundingSource(Protocol):
    """Funding rates by (symbol, funding time): `prefetch` may do I/O (before the book is
    touched), `rate` only reads what was fetched (None = no rate known)."""

    async def prefetch(self, symbol: str, start_ms: int, end_ms: int) -> None: ...

    def rate(self, symbol: str, time_ms: int) -> float | None: ...


class CallableFunding:
    """A plain `(symbol, time_ms) -> rate` function (recorded data) as a `FundingSource`."""

    def __init__(self, fn: Callable[[str, int], float | None]) -> None:
        self.fn = fn

    async def prefetch(self, symbol: str, start_ms: int, end_ms: int) -> None:
        return None

    def rate(self, symbol: str, time_ms: int) -> float | None:
        return self.fn(symbol, time_ms)


@dataclass(slots=True)
class SymbolMarks:
    """How far the venue has seen a symbol: last price, the last processed bar's close
    (`bar_until_ms`), funding settled up to `funded_until_ms`, and the symbol's leverage."""

    symbol: str
    leverage: int = 20
    last_price: float | None = None
    last_time_ms: int | None = None
    funded_until_ms: int | None = None
    bar_until_ms: int | None = None


@dataclass(slots=True)
class BookPosition:
    symbol: str
    side: Side
    quantity: float
    entry_price: float
    leverage: int
    isolated_margin: float
    liquidation_price: float | None


@dataclass(slots=True)
class BookOrder:
    client_order_id: str
    exchange_order_id: int
    symbol: str
    side: str
    type: str
    reduce_only: bool
    quantity: float
    stop_price: float | None
    state: OrderState
    time_ms: int
    filled_quantity: float = 0.0
    average_price: float | None = None
    closed_ms: int | None = None

    def view(self) -> VenueOrder:
        return VenueOrder(self.client_order_id, str(self.exchange_order_id), self.symbol, self.side, self.type,
                          self.quantity, self.state, self.filled_quantity, self.average_price, self.stop_price,
                          self.reduce_only, self.time_ms)


@dataclass(slots=True)  # not frozen: built for every fill, and frozen dataclasses construct slowly
class BookTrade:
    trade_id: int
    client_order_id: str
    symbol: str
    side: str
    quantity: float
    price: float
    fee: float
    realized_pnl: float
    reason: str | None
    time_ms: int
    liquidity: str = "taker"


@dataclass(slots=True)
class BookFunding:
    symbol: str
    time_ms: int
    rate: float
    mark_price: float
    quantity: float
    amount: float


def funding_row(pos: BookPosition, time_ms: int, mark: float, published: float | None,
                fallback: float | None) -> tuple[BookFunding, str] | None:
    """What `pos` pays (+) or receives (−) at funding time `time_ms` at `mark`: at the `published`
    rate, else at the `fallback` ("published" / "fallback" says which); None without either."""
    rate, source = (published, "published") if published is not None else (fallback, "fallback")
    if rate is None:
        return None
    amount = FillModel.funding_payment(pos.side, pos.quantity, mark, rate)
    return BookFunding(pos.symbol, time_ms, rate, mark, pos.quantity, amount), source


@dataclass
class BookChanges:
    """What changed since the last `changes()`: rows to write. `marks_only` when nothing but
    symbols' progress marks changed (safe to write later, with the next change or at the end of
    the step)."""

    wallet: float | None = None
    symbols: list[SymbolMarks] = field(default_factory=list)
    positions: list[BookPosition] = field(default_factory=list)
    closed_positions: list[str] = field(default_factory=list)
    orders: list[BookOrder] = field(default_factory=list)
    trades: list[BookTrade] = field(default_factory=list)
    funding: list[BookFunding] = field(default_factory=list)


class Ids:
    """Order and trade ids: drawn from `reserve` (filled by the owner, e.g. from database
    sequences); a book without an owner numbers them itself."""

    def __init__(self, *, counting: bool = False) -> None:
        self.orders: list[int] = []
        self.trades: list[int] = []
        self._count: Iterator[int] | None = itertools.count(1) if counting else None

    def low(self, need: int = MAX_TRIGGERS_PER_BAR + 1) -> bool:
        return self._count is None and (len(self.orders) < need or len(self.trades) < need)

    def reserve(self, orders: list[int], trades: list[int]) -> None:
        self.orders.extend(orders)
        self.trades.extend(trades)

    def order(self) -> int:
        return next(self._count) if self._count is not None else self.orders.pop(0)

    def trade(self) -> int:
        return next(self._count) if self._count is not None else self.trades.pop(0)
