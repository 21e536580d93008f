"""Exits of an open position, evaluated bar by bar (pure).

Two entry points that always agree (tested with hypothesis):

- `step_bar(position, bar, policy)` — one execution bar (or one price tick: a bar with
  open = high = low = close) → the new `PositionState` and the `OrderIntent`s it produced.
- `first_event_index(position, opens, highs, lows, closes, policy, start)` — numpy scan for the
  first bar index ≥ `start` on which `step_bar` would do anything (exit, partial, stop move,
  trailing activation / peak move while trailing). Bars before it can be skipped with
  `fold_extremes` (which only advances the peak). `run_exits` combines both.

Intra-bar convention (conservative, used by the paper exchange and the backtester alike):

1. Time stop: a bar whose open time is ≥ opened + TIME_STOP_HOURS closes at its open.
2. The stop (and the liquidation level) are checked before anything favourable: on a bar that
   touches both the stop and a target, the stop is assumed first. A stop gapped through fills at
   the bar's open (the worse price); otherwise at the stop price. If the stop's fill would be at
   or beyond the liquidation price (or the stop sits beyond it), the exit is a LIQUIDATION at the
   liquidation price (what the isolated position loses is decided by the fill model).
3. Partial exits then the take-profit, each at its level price (never better, even on a gap).
4. Only then the peak (trough for shorts) is updated with this bar's extreme, and the trailing
   stop / break-even stop derived from it. So the stop level used on a bar always comes from the
   peak up to the previous bar. Stops only ever move in the position's favour.

The initial stop is measured from the ENTRY (it is `PositionState.initial_stop`, set by the
verdict); only the trailing stop is measured from the peak.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

from quorum.domain.models import ExitReason, IntentKind, OrderIntent, PositionState

HOUR_MS = 3_600_000
FloatArray = npt.NDArray[np.float64]


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


def exit_reason_for_stop(position: PositionState, stop_price: float | None = None) -> ExitReason:
    """Classify a stop that closed `position`: the initial one (from the entry), trailing (from
    the peak) or moved to break-even. `stop_price` is the trigger of the stop that filled, when it
    is known and may differ from the position's current stop (an old stop that filled while it
    was being replaced). The one classification every venue and the backtest use."""
    stop = position.stop_price if stop_price is None else stop_price
    # a stop only ever moves in the position's favour: one that has not moved halfway from the
    # initial stop toward the entry is the initial stop (venues round it to their tick); break-even
    # and trailing stops sit at or beyond the entry
    risk = abs(position.entry_price - position.initial_stop)
    if _sign(position) * (stop - position.initial_stop) < 0.5 * risk or risk == 0.0:
        return ExitReason.STOP_LOSS
    if position.trailing_active:
        return ExitReason.TRAILING_STOP
    return ExitReason.BREAK_EVEN_STOP


def exit_reason_for_order(purpose: str, client_order_id: str, position: PositionState,
                          stop_price: float | None = None) -> ExitReason:
    """Why a position closed, from the order that closed it: a liquidation or auto-close, its
    stop (classified by `exit_reason_for_stop`, from the order's trigger `stop_price` when given),
    its take-profit, or anything else (a close that reconciliation found)."""
    if client_order_id.startswith(("liquidation", "autoclose")):
        return ExitReason.LIQUIDATION
    if purpose == "stop":
        return exit_reason_for_stop(position, stop_price)
    if purpose == "take_profit":
        return ExitReason.TAKE_PROFIT
    return ExitReason.RECONCILIATION


# --- one bar ---------------------------------------------------------------------------------


def _close(position: PositionState, reason: ExitReason, price: float, time_ms: int) -> tuple[
    PositionState, tuple[OrderIntent, ...]
]:
    intent = OrderIntent(
        kind=IntentKind.CLOSE, symbol=position.symbol, side=position.side, quantity=position.quantity,
        reason=reason.value, price_hint=price, decision_id=position.decision_id,
        extra={"time_ms": time_ms, "position_id": position.position_id},
    )
    return _evolve(position, quantity=0.0), (intent,)


def step_bar(position: PositionState, bar: BarLike, policy: ExitPolicy) -> tuple[
    PositionState, tuple[OrderIntent, ...]
]:
    """Advance one open position over one execution bar (see the module docstring for the
    intra-bar order). Returns the new state (quantity 0 when closed) and the intents."""
    if position.quantity <= 0:
        return position, ()
    o, h, lo = float(bar.open), float(bar.high), float(bar.low)
    if not (math.isfinite(o) and math.isfinite(h) and math.isfinite(lo)) or min(o, h, lo) <= 0:
        return position, ()  # unusable bar: nothing can be concluded from it
    s = _sign(position)
    t = int(bar.open_ms)

    if policy.time_stop_ms > 0 and t >= position.opened_ms + policy.time_stop_ms:
        return _close(position, ExitReason.TIME_STOP, o, t)

    adverse = lo if s > 0 else h
    favour = h if s > 0 else lo
    stop = position.stop_price
    liq = position.liquidation_price
    stop_hit = _better(s, stop, adverse)  # adverse extreme at or beyond the stop
    liq_hit = liq is not None and liq > 0 and _better(s, liq, adverse)
    if stop_hit or liq_hit:
        stop_fill = o if _better(s, stop, o) else stop
        if liq is not None and liq_hit and (not stop_hit or _better(s, liq, stop_fill)):
            return _close(position, ExitReason.LIQUIDATION, liq, t)
        return _close(position, exit_reason_for_stop(position), stop_fill, t)

    intents: list[OrderIntent] = []
    state = position
    k = state.partials_done
    level = partial_level(state, policy, k)
    while level is not None and _better(s, favour, level):
        qty = partial_quantity(state, policy, k)
        if qty > 0:
            intents.append(OrderIntent(
                kind=IntentKind.REDUCE, symbol=state.symbol, side=state.side, quantity=qty,
                reason=ExitReason.PARTIAL_TAKE_PROFIT.value, price_hint=level,
                decision_id=state.decision_id,
                extra={"time_ms": t, "position_id": state.position_id, "step": k + 1},
            ))
        state = _evolve(state, quantity=state.quantity - qty, partials_done=k + 1)
        k += 1
        level = partial_level(state, policy, k)

    if state.quantity <= 0:
        return state, tuple(intents)
    tp = state.take_profit
    if tp is not None and tp > 0 and _better(s, favour, tp):
        closed, close_intents = _close(state, ExitReason.TAKE_PROFIT, tp, t)
        return closed, (*intents, *close_intents)

    # Peak, trailing and break-even take effect from the next bar on.
    peak = favour if s * (favour - state.peak_price) > 0 else state.peak_price
    new_stop = state.stop_price
    trailing_active = state.trailing_active
    act = trailing_activation_price(state, policy)
    if act is not None and (trailing_active or _better(s, peak, act)):
        trailing_active = True
        trail = trailing_level(state, peak, policy)
        if s * (trail - new_stop) > 0:
            new_stop = trail
    be = break_even_trigger(state, policy)
    if be is not None and _better(s, peak, be):
        be_stop = break_even_stop(state, policy)
        if s * (be_stop - new_stop) > 0:
            new_stop = be_stop
    state = _evolve(state, peak_price=peak, stop_price=new_stop, trailing_active=trailing_active)
    if new_stop != position.stop_price:
        intents.append(OrderIntent(
            kind=IntentKind.MOVE_STOP, symbol=state.symbol, side=state.side, quantity=state.quantity,
            reason=(ExitReason.TRAILING_STOP if trailing_active else ExitReason.BREAK_EVEN_STOP).value,
            stop_price=new_stop, decision_id=state.decision_id,
            extra={"time_ms": t, "position_id": state.position_id, "previous_stop": position.stop_price},
        ))
    return state, tuple(intents)


def consensus_close(position: PositionState, time_ms: int, price: float, policy: ExitPolicy) -> tuple[
    PositionState, tuple[OrderIntent, ...]
]:
    """Exit on a consensus CLOSE vote — unless the position is younger than MIN_HOLD (anti-churn;
    the stop is never subject to the minimum hold)."""
    if position.quantity <= 0 or time_ms - position.opened_ms < policy.min_hold_ms:
        return position, ()
    if not (math.isfinite(price) and price > 0):
        return position, ()
    return _close(position, ExitReason.CONSENSUS_CLOSE, price, time_ms)


# --- vectorised scan ---------------------------------------------------------------------------


def first_event_index(
    position: PositionState,
    opens: FloatArray,
    highs: FloatArray,
    lows: FloatArray,
    closes: FloatArray,
    policy: ExitPolicy,
    start: int = 0,
    *,
    open_ms: npt.NDArray[np.int64] | None = None,
    end: int | None = None,
) -> int:
    """First index i in [start, end) where `step_bar` on bar i could change anything, given the
    state `position` (with nothing happening in between). Returns `end` (default len(highs))
    when no bar in the range does anything. Bars with non-finite or non-positive prices are
    ignored (as `step_bar` ignores them). The time stop is found only when `open_ms` is given.

    Skipped bars may still raise the peak while trailing is inactive; `fold_extremes` applies
    that before the event bar is stepped (`run_exits` does it for you)."""
    n = len(highs) if end is None else min(end, len(highs))
    if start >= n:
        return start
    if position.quantity <= 0:
        return n
    s = _sign(position)
    liq = position.liquidation_price
    always = False
    favourable_levels: list[float] = []
    level = partial_level(position, policy, position.partials_done)
    if level is not None:
        favourable_levels.append(level)
    if position.take_profit is not None and position.take_profit > 0:
        favourable_levels.append(position.take_profit)
    act = trailing_activation_price(position, policy)
    new_extreme_matters = False
    if act is not None:
        if position.trailing_active:
            new_extreme_matters = True  # every new extreme moves the peak (maybe the trailing stop)
        elif _better(s, position.peak_price, act):
            always = True  # the peak already qualifies: the next bar activates trailing
        else:
            favourable_levels.append(act)
    be = break_even_trigger(position, policy)
    if be is not None and s * (break_even_stop(position, policy) - position.stop_price) > 0:
        if _better(s, position.peak_price, be):
            always = True
        else:
            favourable_levels.append(be)
    # The nearest favourable level is the only one that matters for the FIRST event.
    nearest = min(favourable_levels, key=lambda lvl: s * lvl) if favourable_levels else None
    time_limit = position.opened_ms + policy.time_stop_ms if policy.time_stop_ms > 0 and open_ms is not None else None

    # The adverse levels (stop, liquidation) merge into one threshold: adverse beyond the stop
    # OR beyond the liquidation ⇔ adverse beyond the farther-in of the two (exact for non-NaN).
    adverse_levels = [position.stop_price]
    if liq is not None and liq > 0:
        adverse_levels.append(liq)
    merged: float | None = None
    if not (math.isnan(adverse_levels[0]) or math.isnan(adverse_levels[-1])):
        merged = max(adverse_levels) if s > 0 else min(adverse_levels)
    highs_a = np.asarray(highs, dtype=np.float64)
    lows_a = np.asarray(lows, dtype=np.float64)
    adverse_all = lows_a if s > 0 else highs_a
    favour_all = highs_a if s > 0 else lows_a
    open_ms_a = np.asarray(open_ms) if time_limit is not None and open_ms is not None else None

    if always:
        for i in range(start, n):
            if _usable(opens, highs_a, lows_a, i):
                return i
        return n
    # Scan in growing chunks so that a near event costs little and a far one O(n) once. Unusable
    # bars are filtered on the (rare) hits only.
    a, chunk = start, 256
    while a < n:
        b = min(n, a + chunk)
        adverse = adverse_all[a:b]
        favour = favour_all[a:b]
        # Comparisons only (no arithmetic on the bars): NaN compares False without warnings.
        if merged is not None:
            event = adverse <= merged if s > 0 else adverse >= merged
        else:
            with np.errstate(invalid="ignore"):
                event = s * (position.stop_price - adverse) >= 0
                if liq is not None and liq > 0:
                    event |= s * (liq - adverse) >= 0
        if new_extreme_matters:
            event |= (favour > position.peak_price) if s > 0 else (favour < position.peak_price)
        if nearest is not None:
            event |= (favour >= nearest) if s > 0 else (favour <= nearest)
        if open_ms_a is not None and time_limit is not None:
            event |= open_ms_a[a:b] >= time_limit
        for hit in event.nonzero()[0].tolist():
            if _usable(opens, highs_a, lows_a, a + hit):
                return a + hit
        a, chunk = b, chunk * 4
    return n


def _usable(opens: FloatArray, highs: FloatArray, lows: FloatArray, i: int) -> bool:
    """What `step_bar` requires of bar i (scalar, exact)."""
    o, h, lo = float(opens[i]), float(highs[i]), float(lows[i])
    return math.isfinite(o) and math.isfinite(h) and math.isfinite(lo) and o > 0 and h > 0 and lo > 0


def fold_extremes(position: PositionState, highs: FloatArray, lows: FloatArray, start: int, end: int) -> PositionState:
    """Advance the peak (trough for shorts) over bars [start, end) on which nothing else happens."""
    if end <= start:
        return position
    s = _sign(position)
    seg = np.asarray(highs[start:end] if s > 0 else lows[start:end], dtype=np.float64)
    extreme = float(np.maximum.reduce(seg) if s > 0 else np.minimum.reduce(seg))
    # A finite, positive max (min) already excludes NaN / ±inf / ≤ 0 values from mattering;
    # otherwise drop the unusable values and look again.
    if not (math.isfinite(extreme) and extreme > 0):
        seg = seg[np.isfinite(seg) & (seg > 0)]
        if seg.size == 0:
            return position
        extreme = float(seg.max() if s > 0 else seg.min())
    if s * (extreme - position.peak_price) > 0:
        return _evolve(position, peak_price=extreme)
    return position


def run_exits(
    position: PositionState,
    open_ms: npt.NDArray[np.int64],
    opens: FloatArray,
    highs: FloatArray,
    lows: FloatArray,
    closes: FloatArray,
    policy: ExitPolicy,
    start: int = 0,
    end: int | None = None,
) -> tuple[PositionState, list[tuple[int, tuple[OrderIntent, ...]]]]:
    """Apply the exits over bars [start, end) jumping from event to event. Returns the final
    state and [(bar index, intents)] — identical to calling `step_bar` on every bar."""
    n = len(highs) if end is None else min(end, len(highs))
    events: list[tuple[int, tuple[OrderIntent, ...]]] = []
    i = start
    state = position
    while i < n and state.quantity > 0:
        j = first_event_index(state, opens, highs, lows, closes, policy, i, open_ms=open_ms, end=n)
        state = fold_extremes(state, highs, lows, i, j)
        if j >= n:
            break
        bar = Bar(int(open_ms[j]), float(opens[j]), float(highs[j]), float(lows[j]), float(closes[j]))
        state, intents = step_bar(state, bar, policy)
        if intents:
            events.append((j, intents))
        i = j + 1
    return state, events
