"""PaperExchange: a simulated USDⓈ-M venue whose books are kept in memory (`PaperBook`) and in
Postgres (tables `paper_*`, written by `quorum.store.paper`).

It implements the `Exchange` protocol, so the engine cannot tell it from Binance, and it uses
the shared `FillModel` (quorum.domain.fills), so paper and backtest fill alike: market orders
fill at the last price (from `on_price` / `on_bar`) plus slippage; reduce-only stops and
take-profits and the liquidation trigger inside `on_bar`; funding at each funding time, on what
is held at that instant (an entry filled at T does not pay T's funding, a close at T does), at the
rate `funding_source` gives (recorded data in a replay, the rate Binance published on live data)
and only when none can be had the fixed `funding_rate` (PAPER_FUNDING_RATE); `funding_stats`
counts both. The rules themselves: `quorum.execution.paper_book`.

What is persisted, and when (crash-only):
- every order, fill, position, funding and wallet change is written before the operation
  returns, in one statement (one round trip, atomic), so a session killed at any point restarts
  from a consistent venue — and what the engine recorded from the venue is on the venue too;
- progress marks alone (a bar processed without any event, a known flat symbol's new price)
  wait for the next write or for `flush()`, which the engine calls at the end of every step: a
  flat symbol with no orders costs no round trip, and every read is served from memory.

The venue remembers how far it has seen each symbol's price path (`bar_until_ms`): a bar it has
already processed is ignored, so feeding it again changes nothing, and `held()` tells the engine
where to resume feeding each open position after any gap. One process owns an account at a time.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import cast

import asyncpg

from quorum import metrics
from quorum.domain.fills import FillModel
from quorum.domain.models import Bracket, Candle, SymbolFilters
from quorum.execution.exchange import (
    Balance,
    FundingEntry,
    OrderRejected,
    OrderRequest,
    UnknownSymbol,
    VenueFill,
    VenueOrder,
    VenuePosition,
)
from quorum.execution.paper_book import CallableFunding, FundingSource, Ids, PaperBook
from quorum.execution.venue_rules import (  # re-exported: the backtester's venue uses the same rules
    DEFAULT_BRACKETS,
    bracket_for,
    default_filters,
    isolated_liquidation_price,
)
from quorum.store import paper as store

__all__ = ["DEFAULT_BRACKETS", "FundingSource", "PaperExchange", "bracket_for", "default_filters",
           "isolated_liquidation_price"]


class PaperExchange:
    """A paper venue for one `account` (e.g. "paper"); see the module docstring."""

    name = "paper"
    definitive_lookups = True  # every order is written before it is answered: "not found" means never placed

    def __init__(
        self,
        pool: asyncpg.Pool,
        *,
        account: str = "paper",
        fill_model: FillModel | None = None,
        initial_balance: float = 1000.0,
        filters: Mapping[str, SymbolFilters] | None = None,
        brackets: Mapping[str, tuple[Bracket, ...]] | None = None,
        funding_rate: float | None = 0.0001,
        funding_source: FundingSource | Callable[[str, int], float | None] | None = None,
        funding_interval_ms: int = 8 * 3_600_000,
        timeframe_ms: int = 300_000,
        clock: Callable[[], int] | None = None,
    ) -> None:
        self._pool = pool
        self.account = account
        self.model = fill_model or FillModel()
        self.initial_balance = initial_balance
        self._filters = dict(filters or {})
        self._brackets = dict(brackets or {})
        self.funding_rate = funding_rate
        self.funding_source: FundingSource | None = (
            CallableFunding(funding_source) if funding_source is not None and not hasattr(funding_source, "prefetch")
            else cast("FundingSource | None", funding_source))
        self.funding_stats = {"published": 0, "fallback": 0}
        self.funding_interval_ms = funding_interval_ms
        self.timeframe_ms = timeframe_ms
        self._clock = clock
        self._ids = Ids()
        self.book = PaperBook(model=self.model, wallet=initial_balance, brackets=self._brackets,
                              funding_rate=funding_rate, funding_interval_ms=funding_interval_ms, ids=self._ids,
                              on_funding=self._funded,
                              rates=None if self.funding_source is None else self.funding_source.rate)
        self._started = False

    def _funded(self, source: str) -> None:
        self.funding_stats[source] += 1
        metrics.FUNDING_EVENTS.labels(source).inc()

    async def start(self) -> None:
        """Create the account on first use (an existing account keeps its balance) and load the
        books."""
        self.book.wallet = await store.open_account(self._pool, self.account, self.initial_balance)
        self.book.load(**await store.load_books(self._pool, self.account))
        self._started = True

    async def _ensure(self) -> None:
        if not self._started:
            await self.start()

    async def close(self) -> None:
        await self.flush()

    async def _ids_for_change(self) -> None:
        if self._ids.low():
            self._ids.reserve(*await store.reserve_ids(self._pool))

    async def _write(self, *, marks_too: bool = False) -> None:
        """Persist what changed: at once when anything but progress marks changed (or asked)."""
        if self.book.dirty and (marks_too or not self.book.marks_only):
            changes = self.book.changes()
            try:
                await store.apply_changes(self._pool, self.account, changes)
            except BaseException:
                await self._reload()  # memory must never run ahead of what is stored
                raise

    async def _reload(self) -> None:
        self.book.changes()
        self._started = False
        try:
            await self.start()
        except Exception:
            return  # the database is away: the next operation loads the books again

    async def flush(self) -> None:
        """Write the progress marks that are still only in memory (the end of an engine step)."""
        if self._started:
            await self._write(marks_too=True)

    # --- market data in ------------------------------------------------------------------
    async def _prefetch(self, symbol: str, until_ms: int | None) -> None:
        """Fetch the rates of the funding the book will settle up to `until_ms` (the symbol's last
        price time if None), before the books are touched: only for a position with funding due."""
        marks = self.book.symbols.get(symbol)
        until = until_ms if until_ms is not None else (None if marks is None else marks.last_time_ms)
        if self.funding_source is not None and until is not None:
            due = self.book.funding_due(symbol, until)
            if due:
                await self.funding_source.prefetch(symbol, due[0] - 1, due[-1])

    async def on_price(self, symbol: str, price: float, time_ms: int) -> None:
        """The price at `time_ms` (mark/last); market orders fill from it. Funding due up to and
        including `time_ms` is settled first, on what is held before any order at `time_ms` fills
        (the rule: `quorum.execution.paper_book`). While the symbol is flat its progress marks
        move with the price."""
        await self._ensure()
        new = symbol not in self.book.symbols
        await self._prefetch(symbol, time_ms)
        self.book.on_price(symbol, price, time_ms)
        # a symbol's first price is stored at once (the venue knows it from then on); funding too
        await self._write(marks_too=new)

    async def held(self) -> dict[str, int | None]:
        """Symbols with an open position → the close time of the last bar the venue processed
        for them (None if unknown): the engine feeds each one every bar after that, in order."""
        await self._ensure()
        return self.book.held()

    async def on_bar(self, symbol: str, bar: Candle, timeframe_ms: int | None = None) -> list[VenueFill]:
        """Process one closed bar of the price path (`timeframe_ms` long, the execution timeframe
        by default; 1m bars on live data): funding due at or before its open, then stops,
        take-profits and liquidation on its range; finally the close becomes the last price.
        A bar the venue has already processed is ignored."""
        await self._ensure()
        close_ms = bar.open_ms + (timeframe_ms or self.timeframe_ms)
        if self.book.seen(symbol, close_ms):
            return []
        await self._prefetch(symbol, bar.open_ms)
        await self._ids_for_change()
        new = symbol not in self.book.symbols
        trades = self.book.on_bar(symbol, bar, close_ms)
        fills = [self.book.fill_view(t, self.book.orders.get(t.client_order_id)) for t in trades]
        await self._write(marks_too=new)
        return fills

    # --- trading -------------------------------------------------------------------------
    async def create_order(self, request: OrderRequest) -> VenueOrder:
        await self._ensure()
        filters = await self.symbol_filters(request.symbol)
        now = self._clock() if self._clock else None
        if not request.conditional:
            await self._prefetch(request.symbol, now)  # a fill settles the funding due by its time
        await self._ids_for_change()
        try:
            order = self.book.create_order(request, filters, now)
        finally:
            await self._write()  # a refused order changed nothing but the funding it settled
        return order.view()

    async def cancel_order(self, symbol: str, client_order_id: str, *, conditional: bool = False) -> VenueOrder | None:
        await self._ensure()
        order = self.book.cancel_order(client_order_id)
        await self._write()
        return order

    async def fetch_order(self, symbol: str, client_order_id: str, *, conditional: bool = False) -> VenueOrder | None:
        await self._ensure()
        order = self.book.orders.get(client_order_id)
        return None if order is None else order.view()

    async def fetch_open_orders(self, symbol: str | None = None) -> list[VenueOrder]:
        await self._ensure()
        return self.book.fetch_open_orders(symbol)

    async def fetch_positions(self) -> list[VenuePosition]:
        await self._ensure()
        return self.book.fetch_positions()

    async def fetch_fills(self, symbol: str, since_ms: int | None = None) -> list[VenueFill]:
        await self._ensure()
        return self.book.fetch_fills(symbol, since_ms)

    async def funding_history(self, symbol: str | None = None, since_ms: int | None = None) -> list[FundingEntry]:
        await self._ensure()
        return self.book.funding_history(symbol, since_ms)

    # --- account -------------------------------------------------------------------------
    async def balance(self) -> Balance:
        await self._ensure()
        return self.book.balance()

    async def symbol_filters(self, symbol: str) -> SymbolFilters:
        if symbol in self._filters:
            return self._filters[symbol]
        await self._ensure()
        marks = self.book.symbols.get(symbol)
        if marks is None or marks.last_price is None:
            raise UnknownSymbol(f"symbol {symbol!r} does not exist on the paper venue (no filters, no price)")
        self._filters[symbol] = default_filters(symbol, marks.last_price)
        return self._filters[symbol]

    async def leverage_brackets(self, symbol: str) -> tuple[Bracket, ...]:
        await self.symbol_filters(symbol)
        return self._brackets.get(symbol, DEFAULT_BRACKETS)

    async def set_leverage(self, symbol: str, leverage: int) -> None:
        brackets = await self.leverage_brackets(symbol)
        if leverage < 1 or leverage > brackets[0].max_leverage:
            raise OrderRejected(f"leverage {leverage} is not valid for {symbol} (max {brackets[0].max_leverage})",
                                code="-4028")
        await self._ensure()
        marks = self.book.symbols.get(symbol)
        if marks is not None and marks.leverage == leverage:
            return
        self.book.set_leverage(symbol, leverage)
        await self._write(marks_too=True)

    async def set_margin_mode(self, symbol: str, mode: str = "isolated") -> None:
        if mode != "isolated":
            raise OrderRejected("the paper exchange keeps isolated margin only", code="-4046")
        await self.symbol_filters(symbol)

    async def check_position_mode(self) -> None:
        return None  # always one-way
