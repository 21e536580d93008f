"""Binance USDⓈ-M one-way liquidation price and maintenance brackets (pure).

    LP = (WB + cum − s·Q·EP) / (Q·MMR − s·Q),   s = +1 long, −1 short

WB is the isolated wallet balance of the position (isolated margin) or the cross wallet balance
plus the other positions' unrealised P&L minus their maintenance margin (cross margin); MMR and
cum (the maintenance amount) come from the bracket chosen by the position's NOTIONAL. At LP the
margin balance equals the maintenance margin: WB + s·Q·(LP − EP) = Q·LP·MMR − cum.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from quorum.domain.models import Bracket, Side


def _side_sign(side: Side | str) -> int:
    value = side.value if isinstance(side, Side) else str(side).lower()
    if value == "long":
        return 1
    if value == "short":
        return -1
    raise ValueError(f"side must be 'long' or 'short', got {side!r}")


def liquidation_price(
    side: Side | str,
    quantity: float,
    entry_price: float,
    wallet_balance: float,
    maint_margin_rate: float,
    maint_amount: float,
    other_maint_margin: float = 0.0,
    other_unrealized_pnl: float = 0.0,
) -> float:
    """Liquidation price of a one-way position (Binance's published USDⓈ-M formula).

    `wallet_balance` is the isolated wallet balance (isolated) or the cross wallet balance
    (cross, where `other_maint_margin` / `other_unrealized_pnl` are the other positions' total
    maintenance margin and unrealised P&L; both are 0 in isolated mode). Returns 0.0 when the
    position cannot be liquidated (the formula gives ≤ 0, shown as "--" by Binance).
    Raises ValueError on unusable input (non-positive quantity/price, non-finite values, MMR
    outside [0, 1))."""
    s = _side_sign(side)
    values = (quantity, entry_price, wallet_balance, maint_margin_rate, maint_amount,
              other_maint_margin, other_unrealized_pnl)
    if not all(math.isfinite(v) for v in values):
        raise ValueError("liquidation_price: every input must be a finite number")
    if quantity <= 0 or entry_price <= 0:
        raise ValueError("liquidation_price: quantity and entry_price must be > 0")
    if not 0 <= maint_margin_rate < 1:
        raise ValueError("liquidation_price: maint_margin_rate must be in [0, 1)")
    wb = wallet_balance - other_maint_margin + other_unrealized_pnl
    q = abs(quantity)
    denominator = q * maint_margin_rate - s * q
    lp = (wb + maint_amount - s * q * entry_price) / denominator
    return max(lp, 0.0)


def bracket_for(notional: float, brackets: Sequence[Bracket]) -> Bracket:
    """The maintenance bracket for a position NOTIONAL (floor < notional ≤ cap; a notional of 0
    is in the first bracket; above the last cap, the last bracket)."""
    if not brackets:
        raise ValueError("bracket_for: empty bracket table")
    ordered = sorted(brackets, key=lambda b: b.notional_floor)
    n = abs(notional)
    for b in ordered:
        if n <= b.notional_cap:
            return b
    return ordered[-1]


def maint_amounts(floors: Sequence[float], rates: Sequence[float]) -> list[float]:
    """Binance's maintenance amounts: cum_n = cum_{n-1} + floor_n × (MMR_n − MMR_{n-1})."""
    cums: list[float] = []
    for i, (floor, rate) in enumerate(zip(floors, rates, strict=True)):
        cums.append(0.0 if i == 0 else round(cums[-1] + floor * (rate - rates[i - 1]), 8))
    return cums


def liquidation_price_for(
    side: Side | str,
    quantity: float,
    entry_price: float,
    wallet_balance: float,
    brackets: Sequence[Bracket],
    other_maint_margin: float = 0.0,
    other_unrealized_pnl: float = 0.0,
) -> float:
    """Liquidation price with the bracket chosen by the entry notional; if the notional at the
    resulting price falls in another bracket, recompute with that one (Binance's note)."""
    b = bracket_for(quantity * entry_price, brackets)
    lp = liquidation_price(side, quantity, entry_price, wallet_balance, b.maint_margin_rate,
                           b.maint_amount, other_maint_margin, other_unrealized_pnl)
    if lp > 0:
        b2 = bracket_for(quantity * lp, brackets)
        if b2 != b:
            lp = liquidation_price(side, quantity, entry_price, wallet_balance, b2.maint_margin_rate,
                                   b2.maint_amount, other_maint_margin, other_unrealized_pnl)
    return lp


def isolated_margin(notional: float, leverage: float) -> float:
    """Initial margin of an isolated position (its wallet balance right after opening)."""
    if leverage <= 0:
        raise ValueError("leverage must be > 0")
    return abs(notional) / leverage
