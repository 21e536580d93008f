"""The backtester's venue: the paper venue's own books (`quorum.execution.paper_book.PaperBook`)
without a database — the same fills, triggers, funding, margin and liquidation by construction,
not by a twin kept in step with it.

The fast path (`quorum.backtest.fast`) calls it synchronously, as events: a bar (`on_bar`), the
price at a time (`on_price`), a market order (`market`, None when the venue refuses it), the
protective stop and take-profit (`place_stop` / `place_take_profit`: the new order is placed
before the old one is cancelled, as the executor does; False when the venue refuses it because
it would trigger at once). Quantities are floored to the step and trigger prices rounded to the
tick, as the order manager does before anything reaches a venue. It keeps what the backtest's
records need: every fill (`fills`),
every wallet change (`cash_events`) and funding payment (`funding_payments`).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass

from quorum.domain.fills import FillModel
from quorum.domain.models import Bracket, Candle, Fill, Side, SymbolFilters
from quorum.domain.paper_rows import BookTrade
from quorum.domain.sizing import floor_to_step, round_to_tick
from quorum.execution.exchange import OrderRejected, OrderRequest
from quorum.execution.paper_book import PaperBook
from quorum.execution.venue_rules import DEFAULT_BRACKETS

__all__ = ["BacktestVenue", "ProtectedPosition"]


@dataclass(frozen=True, slots=True)
class ProtectedPosition:
    """A position as the venue holds it, with its protective orders (prices as placed)."""

    symbol: str
    side: Side
    quantity: float
    entry_price: float
    liquidation_price: float
    stop_price: float | None
    stop_qty: float
    tp_price: float | None
    tp_qty: float


class BacktestVenue:
    """One simulated account (see the module docstring)."""

    def __init__(self, fill_model: FillModel, wallet: float, filters: dict[str, SymbolFilters], *,
                 brackets: dict[str, tuple[Bracket, ...]] | None = None,
                 funding_source: Callable[[str, int], float | None] | None = None,
                 funding_rate: float | None = 0.0001, funding_interval_ms: int = 8 * 3_600_000) -> None:
        self.book = PaperBook(model=fill_model, wallet=wallet, brackets=brackets, funding_rate=funding_rate,
                              funding_interval_ms=funding_interval_ms, rates=funding_source)
        self.filters = dict(filters)
        self.funding_source = funding_source
        self.fills: list[Fill] = []
        self.cash_events: list[tuple[int, float]] = []  # (time, wallet change)
        self.funding_payments: list[tuple[str, int, float]] = []  # (symbol, time, paid)
        self._ids = itertools.count(1)
        self._shown: dict[str, ProtectedPosition | None] = {}  # symbol → position() until it changes

    # --- account -----------------------------------------------------------------------------
    @property
    def wallet(self) -> float:
        return self.book.wallet

    def equity(self) -> float:
        return self.book.wallet + self.book.unrealized()

    def available(self) -> float:
        return self.book.wallet - self.book.used_margin() + min(self.book.unrealized(), 0.0)

    def last_price(self, symbol: str) -> float:
        price = self.book.symbols[symbol].last_price
        assert price is not None
        return price

    def brackets_for(self, symbol: str) -> tuple[Bracket, ...]:
        return self.book.brackets.get(symbol, DEFAULT_BRACKETS)

    def set_leverage(self, symbol: str, leverage: int) -> None:
        self.book.set_leverage(symbol, leverage)

    def floor_qty(self, symbol: str, qty: float) -> float:
        return floor_to_step(qty, self.filters[symbol].step_size)

    @property
    def positions(self) -> dict[str, ProtectedPosition]:
        """Every open position (symbol → position)."""
        return {s: p for s in self.book.positions if (p := self.position(s)) is not None}

    def holds(self, symbol: str) -> bool:
        return symbol in self.book.positions

    def held(self) -> list[str]:
        return list(self.book.positions)

    def position(self, symbol: str) -> ProtectedPosition | None:
        if symbol in self._shown:
            return self._shown[symbol]
        shown = self._shown[symbol] = self._position(symbol)
        return shown

    def _position(self, symbol: str) -> ProtectedPosition | None:
        p = self.book.positions.get(symbol)
        if p is None:
            return None
        stop = tp = None
        for o in self.book.open_orders.get(symbol, {}).values():
            if o.type == "stop_market":
                stop = o
            elif o.type == "take_profit_market":
                tp = o
        return ProtectedPosition(symbol, p.side, p.quantity, p.entry_price, p.liquidation_price or 0.0,
                             None if stop is None else stop.stop_price, 0.0 if stop is None else stop.quantity,
                             None if tp is None else tp.stop_price, 0.0 if tp is None else tp.quantity)

    # --- market data -------------------------------------------------------------------------
    def on_price(self, symbol: str, price: float, time_ms: int) -> None:
        """The price at `time_ms`: funding due up to it is settled first (on what is held)."""
        paid = len(self.book.funding)
        self.book.on_price(symbol, price, time_ms)
        if len(self.book.funding) != paid:
            self._record()

    def funded_until(self, symbol: str, time_ms: int) -> None:
        """Funding is settled up to `time_ms` (a position's bars are shown from its next one)."""
        marks = self.book.symbols.get(symbol)
        if marks is not None:
            marks.funded_until_ms = max(marks.funded_until_ms or 0, time_ms)

    def settled_until(self, symbol: str) -> int | None:
        """The last instant whose funding the venue has settled for `symbol` (None: unknown)."""
        marks = self.book.symbols.get(symbol)
        return None if marks is None else marks.funded_until_ms

    def on_bar(self, symbol: str, open_ms: int, o: float, h: float, lo: float, c: float,
               tf_ms: int) -> list[tuple[Fill, str]]:
        """Funding due by the bar's open, then the triggers on its range; returns (fill, kind)."""
        self._shown.pop(symbol, None)
        self.book.on_bar(symbol, Candle(open_ms, o, h, lo, c, 0.0), open_ms + tf_ms)
        return [(self._fill(t, t.reason or "", True), t.reason or "") for t in self._record()]

    # --- orders ------------------------------------------------------------------------------
    def market(self, symbol: str, order_side: str, quantity: float, *, reduce_only: bool, time_ms: int,
               reason: str) -> Fill | None:
        """A market order at the last price; None when the venue refuses it (margin, minimums)."""
        held = self.holds(symbol)
        self._shown.pop(symbol, None)
        req = OrderRequest(f"bt-{next(self._ids)}", symbol, order_side, "market", self.floor_qty(symbol, quantity),
                           None, reduce_only)
        try:
            self.book.create_order(req, self.filters[symbol], time_ms)
        except OrderRejected:
            return None
        return self._fill(self._record()[-1], reason, held)

    def place_stop(self, symbol: str, stop_price: float, quantity: float) -> bool:
        """The reduce-only stop at `stop_price` (rounded to the tick) for `quantity`, in place of
        the one before. False when the venue refuses it (the price is already through it)."""
        return self._replace(symbol, "stop_market", stop_price, quantity)

    def place_take_profit(self, symbol: str, price: float, quantity: float) -> bool:
        return self._replace(symbol, "take_profit_market", price, quantity)

    def _replace(self, symbol: str, kind: str, price: float, quantity: float) -> bool:
        pos = self.book.positions.get(symbol)
        if pos is None:
            return False
        self._shown.pop(symbol, None)
        filters = self.filters[symbol]
        stop_price = round_to_tick(price, filters.tick_size)
        quantity = self.floor_qty(symbol, quantity)
        old = next((o for o in self.book.open_orders.get(symbol, {}).values() if o.type == kind), None)
        try:
            if old is not None:  # new one placed, old one cancelled: here one order moved (no history kept)
                self.book.amend_trigger(old, stop_price, quantity, filters)
            else:
                side = "sell" if pos.side is Side.LONG else "buy"
                self.book.create_order(OrderRequest(f"bt-{next(self._ids)}", symbol, side, kind, quantity, stop_price,
                                                    True), filters, None)
        except OrderRejected:
            return False
        return True

    # --- records -----------------------------------------------------------------------------
    def _record(self) -> list[BookTrade]:
        """The trades and funding of the last operation, into the cash and funding records."""
        trades, funding = self.book.events()
        for f in funding:
            self.funding_payments.append((f.symbol, f.time_ms, f.amount))
            self.cash_events.append((f.time_ms, -f.amount))
        for t in trades:
            self.cash_events.append((t.time_ms, t.realized_pnl - t.fee))
        return trades

    def _fill(self, f: BookTrade, reason: str, reduce_only: bool) -> Fill:
        fill = Fill(symbol=f.symbol, order_side=f.side, quantity=f.quantity, price=f.price, fee=f.fee,
                    time_ms=f.time_ms, client_order_id="", reduce_only=reduce_only, reason=reason)
        self.fills.append(fill)
        return fill
