"""Exit parameters and the price levels derived from them (pure).

`ExitPolicy` (trailing, break-even, partials, time stop, minimum hold), the bar shape the exit
rules read (`Bar` / `BarLike`), and the level functions shared by the bar-by-bar rules
(`quorum.domain.exits`) and the vectorised scan (`quorum.domain.exit_scan`), so both compute
identical floats.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from typing import Any, Protocol

from quorum.domain.models import PositionState

HOUR_MS = 3_600_000


class BarLike(Protocol):
    """Anything with the OHLC of one bar (e.g. `models.Candle` or `Bar`)."""

    @property
    def open_ms(self) -> int: ...
    @property
    def open(self) -> float: ...
    @property
    def high(self) -> float: ...
    @property
    def low(self) -> float: ...
    @property
    def close(self) -> float: ...


@dataclass(frozen=True, slots=True)
class Bar:
    open_ms: int
    open: float
    high: float
    low: float
    close: float

    @classmethod
    def tick(cls, time_ms: int, price: float) -> Bar:
        """A single price update as a degenerate bar."""
        return cls(time_ms, price, price, price, price)


@dataclass(frozen=True, slots=True)
class ExitPolicy:
    """Exit parameters (see `from_settings`). Percentages are of price, not of margin."""

    trailing_enabled: bool = True
    trailing_activation_pct: float = 2.0
    trailing_distance_pct: float = 1.5
    trailing_atr_multiple: float | None = None
    break_even_at_r: float = 1.0  # 0 disables the break-even move
    fee_rate: float = 0.0005  # taker fee fraction; break-even stop covers two of them
    partial_exits: tuple[tuple[float, float], ...] = ((0.33, 1.0), (0.33, 2.0))
    time_stop_ms: int = 48 * HOUR_MS  # 0 disables
    min_hold_ms: int = 15 * 60_000  # applies to consensus closes only, never to stops
    qty_step: float = 0.0  # exchange step size for partial quantities (0 = no rounding)

    @classmethod
    def from_settings(cls, settings: Any, **overrides: Any) -> ExitPolicy:
        """Build from `quorum.config.Settings` (duck-typed so the domain imports no config)."""
        values: dict[str, Any] = {
            "trailing_activation_pct": float(settings.trailing_activation_pct),
            "trailing_distance_pct": float(settings.trailing_distance_pct),
            "trailing_atr_multiple": settings.trailing_atr_multiple,
            "break_even_at_r": float(settings.break_even_at_r),
            "fee_rate": float(settings.taker_fee_pct) / 100.0,
            "partial_exits": tuple(settings.partial_exit_plan),
            "time_stop_ms": int(float(settings.time_stop_hours) * HOUR_MS),
            "min_hold_ms": int(settings.min_hold_minutes) * 60_000,
        }
        values.update(overrides)
        return cls(**values)


_POSITION_FIELDS = tuple(f.name for f in fields(PositionState))


def _evolve(position: PositionState, **changes: Any) -> PositionState:
    """`dataclasses.replace` for the hot path (same result, less overhead)."""
    values = {name: getattr(position, name) for name in _POSITION_FIELDS}
    values.update(changes)
    return PositionState(**values)


# --- levels (shared by the scalar and the vector path so both compute identical floats) ----


def _sign(position: PositionState) -> int:
    return position.side.sign


def break_even_trigger(position: PositionState, policy: ExitPolicy) -> float | None:
    """Price at which the stop moves to break-even (+fees), or None when disabled."""
    if policy.break_even_at_r <= 0 or position.risk_per_unit <= 0:
        return None
    return position.entry_price + _sign(position) * policy.break_even_at_r * position.risk_per_unit


def break_even_stop(position: PositionState, policy: ExitPolicy) -> float:
    """Break-even plus the round-trip taker fees."""
    return position.entry_price * (1.0 + _sign(position) * 2.0 * policy.fee_rate)


def trailing_activation_price(position: PositionState, policy: ExitPolicy) -> float | None:
    if not policy.trailing_enabled:
        return None
    return position.entry_price * (1.0 + _sign(position) * policy.trailing_activation_pct / 100.0)


def trailing_level(position: PositionState, peak: float, policy: ExitPolicy) -> float:
    """Trailing stop for a given peak (trough for shorts): % distance or ATR multiple."""
    s = _sign(position)
    if policy.trailing_atr_multiple and position.atr is not None and position.atr > 0:
        return peak - s * policy.trailing_atr_multiple * position.atr
    return peak * (1.0 - s * policy.trailing_distance_pct / 100.0)


def partial_level(position: PositionState, policy: ExitPolicy, k: int) -> float | None:
    """Price of the k-th partial exit (0-based), or None when there is no such step."""
    if k >= len(policy.partial_exits) or position.risk_per_unit <= 0:
        return None
    return position.entry_price + _sign(position) * policy.partial_exits[k][1] * position.risk_per_unit


def partial_quantity(position: PositionState, policy: ExitPolicy, k: int) -> float:
    """Quantity of the k-th partial: fraction × initial quantity, rounded DOWN to the step and
    never more than what is still open."""
    qty = policy.partial_exits[k][0] * position.initial_quantity
    if policy.qty_step > 0:
        qty = math.floor(qty / policy.qty_step + 1e-9) * policy.qty_step
    return max(0.0, min(qty, position.quantity))


def _better(s: int, a: float, b: float) -> bool:
    """a is at least as favourable as b for a position of sign s."""
    return s * (a - b) >= 0
