"""The paper venue's books in memory: one account's wallet, symbols, positions, orders, trades and
funding, and every state transition of the simulated venue — synchronous, no I/O.

`PaperExchange` (quorum.execution.paper) wraps a `PaperBook` for the engine and persists what
changed (`PaperBook.changes()`, written by `quorum.store.paper`). The book's rules are the
venue's rules, with the shared `FillModel` and the shared venue rules (`venue_rules`):

- a market order fills at once at the last price plus slippage, taker fee; isolated margin
  (notional / the symbol's leverage) plus the fee must fit in wallet − used margin;
- reduce-only STOP_MARKET / TAKE_PROFIT_MARKET orders trigger inside `on_bar` (the bar stands in
  for the mark price; the stop nearest the price first); a liquidation closes the position at
  the liquidation price with the taker fee; a trigger on a bar fills at the bar's open time;
- when a position closes its remaining reduce-only orders expire.

Funding at the instant: a position pays (or receives) the funding of time T iff it is open at
T, on the quantity held at T, at the price at T (mark × quantity × rate; the rate from `rates`,
else the fallback `funding_rate`). What the venue does at T — a market fill at T, a trigger on
the bar opening at T — happens just after T: an entry filled at T does not pay T's funding; a
close or reduce filled at T, or a stop / take-profit / liquidation on the bar opening at T, pays
it on the quantity held before the fill. The rule lives in `_settle`: whenever the book first
meets an instant T — the price at T (`on_price`), a market order at T (`create_order`), the bar
opening at T (`on_bar`, at its open) — the funding due up to and including T is settled before
anything else; `funded_until_ms` is the last instant settled (a flat symbol's follows its
price). The paper engine and the backtester drive this same book.

A failed operation (refused order, insufficient margin) changes nothing, except funding due by
its time, which is settled first (it was due anyway). Ids for new orders and trades come from
`ids` (the database's sequences for a persisted book, a counter otherwise).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

from quorum.domain.fills import FillModel, funding_times
from quorum.domain.models import Bracket, Candle, OrderState, Side, SymbolFilters
from quorum.domain.paper_rows import (
    MAX_TRIGGERS_PER_BAR,
    BookChanges,
    BookFunding,
    BookOrder,
    BookPosition,
    BookTrade,
    CallableFunding,
    FundingSource,
    Ids,
    SymbolMarks,
    funding_row,
)
from quorum.execution.exchange import (
    InsufficientMargin,
    OrderRejected,
    OrderRequest,
    UnknownSymbol,
    VenueOrder,
    VenuePosition,
    WouldTrigger,
)
from quorum.execution.paper_reads import PaperBookReads
from quorum.execution.venue_rules import DEFAULT_BRACKETS, EPS, bracket_for, isolated_liquidation_price

__all__ = ["BookChanges", "CallableFunding", "FundingSource", "Ids", "PaperBook", "SymbolMarks"]

OPEN_STATES = (OrderState.ACCEPTED, OrderState.PARTIALLY_FILLED)


class PaperBook(PaperBookReads):
    """One paper account in memory (see the module docstring)."""

    def __init__(self, *, model: FillModel, wallet: float, brackets: dict[str, tuple[Bracket, ...]] | None = None,
                 funding_rate: float | None = 0.0001, funding_interval_ms: int = 8 * 3_600_000,
                 ids: Ids | None = None, on_funding: Callable[[str], None] | None = None,
                 rates: Callable[[str, int], float | None] | None = None) -> None:
        self.model = model
        self.wallet = wallet
        self.brackets = dict(brackets or {})
        self.funding_rate = funding_rate
        self.rates = rates  # (symbol, funding time) -> the published rate, None if unknown
        self.funding_interval_ms = funding_interval_ms
        self.ids = ids or Ids(counting=True)
        self.on_funding = on_funding
        self.symbols: dict[str, SymbolMarks] = {}
        self.positions: dict[str, BookPosition] = {}
        self.orders: dict[str, BookOrder] = {}  # by client order id, in exchange-id order
        self.open_orders: dict[str, dict[str, BookOrder]] = {}  # symbol → cid → open order
        self.trades: dict[str, list[BookTrade]] = {}  # by symbol, in trade-id order
        self.funding: dict[tuple[str, int], BookFunding] = {}
        self._changes = BookChanges()
        self._dirty_symbols: set[str] = set()
        self._dirty_positions: set[str] = set()
        self._dirty_orders: set[str] = set()
        self._wallet_dirty = False
        self._views: dict[str, VenuePosition] = {}  # symbol → its position as last shown

    # --- loading (a persisted book) ---------------------------------------------------------
    def load(self, *, symbols: list[SymbolMarks], positions: list[BookPosition], orders: list[BookOrder],
             trades: list[BookTrade], funding: list[BookFunding]) -> None:
        self.symbols = {s.symbol: s for s in symbols}
        self.positions = {p.symbol: p for p in positions}
        self.orders = {o.client_order_id: o for o in sorted(orders, key=lambda o: o.exchange_order_id)}
        self.open_orders = {}
        for o in self.orders.values():
            if o.state in OPEN_STATES:
                self.open_orders.setdefault(o.symbol, {})[o.client_order_id] = o
        self.trades = {}
        for t in sorted(trades, key=lambda t: t.trade_id):
            self.trades.setdefault(t.symbol, []).append(t)
        self.funding = {(f.symbol, f.time_ms): f for f in funding}
        self._views = {}

    # --- what changed -----------------------------------------------------------------------
    def changes(self) -> BookChanges:
        """The rows changed since the last call (and forget them)."""
        out = self._changes
        out.wallet = self.wallet if self._wallet_dirty else None
        out.symbols = [replace(self.symbols[s]) for s in sorted(self._dirty_symbols)]
        out.positions = [replace(self.positions[s]) for s in sorted(self._dirty_positions) if s in self.positions]
        out.closed_positions = sorted(s for s in self._dirty_positions if s not in self.positions)
        out.orders = [replace(self.orders[c]) for c in self._dirty_orders]
        self._changes = BookChanges()
        self._dirty_symbols, self._dirty_positions, self._dirty_orders = set(), set(), set()
        self._wallet_dirty = False
        return out

    def events(self) -> tuple[list[BookTrade], list[BookFunding]]:
        """The trades and funding payments since the last call, and nothing else (a book nobody
        persists: no rows are copied for a store)."""
        c = self._changes
        trades, funding = c.trades, c.funding
        c.trades, c.funding = [], []
        self._dirty_symbols, self._dirty_positions, self._dirty_orders = set(), set(), set()
        self._wallet_dirty = False
        return trades, funding

    @property
    def marks_only(self) -> bool:
        """Nothing but progress marks changed since the last `changes()`."""
        c = self._changes
        return not (self._wallet_dirty or self._dirty_positions or self._dirty_orders or c.trades or c.funding)

    @property
    def dirty(self) -> bool:
        return bool(self._dirty_symbols) or not self.marks_only

    def _marks(self, symbol: str) -> SymbolMarks:
        self._dirty_symbols.add(symbol)
        if self._views:
            self._views.pop(symbol, None)
        m = self.symbols.get(symbol)
        if m is None:
            m = self.symbols[symbol] = SymbolMarks(symbol)
        return m

    # --- market data ------------------------------------------------------------------------
    def on_price(self, symbol: str, price: float, time_ms: int) -> None:
        """The price at `time_ms`; market orders fill from it. Funding due up to `time_ms` is
        settled first (on a position: at this price). While the symbol is flat its progress marks
        move with the price (seen and funding settled up to `time_ms`)."""
        if price <= 0:
            raise ValueError(f"{symbol}: price must be > 0")
        if symbol in self.positions:
            self._settle(symbol, time_ms, price)
        known = symbol in self.symbols
        m = self._marks(symbol)
        m.last_price, m.last_time_ms = price, time_ms
        if not known:
            m.funded_until_ms = m.bar_until_ms = time_ms
        elif symbol not in self.positions:  # (no max(): the simulator calls this for every decision)
            if m.bar_until_ms is None or m.bar_until_ms < time_ms:
                m.bar_until_ms = time_ms
            if m.funded_until_ms is None or m.funded_until_ms < time_ms:
                m.funded_until_ms = time_ms

    def on_bar(self, symbol: str, bar: Candle, close_ms: int) -> list[BookTrade]:
        """Process one closed bar (ending at `close_ms`): funding due by its open, then stops,
        take-profits and liquidation on its range; its close becomes the last price. A bar
        already processed is ignored."""
        if self.seen(symbol, close_ms):
            return []
        m = self.symbols.get(symbol)
        if m is None:
            m = self._marks(symbol)
            m.last_price, m.last_time_ms, m.funded_until_ms = bar.open, bar.open_ms, bar.open_ms
        self._settle(symbol, bar.open_ms, bar.open)
        fills: list[BookTrade] = []
        for _ in range(MAX_TRIGGERS_PER_BAR):
            fill = self._trigger(symbol, bar)
            if fill is None:
                break
            fills.append(fill)
        m = self._marks(symbol)
        m.last_price, m.last_time_ms, m.bar_until_ms = bar.close, close_ms, close_ms
        return fills

    def _settle(self, symbol: str, t: int, mark: float) -> None:
        """Funding up to and including instant `t`, on the position held now (before anything
        happens at `t`), at `mark`; then funding is settled up to `t` (the module docstring)."""
        m = self.symbols.get(symbol)
        done = None if m is None else m.funded_until_ms
        if done is not None and done >= t:
            return
        pos = self.positions.get(symbol)
        if pos is not None and done is not None:
            for ft in funding_times(done, t, self.funding_interval_ms):
                paid = None if (symbol, ft) in self.funding else funding_row(
                    pos, ft, mark, None if self.rates is None else self.rates(symbol, ft), self.funding_rate)
                if paid is not None:
                    row, source = paid
                    self.funding[(symbol, ft)] = row
                    self._changes.funding.append(row)
                    self._set_wallet(self.wallet - row.amount)
                    if self.on_funding is not None:
                        self.on_funding(source)
        self._marks(symbol).funded_until_ms = t

    def _trigger(self, symbol: str, bar: Candle) -> BookTrade | None:
        pos = self.positions.get(symbol)
        if pos is None:
            return None
        side = pos.side
        sign = side.sign
        # the stop nearest the price triggers first (highest for a long), the nearest TP likewise;
        # of equal ones the oldest (open orders are kept in the order they were placed)
        stop: BookOrder | None = None
        tp: BookOrder | None = None
        for o in self.open_orders.get(symbol, {}).values():
            if o.state is not OrderState.ACCEPTED:
                continue
            if o.type == "stop_market":
                if stop is None or (o.stop_price or 0.0) * sign > (stop.stop_price or 0.0) * sign:
                    stop = o
            elif o.type == "take_profit_market" and (
                    tp is None or (o.stop_price or 0.0) * sign < (tp.stop_price or 0.0) * sign):
                tp = o
        ex = self.model.bar_exit(side, bar.open, bar.high, bar.low,
                                 stop_price=None if stop is None else stop.stop_price,
                                 take_profit=None if tp is None else tp.stop_price,
                                 liquidation_price=pos.liquidation_price)
        if ex is None:
            return None
        order = {"stop": stop, "take_profit": tp}.get(ex.kind.value)
        fill_qty = pos.quantity if order is None else min(pos.quantity, order.quantity)
        price, fee = self.model.exit_fill(side, ex, fill_qty)
        if order is None:  # liquidation: the venue's own market order
            order = self._new_order(OrderRequest(f"liquidation-{bar.open_ms}", symbol,
                                                 "sell" if side is Side.LONG else "buy", "market", fill_qty, None,
                                                 True), bar.open_ms)
            self._add_order(order)
        return self._fill(order, fill_qty, price, fee, bar.open_ms, reason=ex.kind.value)

    # --- orders -----------------------------------------------------------------------------
    def _new_order(self, req: OrderRequest, t: int) -> BookOrder:
        return BookOrder(req.client_order_id, self.ids.order(), req.symbol, req.order_side, req.type,
                         req.reduce_only, req.quantity, req.stop_price, OrderState.ACCEPTED, t)

    def _add_order(self, order: BookOrder) -> None:
        self.orders[order.client_order_id] = order
        self.open_orders.setdefault(order.symbol, {})[order.client_order_id] = order
        self._dirty_orders.add(order.client_order_id)

    def _end_order(self, order: BookOrder, state: OrderState, t: int | None) -> None:
        order.state, order.closed_ms = state, t
        self.open_orders.get(order.symbol, {}).pop(order.client_order_id, None)
        self._dirty_orders.add(order.client_order_id)

    def create_order(self, req: OrderRequest, filters: SymbolFilters, now_ms: int | None) -> BookOrder:
        """Accept (and for a market order, fill) `req`; raises the venue's refusal otherwise."""
        if req.client_order_id in self.orders:
            raise OrderRejected(f"client order id {req.client_order_id} is duplicated", code="-4116")
        m = self.symbols.get(req.symbol)
        if m is None or m.last_price is None:
            raise UnknownSymbol(f"{req.symbol}: no price yet on the paper venue")
        price = m.last_price
        t = int(now_ms if now_ms is not None else (m.last_time_ms or 0))
        if not req.conditional:
            self._settle(req.symbol, t, price)  # a fill at t comes after t's funding
        if req.quantity < filters.min_qty - EPS:
            raise OrderRejected(f"quantity {req.quantity} below min {filters.min_qty}", code="-4003")
        pos = self.positions.get(req.symbol)
        if req.conditional:
            self._check_trigger(req.symbol, req.type, float(req.stop_price or 0))
            order = self._new_order(req, t)
            self._add_order(order)
            return order
        if req.reduce_only and (pos is None or (req.order_side == "buy") == (pos.side is Side.LONG)):
            raise OrderRejected("reduce-only order rejected: it would not reduce the position", code="-2022")
        qty = min(req.quantity, pos.quantity) if req.reduce_only and pos is not None else req.quantity
        notional = qty * price
        if not req.reduce_only and notional < filters.min_notional - EPS:
            raise OrderRejected(f"order's notional {notional:.4f} must be no smaller than {filters.min_notional}",
                                code="-4164")
        fill_price = self.model.market_price(req.order_side, price, notional)
        fee = self.model.fee(qty * fill_price)
        order = self._new_order(req, t)
        self._check_margin(order, qty, fill_price, fee)  # before anything changes
        self._add_order(order)
        self._fill(order, qty, fill_price, fee, t)
        return order

    def _check_trigger(self, symbol: str, kind: str, stop_price: float) -> None:
        """A reduce-only STOP_MARKET / TAKE_PROFIT_MARKET needs a position and a trigger price
        the mark has not passed yet."""
        pos = self.positions.get(symbol)
        if pos is None:
            raise OrderRejected("reduce-only order rejected: no position", code="-2022")
        price = self.symbols[symbol].last_price or 0.0
        gap = (price - stop_price) * pos.side.sign
        if (gap <= 0) if kind == "stop_market" else (gap >= 0):
            raise WouldTrigger(f"order would immediately trigger ({kind} {stop_price} vs mark {price})", code="-2021")

    def amend_trigger(self, order: BookOrder, stop_price: float, quantity: float, filters: SymbolFilters) -> None:
        """Move an open STOP_MARKET / TAKE_PROFIT_MARKET to `stop_price` for `quantity`, checked as
        a new order would be — in place, for a book without an order history (the backtest's);
        the paper venue places a new order and cancels the old one."""
        if quantity < filters.min_qty - EPS:
            raise OrderRejected(f"quantity {quantity} below min {filters.min_qty}", code="-4003")
        self._check_trigger(order.symbol, order.type, stop_price)
        order.stop_price, order.quantity = stop_price, quantity
        self._views.pop(order.symbol, None)

    def cancel_order(self, client_order_id: str) -> VenueOrder | None:
        order = self.orders.get(client_order_id)
        if order is None:
            return None
        if order.state is OrderState.ACCEPTED:
            m = self.symbols.get(order.symbol)
            self._end_order(order, OrderState.CANCELLED, None if m is None else m.last_time_ms)
        return order.view()

    def set_leverage(self, symbol: str, leverage: int) -> None:
        self._marks(symbol).leverage = leverage

    # --- fills ------------------------------------------------------------------------------
    def _opens(self, order: BookOrder) -> bool:
        pos = self.positions.get(order.symbol)
        return pos is None or (pos.side is Side.LONG) == (order.side == "buy")

    def _check_margin(self, order: BookOrder, qty: float, price: float, fee: float) -> None:
        if not self._opens(order):
            return
        m = self.symbols.get(order.symbol)
        margin = qty * price / (m.leverage if m else 20)
        if self.wallet - self.used_margin() < margin + fee:
            raise InsufficientMargin("Margin is insufficient.", code="-2019")

    def _fill(self, order: BookOrder, qty: float, price: float, fee: float, t: int,
              reason: str | None = None) -> BookTrade:
        """Execute `qty` of `order` at `price`: position, margin, wallet, trade, order state."""
        symbol = order.symbol
        pos = self.positions.get(symbol)
        m = self.symbols.get(symbol)
        leverage = m.leverage if m else 20
        realized, wallet_delta = 0.0, -fee
        self._dirty_positions.add(symbol)
        self._views.pop(symbol, None)
        if self._opens(order):
            side = Side.LONG if order.side == "buy" else Side.SHORT
            margin = qty * price / leverage
            if pos is None:
                new_qty, entry, new_margin = qty, price, margin
            else:
                old = pos.quantity
                new_qty = old + qty
                entry = (pos.entry_price * old + price * qty) / new_qty
                new_margin, leverage, side = pos.isolated_margin + margin, pos.leverage, pos.side
            b = bracket_for(new_qty * entry, self.brackets.get(symbol, DEFAULT_BRACKETS))
            liq = isolated_liquidation_price(side, new_qty, entry, new_margin, b.maint_margin_rate, b.maint_amount)
            self.positions[symbol] = BookPosition(symbol, side, new_qty, entry, leverage, new_margin, liq)
        else:  # reduce (never flips: callers open after a close)
            assert pos is not None
            old = pos.quantity
            qty = min(qty, old)
            realized = (price - pos.entry_price) * qty * pos.side.sign
            wallet_delta += realized
            released = pos.isolated_margin * qty / old
            if old - qty <= EPS:
                del self.positions[symbol]
                for other in list(self.open_orders.get(symbol, {}).values()):
                    if other.reduce_only and other.state is OrderState.ACCEPTED \
                            and other.client_order_id != order.client_order_id:
                        self._end_order(other, OrderState.EXPIRED, t)
            else:
                rest, margin = old - qty, pos.isolated_margin - released
                b = bracket_for(rest * pos.entry_price, self.brackets.get(symbol, DEFAULT_BRACKETS))
                pos.quantity, pos.isolated_margin = rest, margin
                pos.liquidation_price = isolated_liquidation_price(pos.side, rest, pos.entry_price, margin,
                                                                   b.maint_margin_rate, b.maint_amount)
        self._set_wallet(self.wallet + wallet_delta)
        trade = BookTrade(self.ids.trade(), order.client_order_id, symbol, order.side, qty, price, fee, realized,
                          reason, t)
        self.trades.setdefault(symbol, []).append(trade)
        self._changes.trades.append(trade)
        filled = order.filled_quantity + qty
        order.average_price = price if not order.average_price else (
            (order.average_price * order.filled_quantity + price * qty) / filled)
        order.filled_quantity = filled
        self._end_order(order, OrderState.FILLED, t)  # a reduce-only order capped at the position is complete
        return trade

    def _set_wallet(self, value: float) -> None:
        self.wallet = value
        self._wallet_dirty = True
