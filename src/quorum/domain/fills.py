"""The fill model shared by the paper exchange and the backtester (pure, no I/O).

Conventions
- `order_side` is "buy" or "sell"; `position_side` is a `Side` (LONG/SHORT).
- Prices are floats, fees and funding are USDT, positive = paid by us.
- Slippage of a market order = half the spread + an impact that grows with its notional:
  ``slip_bps = spread_bps / 2 + impact_bps_per_100k * notional / 100_000``; a buy pays
  ``reference * (1 + slip)``, a sell receives ``reference * (1 - slip)``.
- Stops and take-profits are evaluated on one bar (open, high, low). A stop whose bar OPENS
  beyond it (a gap) fills at the bar's open — the worse price — otherwise at the stop price.
  A take-profit that gaps fills at the open (the better price: the venue sends a market order
  the moment the trigger is crossed). Triggered stop/TP orders are market orders: the caller
  applies `market_price` (slippage) to the reference price these functions return —
  `exit_fill` does both.
- Within one bar, when both the stop and the take-profit are touched and neither is at the
  open, the stop is assumed to come first (pessimistic). A liquidation happens only when the
  liquidation price is reached before the stop (no stop, or the bar gaps through both).
- Funding: payment = mark × |quantity| × rate; a positive rate means longs pay shorts. A
  position pays funding time T iff it is open at T; a fill at T comes just after T (an entry at
  T does not pay, a close at T does): the venue's `PaperBook` settles `funding_times(settled, T)`
  before anything happens at T.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from quorum.domain.models import Side


class Liquidity(StrEnum):
    TAKER = "taker"
    MAKER = "maker"


class ExitKind(StrEnum):
    STOP = "stop"
    TAKE_PROFIT = "take_profit"
    LIQUIDATION = "liquidation"


@dataclass(frozen=True, slots=True)
class BarExit:
    """What closes a position on one bar, and the reference price (before slippage)."""

    kind: ExitKind
    reference_price: float
    gapped: bool


def close_order_side(position_side: Side) -> str:
    """The order side that reduces a position ("sell" closes a long)."""
    return "sell" if position_side is Side.LONG else "buy"


def open_order_side(position_side: Side) -> str:
    """The order side that opens (or adds to) a position."""
    return "buy" if position_side is Side.LONG else "sell"


@dataclass(frozen=True, slots=True)
class FillModel:
    """Fees, slippage, stop/TP/liquidation triggers and funding.

    Rates are fractions (0.0005 = 0.05 %). Build from the settings' percentages with
    `FillModel.from_pct(taker_fee_pct, maker_fee_pct, spread_bps, impact_bps_per_100k)`.
    """

    taker_fee_rate: float = 0.0005
    maker_fee_rate: float = 0.0002
    spread_bps: float = 1.0
    impact_bps_per_100k: float = 2.0

    def __post_init__(self) -> None:
        if self.taker_fee_rate < 0 or self.spread_bps < 0 or self.impact_bps_per_100k < 0:
            raise ValueError("fee rate, spread and impact must be >= 0")

    @classmethod
    def from_pct(
        cls, taker_fee_pct: float, maker_fee_pct: float, spread_bps: float, impact_bps_per_100k: float
    ) -> FillModel:
        """From TAKER_FEE_PCT / MAKER_FEE_PCT (percent) and the slippage settings (bps)."""
        return cls(taker_fee_pct / 100.0, maker_fee_pct / 100.0, spread_bps, impact_bps_per_100k)

    # --- prices and fees -------------------------------------------------------------------
    def slippage_fraction(self, notional: float) -> float:
        """Half the spread plus the size-dependent impact, as a fraction of the price."""
        bps = self.spread_bps / 2.0 + self.impact_bps_per_100k * abs(notional) / 100_000.0
        return bps / 10_000.0

    def market_price(self, order_side: str, reference_price: float, notional: float) -> float:
        """The average fill price of a market order of `notional` USDT at `reference_price`."""
        if reference_price <= 0:
            raise ValueError(f"reference price must be > 0, got {reference_price}")
        slip = self.slippage_fraction(notional)
        if order_side == "buy":
            return reference_price * (1.0 + slip)
        if order_side == "sell":
            return reference_price * (1.0 - slip)
        raise ValueError(f"order side must be 'buy' or 'sell', got {order_side!r}")

    def fee(self, notional: float, liquidity: str = "taker") -> float:
        """Fee in USDT for a fill of `notional` (taker or maker rate)."""
        rate = self.maker_fee_rate if liquidity == Liquidity.MAKER else self.taker_fee_rate
        return abs(notional) * rate

    # --- triggers ----------------------------------------------------------------------------
    @staticmethod
    def stop_fill_price(
        position_side: Side, stop_price: float, bar_open: float, bar_high: float, bar_low: float
    ) -> float | None:
        """Reference fill price of a protective stop on this bar, or None if not triggered.

        A long's stop triggers when the low reaches it; a gap (open at or below the stop) fills
        at the open, the worse price. Mirror image for shorts.
        """
        if position_side is Side.LONG:
            if bar_open <= stop_price:
                return bar_open
            return stop_price if bar_low <= stop_price else None
        if bar_open >= stop_price:
            return bar_open
        return stop_price if bar_high >= stop_price else None

    @staticmethod
    def take_profit_fill_price(
        position_side: Side, tp_price: float, bar_open: float, bar_high: float, bar_low: float
    ) -> float | None:
        """Reference fill price of a take-profit on this bar (gap → the open), or None."""
        if position_side is Side.LONG:
            if bar_open >= tp_price:
                return bar_open
            return tp_price if bar_high >= tp_price else None
        if bar_open <= tp_price:
            return bar_open
        return tp_price if bar_low <= tp_price else None

    @staticmethod
    def liquidation_hit(position_side: Side, liquidation_price: float | None, bar_high: float,
                        bar_low: float) -> bool:
        """True when the bar reaches the liquidation price."""
        if liquidation_price is None or liquidation_price <= 0:
            return False
        if position_side is Side.LONG:
            return bar_low <= liquidation_price
        return bar_high >= liquidation_price

    def bar_exit(
        self,
        position_side: Side,
        bar_open: float,
        bar_high: float,
        bar_low: float,
        *,
        stop_price: float | None,
        take_profit: float | None = None,
        liquidation_price: float | None = None,
    ) -> BarExit | None:
        """The first thing that closes the position on this bar (see module docstring)."""
        s = position_side.sign
        liq_at_open = liquidation_price is not None and liquidation_price > 0 and (
            (bar_open - liquidation_price) * s <= 0
        )
        if stop_price is not None:
            stop_ref = self.stop_fill_price(position_side, stop_price, bar_open, bar_high, bar_low)
            if stop_ref is not None:
                gapped = stop_ref == bar_open and (bar_open - stop_price) * s <= 0
                if liq_at_open and liquidation_price is not None:
                    return BarExit(ExitKind.LIQUIDATION, liquidation_price, True)
                # The stop lies between the entry and the liquidation price when valid; if it
                # was placed beyond the liquidation price, liquidation comes first.
                if liquidation_price is not None and liquidation_price > 0 and (
                    (stop_price - liquidation_price) * s < 0
                ) and self.liquidation_hit(position_side, liquidation_price, bar_high, bar_low):
                    return BarExit(ExitKind.LIQUIDATION, liquidation_price, False)
                if take_profit is not None and not gapped:
                    tp_ref = self.take_profit_fill_price(position_side, take_profit, bar_open, bar_high, bar_low)
                    if tp_ref is not None and tp_ref == bar_open:
                        return BarExit(ExitKind.TAKE_PROFIT, tp_ref, True)
                return BarExit(ExitKind.STOP, stop_ref, gapped)
        if liquidation_price is not None and self.liquidation_hit(position_side, liquidation_price, bar_high, bar_low):
            return BarExit(ExitKind.LIQUIDATION, liquidation_price, liq_at_open)
        if take_profit is not None:
            tp_ref = self.take_profit_fill_price(position_side, take_profit, bar_open, bar_high, bar_low)
            if tp_ref is not None:
                return BarExit(ExitKind.TAKE_PROFIT, tp_ref, tp_ref == bar_open)
        return None

    def exit_fill(self, position_side: Side, exit_: BarExit, quantity: float) -> tuple[float, float]:
        """(fill price, fee) of a bar exit for `quantity`: stops and TPs are market orders
        (slippage + taker fee); a liquidation fills at the liquidation price with the taker fee."""
        if exit_.kind is ExitKind.LIQUIDATION:
            price = exit_.reference_price
        else:
            notional = abs(quantity) * exit_.reference_price
            price = self.market_price(close_order_side(position_side), exit_.reference_price, notional)
        return price, self.fee(abs(quantity) * price, Liquidity.TAKER)

    # --- funding and P&L -------------------------------------------------------------------
    @staticmethod
    def funding_payment(position_side: Side, quantity: float, mark_price: float, rate: float) -> float:
        """Funding this position pays (+) or receives (−): mark × |quantity| × rate, positive
        rate → longs pay, shorts receive."""
        amount = mark_price * abs(quantity) * rate
        return amount if position_side is Side.LONG else -amount


def gross_pnl(position_side: Side, quantity: float, entry_price: float, exit_price: float) -> float:
    """Price P&L of closing `quantity` (before fees and funding)."""
    return (exit_price - entry_price) * abs(quantity) * position_side.sign


def funding_times(after_ms: int, until_ms: int, interval_ms: int = 8 * 3_600_000) -> list[int]:
    """Funding timestamps t with after_ms < t <= until_ms on the UTC grid of `interval_ms`
    (Binance funds at 00:00, 08:00, 16:00 UTC for the usual 8 h interval)."""
    if interval_ms <= 0:
        raise ValueError("interval_ms must be > 0")
    first = (after_ms // interval_ms + 1) * interval_ms
    return list(range(first, until_ms + 1, interval_ms))
