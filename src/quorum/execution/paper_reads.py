"""What the paper venue's books say — orders, positions, fills, funding, balance, how far each
symbol was seen and settled — as the `Exchange` protocol's values: the read side of
`quorum.execution.paper_book.PaperBook` (a mixin; the views of positions are kept until their
symbol changes)."""

from __future__ import annotations

from quorum.domain.fills import funding_times
from quorum.domain.paper_rows import BookFunding, BookOrder, BookPosition, BookTrade, SymbolMarks
from quorum.domain.venue import Balance, FundingEntry, VenueFill, VenueOrder, VenuePosition


class PaperBookReads:
    """Mixin of `PaperBook`: the state it reads is PaperBook's."""

    wallet: float
    symbols: dict[str, SymbolMarks]
    positions: dict[str, BookPosition]
    orders: dict[str, BookOrder]
    open_orders: dict[str, dict[str, BookOrder]]
    trades: dict[str, list[BookTrade]]
    funding: dict[tuple[str, int], BookFunding]
    funding_interval_ms: int
    _views: dict[str, VenuePosition]

    def held(self) -> dict[str, int | None]:
        """Symbols with an open position → the close of the last bar processed for them."""
        out: dict[str, int | None] = {}
        for sym in sorted(self.positions):
            m = self.symbols.get(sym)
            out[sym] = None if m is None else (m.bar_until_ms if m.bar_until_ms is not None else m.last_time_ms)
        return out

    def seen(self, symbol: str, close_ms: int) -> bool:
        """The bar closing at `close_ms` was processed already."""
        m = self.symbols.get(symbol)
        return m is not None and m.bar_until_ms is not None and close_ms <= m.bar_until_ms

    def funding_due(self, symbol: str, until_ms: int) -> list[int]:
        """The funding times up to `until_ms` that the position on `symbol` has still to settle
        (none when flat): what a venue with published rates must know before it moves to
        `until_ms`."""
        m = self.symbols.get(symbol)
        if symbol not in self.positions or m is None or m.funded_until_ms is None:
            return []
        return funding_times(m.funded_until_ms, until_ms, self.funding_interval_ms)

    @staticmethod
    def fill_view(t: BookTrade, order: BookOrder | None) -> VenueFill:
        return VenueFill(str(t.trade_id), t.client_order_id, None if order is None else str(order.exchange_order_id),
                         t.symbol, t.side, t.quantity, t.price, t.fee, t.time_ms, t.liquidity, t.realized_pnl)

    def used_margin(self) -> float:
        return sum(p.isolated_margin for p in self.positions.values())

    def fetch_open_orders(self, symbol: str | None) -> list[VenueOrder]:
        groups = [self.open_orders.get(symbol, {})] if symbol is not None else list(self.open_orders.values())
        rows = sorted((o for g in groups for o in g.values()), key=lambda o: o.exchange_order_id)
        return [o.view() for o in rows]

    def fetch_positions(self) -> list[VenuePosition]:
        return [self._view(sym) for sym in sorted(self.positions)]

    def _view(self, sym: str) -> VenuePosition:
        view = self._views.get(sym)
        if view is None:
            p = self.positions[sym]
            m = self.symbols.get(sym)
            mark = m.last_price if m is not None and m.last_price is not None else p.entry_price
            view = self._views[sym] = VenuePosition(
                sym, p.side, p.quantity, p.entry_price, mark, p.liquidation_price, float(p.leverage), "isolated",
                (mark - p.entry_price) * p.quantity * p.side.sign, p.isolated_margin)
        return view

    def fetch_fills(self, symbol: str, since_ms: int | None) -> list[VenueFill]:
        return [self.fill_view(t, self.orders.get(t.client_order_id)) for t in self.trades.get(symbol, ())
                if since_ms is None or t.time_ms >= since_ms]

    def funding_history(self, symbol: str | None, since_ms: int | None) -> list[FundingEntry]:
        rows = sorted((f for f in self.funding.values() if (symbol is None or f.symbol == symbol)
                       and (since_ms is None or f.time_ms >= since_ms)), key=lambda f: (f.time_ms, f.symbol))
        return [FundingEntry(f.symbol, f.time_ms, f.amount, f.rate, f.mark_price, f.quantity) for f in rows]

    def unrealized(self) -> float:
        """Unrealised P&L of the open positions at the last prices (no views built)."""
        total = 0.0
        for sym, p in self.positions.items():
            m = self.symbols.get(sym)
            mark = m.last_price if m is not None and m.last_price is not None else p.entry_price
            total += (mark - p.entry_price) * p.quantity * p.side.sign
        return total

    def balance(self) -> Balance:
        positions = self.fetch_positions()
        used = sum(p.isolated_margin or 0.0 for p in positions)
        upnl = sum(p.unrealized_pnl for p in positions)
        return Balance(self.wallet, self.wallet - used + min(upnl, 0.0), upnl)
