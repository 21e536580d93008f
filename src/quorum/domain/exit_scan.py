"""The vectorised exit scan (pure): find the next bar on which `step_bar` acts.

`first_event_index` scans numpy OHLC arrays for the first bar on which `quorum.domain.exits.step_bar`
would do anything (exit, partial, stop move, trailing activation / peak move while trailing);
`fold_extremes` advances the peak over the bars skipped before it. `exits.run_exits` combines
them with `step_bar`; the result is identical to stepping every bar (tested with hypothesis).
"""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt

from quorum.domain.exit_policy import (
    ExitPolicy,
    _better,
    _evolve,
    _sign,
    break_even_stop,
    break_even_trigger,
    partial_level,
    trailing_activation_price,
)
from quorum.domain.models import PositionState

FloatArray = npt.NDArray[np.float64]


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

