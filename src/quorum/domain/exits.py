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

Where things live: `quorum.domain.exit_policy` holds `ExitPolicy`, `Bar` / `BarLike` and the level
functions, `quorum.domain.exit_scan` the vectorised scan; both are re-exported here, so
`quorum.domain.exits` remains the one import for the exit rules.
"""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt

from quorum.domain.exit_policy import HOUR_MS as HOUR_MS
from quorum.domain.exit_policy import Bar as Bar
from quorum.domain.exit_policy import BarLike as BarLike
from quorum.domain.exit_policy import ExitPolicy as ExitPolicy
from quorum.domain.exit_policy import _better, _evolve, _sign
from quorum.domain.exit_policy import break_even_stop as break_even_stop
from quorum.domain.exit_policy import break_even_trigger as break_even_trigger
from quorum.domain.exit_policy import partial_level as partial_level
from quorum.domain.exit_policy import partial_quantity as partial_quantity
from quorum.domain.exit_policy import trailing_activation_price as trailing_activation_price
from quorum.domain.exit_policy import trailing_level as trailing_level
from quorum.domain.exit_scan import FloatArray as FloatArray
from quorum.domain.exit_scan import first_event_index as first_event_index
from quorum.domain.exit_scan import fold_extremes as fold_extremes
from quorum.domain.models import ExitReason, IntentKind, OrderIntent, PositionState


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


# --- event to event -------------------------------------------------------------------------


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
