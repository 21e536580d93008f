"""Exits: stop from the entry, trailing from the peak, break-even, partials, TP, time stop,
the conservative intra-bar convention, and the agreement of step_bar with the vectorised scan."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from quorum.domain.exits import (
    HOUR_MS,
    Bar,
    ExitPolicy,
    consensus_close,
    first_event_index,
    fold_extremes,
    run_exits,
    step_bar,
)
from quorum.domain.models import ExitReason, IntentKind, PositionState, Side

M5 = 300_000


def pos(side: Side = Side.LONG, entry: float = 100.0, stop: float = 95.0, qty: float = 3.0,
        tp: float | None = None, liq: float | None = None, **kw: object) -> PositionState:
    return PositionState(
        symbol="BTCUSDT", side=side, entry_price=entry, quantity=qty, initial_quantity=qty,
        initial_stop=stop, stop_price=stop, take_profit=tp, leverage=3, opened_ms=0,
        peak_price=entry, liquidation_price=liq, position_id="p1", **kw,  # type: ignore[arg-type]
    )


NO_EXTRAS = ExitPolicy(trailing_enabled=False, break_even_at_r=0, partial_exits=(), time_stop_ms=0)


def walk(p: PositionState, prices: list[float], policy: ExitPolicy) -> tuple[PositionState, list]:
    out = []
    for i, px in enumerate(prices):
        p, intents = step_bar(p, Bar.tick(i * M5, px), policy)
        out.extend(intents)
        if p.quantity <= 0:
            break
    return p, out


def test_seed_bug_stop_is_measured_from_entry_not_from_peak() -> None:
    # Up 100 % then back down: a 5 % stop from the peak (190) would fire at 180; from the entry
    # it must not fire until 95.
    p = pos(entry=100.0, stop=95.0)
    p, intents = walk(p, [150.0, 200.0, 180.0, 120.0, 96.0], NO_EXTRAS)
    assert p.quantity == 3.0 and intents == []
    assert p.peak_price == 200.0 and p.stop_price == 95.0
    p, intents = walk(p, [94.0], NO_EXTRAS)
    assert p.quantity == 0.0
    (close,) = intents
    assert close.kind is IntentKind.CLOSE and close.reason == ExitReason.STOP_LOSS.value
    assert close.price_hint == 94.0  # gapped through 95 → fills at the (worse) open


def test_seed_bug_short_mirror() -> None:
    p = pos(Side.SHORT, entry=100.0, stop=105.0)
    p, intents = walk(p, [60.0, 50.0, 70.0, 104.0], NO_EXTRAS)
    assert intents == [] and p.peak_price == 50.0
    p, intents = step_bar(p, Bar(0, 104.0, 106.0, 103.0, 105.5), NO_EXTRAS)
    assert intents[0].reason == "stop_loss" and intents[0].price_hint == 105.0


def test_trailing_from_peak_only_after_activation() -> None:
    policy = ExitPolicy(trailing_activation_pct=2.0, trailing_distance_pct=1.5, break_even_at_r=0,
                        partial_exits=(), time_stop_ms=0)
    p = pos(entry=100.0, stop=95.0)
    p, intents = step_bar(p, Bar(0, 100, 101.9, 99.5, 101), policy)
    assert not p.trailing_active and p.stop_price == 95.0 and intents == ()
    p, intents = step_bar(p, Bar(M5, 101, 110.0, 100.5, 109), policy)
    assert p.trailing_active and p.peak_price == 110.0
    assert p.stop_price == pytest.approx(110.0 * 0.985)
    assert intents[0].kind is IntentKind.MOVE_STOP and intents[0].stop_price == pytest.approx(108.35)
    p, intents = step_bar(p, Bar(2 * M5, 109, 109.5, 108.0, 108.2), policy)
    assert p.quantity == 0 and intents[0].reason == "trailing_stop"
    assert intents[0].price_hint == pytest.approx(108.35)


def test_trailing_level_uses_peak_up_to_previous_bar() -> None:
    # This bar makes a new high at 120 and dips to 112; the trailing stop from the previous peak
    # (110 → 108.35) is not hit, and the new level (118.2) only applies from the next bar.
    policy = ExitPolicy(trailing_activation_pct=2.0, trailing_distance_pct=1.5, break_even_at_r=0,
                        partial_exits=(), time_stop_ms=0)
    p = replace(pos(), peak_price=110.0, trailing_active=True, stop_price=108.35)
    p, intents = step_bar(p, Bar(0, 111, 120, 112, 119), policy)
    assert p.quantity == 3.0 and p.peak_price == 120 and p.stop_price == pytest.approx(118.2)
    assert [i.kind for i in intents] == [IntentKind.MOVE_STOP]


def test_trailing_in_atr_multiples() -> None:
    policy = ExitPolicy(trailing_activation_pct=1.0, trailing_atr_multiple=2.0, break_even_at_r=0,
                        partial_exits=(), time_stop_ms=0)
    p = pos(atr=1.5)
    p, _ = step_bar(p, Bar(0, 100, 106, 100, 105), policy)
    assert p.stop_price == pytest.approx(106 - 3.0)


def test_short_trailing_from_trough() -> None:
    policy = ExitPolicy(trailing_activation_pct=2.0, trailing_distance_pct=1.0, break_even_at_r=0,
                        partial_exits=(), time_stop_ms=0)
    p = pos(Side.SHORT, entry=100.0, stop=104.0)
    p, _ = step_bar(p, Bar(0, 100, 100.5, 90, 91), policy)
    assert p.trailing_active and p.peak_price == 90 and p.stop_price == pytest.approx(90.9)
    p, intents = step_bar(p, Bar(M5, 90.7, 91.5, 90.5, 91.2), policy)
    assert intents[0].reason == "trailing_stop" and intents[0].price_hint == pytest.approx(90.9)


def test_break_even_plus_fees_after_one_r() -> None:
    policy = ExitPolicy(trailing_enabled=False, break_even_at_r=1.0, fee_rate=0.0005, partial_exits=(),
                        time_stop_ms=0)
    p = pos(entry=100.0, stop=98.0)  # 1R = 2
    p, _ = step_bar(p, Bar(0, 100, 101.9, 99, 101), policy)
    assert p.stop_price == 98.0
    p, intents = step_bar(p, Bar(M5, 101, 102.0, 100.5, 101.5), policy)
    assert p.stop_price == pytest.approx(100.1)  # entry + two taker fees
    assert intents[0].kind is IntentKind.MOVE_STOP and intents[0].reason == "break_even_stop"
    p, intents = step_bar(p, Bar(2 * M5, 101, 101, 99.0, 99.5), policy)
    assert intents[0].reason == "break_even_stop" and intents[0].price_hint == pytest.approx(100.1)


def test_partials_then_take_profit() -> None:
    policy = ExitPolicy(trailing_enabled=False, break_even_at_r=0, partial_exits=((0.33, 1.0), (0.33, 2.0)),
                        time_stop_ms=0, qty_step=0.01)
    p = pos(entry=100.0, stop=98.0, qty=1.0, tp=107.0)
    p, intents = step_bar(p, Bar(0, 100, 104.5, 99.5, 104), policy)  # both 102 and 104 reached
    assert [i.kind for i in intents] == [IntentKind.REDUCE, IntentKind.REDUCE]
    assert [i.price_hint for i in intents] == [102.0, 104.0]
    assert [i.quantity for i in intents] == [0.33, 0.33]
    assert p.partials_done == 2 and p.quantity == pytest.approx(0.34)
    p, intents = step_bar(p, Bar(M5, 104, 108, 103, 107.5), policy)
    assert intents[-1].reason == "take_profit" and intents[-1].quantity == pytest.approx(0.34)
    assert intents[-1].price_hint == 107.0 and p.quantity == 0


def test_bar_touching_stop_and_target_assumes_stop_first() -> None:
    policy = ExitPolicy(trailing_enabled=False, break_even_at_r=1.0, partial_exits=((0.5, 1.0),), time_stop_ms=0)
    p = pos(entry=100.0, stop=98.0, tp=103.0)
    p, intents = step_bar(p, Bar(0, 100, 104, 97, 101), policy)
    assert len(intents) == 1 and intents[0].reason == "stop_loss" and intents[0].price_hint == 98.0
    assert intents[0].quantity == 3.0 and p.quantity == 0


def test_favourable_gap_fills_take_profit_at_its_level_not_better() -> None:
    p = pos(entry=100.0, stop=98.0, tp=103.0)
    _, intents = step_bar(p, Bar(0, 110, 111, 109, 110), NO_EXTRAS)
    assert intents[0].reason == "take_profit" and intents[0].price_hint == 103.0


def test_time_stop_closes_at_open() -> None:
    policy = replace(NO_EXTRAS, time_stop_ms=2 * HOUR_MS)
    p = pos()
    p2, intents = step_bar(p, Bar(2 * HOUR_MS - M5, 100, 101, 99, 100), policy)
    assert intents == () and p2.quantity == 3.0
    _, intents = step_bar(p, Bar(2 * HOUR_MS, 100.5, 101, 99, 100), policy)
    assert intents[0].reason == "time_stop" and intents[0].price_hint == 100.5


def test_liquidation_when_gap_passes_liquidation_price() -> None:
    p = pos(entry=100.0, stop=95.0, liq=80.0)
    _, intents = step_bar(p, Bar(0, 75, 76, 70, 72), NO_EXTRAS)
    assert intents[0].reason == "liquidation" and intents[0].price_hint == 80.0
    _, intents = step_bar(p, Bar(0, 96, 97, 70, 72), NO_EXTRAS)  # stop fills at 95 first
    assert intents[0].reason == "stop_loss" and intents[0].price_hint == 95.0


def test_consensus_close_respects_min_hold_but_stop_does_not() -> None:
    policy = replace(NO_EXTRAS, min_hold_ms=15 * 60_000)
    p = pos()
    assert consensus_close(p, 10 * 60_000, 101.0, policy) == (p, ())
    _, intents = consensus_close(p, 15 * 60_000, 101.0, policy)
    assert intents[0].reason == "consensus_close" and intents[0].quantity == 3.0
    _, intents = step_bar(p, Bar(60_000, 94, 94, 93, 93), policy)  # one minute in: the stop still fires
    assert intents[0].reason == "stop_loss"


def test_bad_bars_change_nothing() -> None:
    p = pos()
    assert step_bar(p, Bar(0, float("nan"), 1, 1, 1), NO_EXTRAS) == (p, ())
    assert step_bar(p, Bar(0, 0.0, 0.0, 0.0, 0.0), NO_EXTRAS) == (p, ())


def test_first_event_index_finds_stop_and_skips_quiet_bars() -> None:
    p = pos(entry=100.0, stop=95.0, tp=110.0)
    highs = np.array([101, 102, 101, 100, 99.0])
    lows = np.array([99, 99.5, 97, 94.9, 90.0])
    opens = closes = (highs + lows) / 2
    assert first_event_index(p, opens, highs, lows, closes, NO_EXTRAS, 0) == 3
    assert first_event_index(p, opens, highs, lows, closes, NO_EXTRAS, 4) == 4
    assert first_event_index(p, opens[:3], highs[:3], lows[:3], closes[:3], NO_EXTRAS, 0) == 3


def test_fold_extremes_only_raises_peak() -> None:
    p = pos()
    highs = np.array([101.0, 105.0, 103.0])
    lows = np.array([99.0, 98.0, 97.0])
    assert fold_extremes(p, highs, lows, 0, 3).peak_price == 105.0
    assert fold_extremes(pos(Side.SHORT, stop=105.0), highs, lows, 0, 3).peak_price == 97.0


# --- agreement: bar-by-bar stepping vs the vectorised scan ---------------------------------------

policies = st.builds(
    ExitPolicy,
    trailing_enabled=st.booleans(),
    trailing_activation_pct=st.sampled_from([0.0, 0.5, 2.0]),
    trailing_distance_pct=st.sampled_from([0.5, 1.5, 3.0]),
    trailing_atr_multiple=st.sampled_from([None, 2.0]),
    break_even_at_r=st.sampled_from([0.0, 1.0]),
    fee_rate=st.just(0.0005),
    partial_exits=st.sampled_from([(), ((0.33, 1.0), (0.33, 2.0)), ((0.5, 0.5),)]),
    time_stop_ms=st.sampled_from([0, 6 * M5, 40 * M5]),
    qty_step=st.sampled_from([0.0, 0.01]),
)


@st.composite
def scenarios(draw: st.DrawFn) -> tuple[PositionState, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    side = draw(st.sampled_from([Side.LONG, Side.SHORT]))
    entry = 100.0
    stop_pct = draw(st.sampled_from([0.5, 1.0, 3.0]))
    stop = entry * (1 - side.sign * stop_pct / 100)
    tp = draw(st.one_of(st.none(), st.sampled_from([1.02, 1.05])))
    tp_price = None if tp is None else entry * (1 + side.sign * (tp - 1))
    liq = draw(st.one_of(st.none(), st.just(entry * (1 - side.sign * 0.2))))
    p = pos(side, entry=entry, stop=stop, qty=1.0, tp=tp_price, liq=liq, atr=draw(st.sampled_from([None, 0.4])))
    n = draw(st.integers(1, 60))
    steps = draw(st.lists(st.floats(-0.012, 0.012), min_size=n, max_size=n))
    wicks = draw(st.lists(st.tuples(st.floats(0, 0.008), st.floats(0, 0.008)), min_size=n, max_size=n))
    closes = entry * np.cumprod(1 + np.array(steps))
    opens = np.concatenate([[entry], closes[:-1]])
    highs = np.maximum(opens, closes) * (1 + np.array([w[0] for w in wicks]))
    lows = np.minimum(opens, closes) * (1 - np.array([w[1] for w in wicks]))
    return p, opens, highs, lows, closes


@settings(max_examples=300, deadline=None)
@given(scenarios(), policies)
def test_stepping_and_scanning_agree(scn: tuple, policy: ExitPolicy) -> None:
    p, opens, highs, lows, closes = scn
    open_ms = np.arange(len(opens), dtype=np.int64) * M5
    # bar by bar
    state = p
    stepped = []
    first_change = None
    for i in range(len(opens)):
        before = state
        state, intents = step_bar(state, Bar(int(open_ms[i]), opens[i], highs[i], lows[i], closes[i]), policy)
        if intents:
            stepped.append((i, intents))
        changed = intents or replace(state, peak_price=0.0) != replace(before, peak_price=0.0) or (
            before.trailing_active and state.peak_price != before.peak_price)
        if first_change is None and changed:
            first_change = i
        if state.quantity <= 0:
            break
    scanned = first_event_index(p, opens, highs, lows, closes, policy, 0, open_ms=open_ms)
    assert scanned == (first_change if first_change is not None else len(opens))
    final, events = run_exits(p, open_ms, opens, highs, lows, closes, policy)
    assert events == stepped
    assert final == state


@settings(max_examples=200, deadline=None)
@given(scenarios(), policies)
def test_stop_never_on_profit_side_initially_and_partials_never_oversell(scn: tuple, policy: ExitPolicy) -> None:
    p, opens, highs, lows, closes = scn
    s = p.side.sign
    assert s * (p.entry_price - p.stop_price) > 0  # stop on the loss side of entry
    open_ms = np.arange(len(opens), dtype=np.int64) * M5
    final, events = run_exits(p, open_ms, opens, highs, lows, closes, policy)
    sold = sum(i.quantity for _, intents in events for i in intents if i.kind in (IntentKind.REDUCE, IntentKind.CLOSE))
    assert sold <= p.initial_quantity + 1e-12
    assert final.quantity >= -1e-12
    assert abs(sold + final.quantity - p.initial_quantity) < 1e-9
    # stops only ever move in the position's favour
    moves = [i.stop_price for _, intents in events for i in intents if i.kind is IntentKind.MOVE_STOP]
    last = p.stop_price
    for m in moves:
        assert m is not None and s * (m - last) > 0
        last = m


@pytest.mark.parametrize("seed", range(6))
def test_long_series_agree_across_scan_chunks(seed: int) -> None:
    # thousands of bars so the chunked scan crosses its chunk boundaries
    rng = np.random.default_rng(seed)
    n = 5000
    closes = 100.0 * np.cumprod(1 + rng.normal(0, 0.002, n))
    opens = np.concatenate([[100.0], closes[:-1]])
    highs = np.maximum(opens, closes) * (1 + rng.uniform(0, 0.002, n))
    lows = np.minimum(opens, closes) * (1 - rng.uniform(0, 0.002, n))
    open_ms = np.arange(n, dtype=np.int64) * M5
    side = Side.LONG if seed % 2 == 0 else Side.SHORT
    p = pos(side, entry=100.0, stop=100.0 * (1 - side.sign * 0.08), qty=1.0,
            tp=100.0 * (1 + side.sign * 0.3), atr=0.3)
    policy = ExitPolicy(trailing_activation_pct=4.0, trailing_distance_pct=3.0, partial_exits=((0.3, 1.0),),
                        time_stop_ms=(4000 * M5) if seed % 3 == 0 else 0)
    state, stepped = p, []
    for i in range(n):
        state, intents = step_bar(state, Bar(int(open_ms[i]), opens[i], highs[i], lows[i], closes[i]), policy)
        if intents:
            stepped.append((i, intents))
        if state.quantity <= 0:
            break
    final, events = run_exits(p, open_ms, opens, highs, lows, closes, policy)
    assert events == stepped and final == state


def test_every_venue_names_a_break_even_stop_as_the_simulation_does() -> None:
    """The paper and live ledgers and the backtest named the close of a stop moved to break-even
    plus fees `stop_loss` (they compared the stop with the entry exactly), while the pure exit
    simulation named it `break_even_stop`: "by exit reason" in every report was wrong. One rule
    now, in the domain, from the order that closed the position."""
    from quorum.domain.exits import exit_reason_for_order

    policy = ExitPolicy(trailing_enabled=False, break_even_at_r=1.0, fee_rate=0.0005, partial_exits=(),
                        time_stop_ms=0)
    p = pos(entry=100.0, stop=95.0)
    p, moved = walk(p, [106.0], policy)  # +1 R: the stop goes to entry + two taker fees
    assert p.stop_price == pytest.approx(100.1) and moved[0].reason == "break_even_stop"
    before_close = p
    p, closed = walk(p, [100.0], policy)
    assert closed[-1].kind is IntentKind.CLOSE and closed[-1].reason == ExitReason.BREAK_EVEN_STOP.value
    assert exit_reason_for_order("stop", "q-stop-1", before_close).value == closed[-1].reason
    # the other stops and orders
    assert exit_reason_for_order("stop", "q-stop-1", pos(entry=100.0, stop=95.0)) is ExitReason.STOP_LOSS
    trailing = replace(pos(entry=100.0, stop=95.0), stop_price=103.0, trailing_active=True)
    assert exit_reason_for_order("stop", "q-stop-1", trailing) is ExitReason.TRAILING_STOP
    assert exit_reason_for_order("take_profit", "q-tp-1", before_close) is ExitReason.TAKE_PROFIT
    assert exit_reason_for_order("market", "liquidation-1", before_close) is ExitReason.LIQUIDATION
    assert exit_reason_for_order("market", "q-close-1", before_close) is ExitReason.RECONCILIATION


def test_the_stop_that_filled_names_the_exit_not_the_one_replacing_it() -> None:
    from quorum.domain.exits import exit_reason_for_order

    being_moved = replace(pos(entry=100.0, stop=95.0), stop_price=100.1)  # the move to break-even under way
    assert exit_reason_for_order("stop", "q-stop-1", being_moved, 95.0) is ExitReason.STOP_LOSS
    assert exit_reason_for_order("stop", "q-stop-2", being_moved, 100.1) is ExitReason.BREAK_EVEN_STOP
    assert exit_reason_for_order("stop", "q-stop-2", being_moved) is ExitReason.BREAK_EVEN_STOP


def test_a_stop_rounded_to_the_venue_tick_is_still_the_initial_stop() -> None:
    from quorum.domain.exits import exit_reason_for_order

    p = pos(entry=3901.37, stop=3784.3289)  # the venue holds it at its 0.01 tick
    assert exit_reason_for_order("stop", "q-stop-1", p, 3784.33) is ExitReason.STOP_LOSS
    short = pos(side=Side.SHORT, entry=100.0, stop=103.0)
    assert exit_reason_for_order("stop", "q-stop-1", short, 103.0) is ExitReason.STOP_LOSS
    assert exit_reason_for_order("stop", "q-stop-1", short, 99.9) is ExitReason.BREAK_EVEN_STOP
