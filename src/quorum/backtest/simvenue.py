"""In-memory twin of the paper venue + executor, for the fast backtester.

It does what `quorum.execution.paper.PaperExchange` and `quorum.execution.protection.Executor`
do for the engine in paper mode — with the SAME pure functions (`FillModel`, the paper venue's
liquidation formula and brackets, the order manager's step/tick rounding) — but without
Postgres, so a year of bars runs in about a second. The parity test holds the two to identical
fills (time, price, quantity, fee).

Conventions copied from the paper venue: market orders fill at the venue's last price (bar k+1's
open at decision time T) with slippage and the taker fee, stamped T; triggered stops /
take-profits / liquidations fill inside `on_bar` stamped with the bar's OPEN time; funding for
every funding time up to the bar's open is charged at the bar's open price; isolated margin
notional / leverage, wallet − used margin must cover margin + fee.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from quorum.domain.fills import BarExit, ExitKind, FillModel, close_order_side, open_order_side
from quorum.domain.models import Bracket, Fill, PositionState, Side, SymbolFilters
from quorum.domain.sizing import floor_to_step, round_to_tick
from quorum.execution.paper import DEFAULT_BRACKETS, bracket_for, isolated_liquidation_price

EPS = 1e-12


@dataclass
class VenuePos:
    symbol: str
    side: Side
    quantity: float
    entry_price: float
    margin: float
    leverage: int
    liquidation_price: float
    stop_price: float | None = None  # the reduce-only STOP_MARKET on the venue (rounded)
    stop_qty: float = 0.0
    tp_price: float | None = None  # the TAKE_PROFIT_MARKET (rounded), full initial size
    tp_qty: float = 0.0


@dataclass
class SimVenue:
    """One paper account: wallet, positions with their venue orders, fills, funding."""

    fill_model: FillModel
    wallet: float
    filters: dict[str, SymbolFilters]
    brackets: dict[str, tuple[Bracket, ...]] = field(default_factory=dict)
    funding_source: Callable[[str, int], float | None] | None = None
    funding_rate: float | None = 0.0001
    funding_interval_ms: int = 8 * 3_600_000
    positions: dict[str, VenuePos] = field(default_factory=dict)
    last_price: dict[str, float] = field(default_factory=dict)
    last_time: dict[str, int] = field(default_factory=dict)
    funded_until: dict[str, int] = field(default_factory=dict)
    leverage: dict[str, int] = field(default_factory=dict)
    fills: list[Fill] = field(default_factory=list)
    cash_events: list[tuple[int, float]] = field(default_factory=list)  # (time, wallet change)
    funding_payments: list[tuple[str, int, float]] = field(default_factory=list)  # (symbol, time, paid)

    # --- account -------------------------------------------------------------------------
    def used_margin(self) -> float:
        return sum(p.margin for p in self.positions.values())

    def unrealized(self) -> float:
        return sum((self.last_price[p.symbol] - p.entry_price) * p.quantity * p.side.sign
                   for p in self.positions.values())

    def equity(self) -> float:
        return self.wallet + self.unrealized()

    def available(self) -> float:
        return self.wallet - self.used_margin() + min(self.unrealized(), 0.0)

    def brackets_for(self, symbol: str) -> tuple[Bracket, ...]:
        return self.brackets.get(symbol, DEFAULT_BRACKETS)

    def _wallet(self, t: int, delta: float) -> None:
        self.wallet += delta
        self.cash_events.append((t, delta))

    # --- market data ---------------------------------------------------------------------
    def on_price(self, symbol: str, price: float, time_ms: int) -> None:
        self.last_price[symbol] = price
        self.last_time[symbol] = time_ms
        self.funded_until.setdefault(symbol, time_ms)

    def funding_due(self, symbol: str, bar_open_ms: int) -> list[int]:
        start = self.funded_until.get(symbol, bar_open_ms)
        iv = self.funding_interval_ms
        first = (start // iv + 1) * iv
        return list(range(first, bar_open_ms + 1, iv))

    def on_bar(self, symbol: str, open_ms: int, o: float, h: float, lo: float, c: float,
               tf_ms: int) -> list[tuple[Fill, str]]:
        """Funding due by the bar's open, then the triggers on its range; returns (fill, kind)."""
        if symbol not in self.funded_until:
            self.funded_until[symbol] = open_ms
        out: list[tuple[Fill, str]] = []
        for t in self.funding_due(symbol, open_ms):
            self._apply_funding(symbol, t, o)
        for _ in range(4):
            got = self._trigger(symbol, open_ms, o, h, lo)
            if got is None:
                break
            out.append(got)
        self.last_price[symbol] = c
        self.last_time[symbol] = open_ms + tf_ms
        self.funded_until[symbol] = max(self.funded_until[symbol], open_ms)
        return out

    def _apply_funding(self, symbol: str, t: int, mark: float) -> None:
        pos = self.positions.get(symbol)
        if pos is None:
            return
        rate = self.funding_source(symbol, t) if self.funding_source else None
        if rate is None:
            rate = self.funding_rate
        if rate is None:
            return
        amount = self.fill_model.funding_payment(pos.side, pos.quantity, mark, rate)
        self.funding_payments.append((symbol, t, amount))
        self._wallet(t, -amount)

    def _trigger(self, symbol: str, open_ms: int, o: float, h: float, lo: float) -> tuple[Fill, str] | None:
        pos = self.positions.get(symbol)
        if pos is None:
            return None
        ex = self.fill_model.bar_exit(pos.side, o, h, lo, stop_price=pos.stop_price, take_profit=pos.tp_price,
                                      liquidation_price=pos.liquidation_price)
        if ex is None:
            return None
        if ex.kind is ExitKind.STOP:
            qty = min(pos.quantity, pos.stop_qty)
        elif ex.kind is ExitKind.TAKE_PROFIT:
            qty = min(pos.quantity, pos.tp_qty)
        else:
            qty = pos.quantity
        price, fee = self.fill_model.exit_fill(pos.side, ex, qty)
        return self._fill(symbol, close_order_side(pos.side), qty, price, fee, open_ms, ex.kind.value), ex.kind.value

    # --- orders --------------------------------------------------------------------------
    def market(self, symbol: str, order_side: str, quantity: float, *, reduce_only: bool, time_ms: int,
               reason: str) -> Fill | None:
        """A market order at the last price; None when the venue refuses it (margin, minimums)."""
        f = self.filters[symbol]
        price = self.last_price[symbol]
        pos = self.positions.get(symbol)
        qty = quantity
        if qty < f.min_qty - EPS:
            return None
        if reduce_only:
            if pos is None or (order_side == "buy") == (pos.side is Side.LONG):
                return None
            qty = min(qty, pos.quantity)
        notional = qty * price
        if not reduce_only and notional < f.min_notional - EPS:
            return None
        fill_price = self.fill_model.market_price(order_side, price, notional)
        fee = self.fill_model.fee(qty * fill_price)
        if pos is None and not reduce_only:
            lev = self.leverage.get(symbol, 20)
            margin = qty * fill_price / lev
            if self.wallet - self.used_margin() < margin + fee:
                return None
        return self._fill(symbol, order_side, qty, fill_price, fee, time_ms, reason)

    def _fill(self, symbol: str, order_side: str, qty: float, price: float, fee: float, t: int,
              reason: str) -> Fill:
        pos = self.positions.get(symbol)
        buy = order_side == "buy"
        delta = -fee
        if pos is None:
            side = Side.LONG if buy else Side.SHORT
            lev = self.leverage.get(symbol, 20)
            margin = qty * price / lev
            b = bracket_for(qty * price, self.brackets_for(symbol))
            liq = isolated_liquidation_price(side, qty, price, margin, b.maint_margin_rate, b.maint_amount)
            self.positions[symbol] = VenuePos(symbol, side, qty, price, margin, lev, liq)
        else:
            old = pos.quantity
            qty = min(qty, old)
            realized = (price - pos.entry_price) * qty * pos.side.sign
            delta += realized
            released = pos.margin * qty / old
            if old - qty <= EPS:
                del self.positions[symbol]
            else:
                pos.quantity = old - qty
                pos.margin -= released
                b = bracket_for(pos.quantity * pos.entry_price, self.brackets_for(symbol))
                pos.liquidation_price = isolated_liquidation_price(
                    pos.side, pos.quantity, pos.entry_price, pos.margin, b.maint_margin_rate, b.maint_amount)
        self._wallet(t, delta)
        fill = Fill(symbol=symbol, order_side=order_side, quantity=qty, price=price, fee=fee, time_ms=t,
                    client_order_id="", reduce_only=pos is not None, reason=reason)
        self.fills.append(fill)
        return fill

    def place_stop(self, symbol: str, stop_price: float, quantity: float) -> bool:
        """Reduce-only stop for `quantity` at `stop_price` (rounded to the tick). False when the
        venue refuses it because it would trigger at once (the caller closes at market)."""
        pos = self.positions.get(symbol)
        if pos is None:
            return False
        sp = round_to_tick(stop_price, self.filters[symbol].tick_size)
        if (self.last_price[symbol] - sp) * pos.side.sign <= 0:
            return False
        pos.stop_price, pos.stop_qty = sp, quantity
        return True

    def place_take_profit(self, symbol: str, price: float, quantity: float) -> bool:
        pos = self.positions.get(symbol)
        if pos is None:
            return False
        tp = round_to_tick(price, self.filters[symbol].tick_size)
        if (tp - self.last_price[symbol]) * pos.side.sign <= 0:
            return False
        pos.tp_price, pos.tp_qty = tp, quantity
        return True

    def floor_qty(self, symbol: str, qty: float) -> float:
        return floor_to_step(qty, self.filters[symbol].step_size)


def venue_more_sensitive(state: PositionState, vp: VenuePos) -> bool:
    """Could the venue's (tick-rounded) stop / take-profit / liquidation trigger on a bar where
    the state's own levels do not? If not, `first_event_index` alone finds every event."""
    s = state.side.sign
    if vp.stop_price is not None and s * (vp.stop_price - state.stop_price) > 0:
        return True
    if vp.tp_price is not None and (state.take_profit is None or s * (state.take_profit - vp.tp_price) > 0):
        return True
    liq = vp.liquidation_price
    return bool(liq and liq > 0 and s * (liq - state.stop_price) > 0)


def open_side(side: Side) -> str:
    return open_order_side(side)


__all__ = ["BarExit", "SimVenue", "VenuePos", "open_side"]
