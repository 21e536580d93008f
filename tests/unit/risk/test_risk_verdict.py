"""The risk verdict: sizing, caps, leverage vs liquidation, expectancy gate, bad input."""

from __future__ import annotations

import math
from dataclasses import replace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from quorum.config import Settings
from quorum.domain import breakers as brk
from quorum.domain.exposure import ExposurePolicy, ExposureState, OpenExposure
from quorum.domain.liquidation import liquidation_price
from quorum.domain.models import Action, Proposal, Regime, Side, SymbolFilters
from quorum.domain.risk import RiskContext, RiskPolicy, TrackRecord, evaluate
from quorum.domain.sizing import (
    confidence_scale,
    floor_to_step,
    leverage_cap,
    round_stop,
    round_target,
    volatility_scale,
)
from quorum.risk.brackets import BUNDLED

BTC = SymbolFilters("BTCUSDT", tick_size=0.1, step_size=0.001, min_qty=0.001, min_notional=100.0)
POLICY = RiskPolicy()


def proposal(action: Action = Action.LONG, price: float = 100_000.0, stop: float | None = 98_000.0,
             tps: tuple[float, ...] = (104_000.0,), leverage: float | None = None, confidence: float = 0.8,
             symbol: str = "BTCUSDT") -> Proposal:
    return Proposal(symbol, action, confidence, price, stop, tps, leverage, 3, 0, 1.0, "test", "hash", 0)


def ctx(**kw: object) -> RiskContext:
    base: dict[str, object] = dict(equity=10_000.0, now_ms=1_000_000, brackets=BUNDLED["BTCUSDT"], filters=BTC,
                                   atr=800.0, atr_pct_percentile=0.5, regime=Regime.TRENDING_UP, policy=POLICY)
    base.update(kw)
    return RiskContext(**base)  # type: ignore[arg-type]


def test_size_is_risk_budget_over_stop_distance() -> None:
    v = evaluate(proposal(confidence=0.65), ctx())
    assert v.status == "approved", v
    # 1 % of 10,000 = 100 USDT over a 2,000 stop → 0.05 BTC
    assert v.quantity == pytest.approx(0.05)
    assert v.risk_usd == pytest.approx(100.0)
    assert v.stop_price == 98_000 and v.take_profit == 104_000
    assert v.side is Side.LONG and v.leverage is not None and 1 <= v.leverage <= POLICY.max_leverage
    assert v.liquidation_price is not None and v.liquidation_price < v.stop_price


def test_volatility_scales_down_and_confidence_up_capped() -> None:
    calm = evaluate(proposal(confidence=0.65), ctx(atr_pct_percentile=0.2))
    wild = evaluate(proposal(confidence=0.65), ctx(atr_pct_percentile=0.95))
    assert wild.quantity < calm.quantity
    sure = evaluate(proposal(confidence=1.0), ctx())
    assert sure.risk_usd == pytest.approx(150.0)  # capped at CONFIDENCE_SIZE_CAP 1.5
    assert volatility_scale(None) == 1.0 and volatility_scale(100) == 0.5 and volatility_scale(0.75) == 0.75
    assert confidence_scale(0.99, 0.65, 1.0) == 1.0


def test_notional_cap_resizes() -> None:
    # tight stop → huge size; per-trade notional cap 200 % of equity binds
    v = evaluate(proposal(stop=99_500.0, tps=(101_500.0,)), ctx())
    assert v.status == "resized" and "notional_cap" in v.reasons
    assert v.notional <= 10_000 * POLICY.max_notional_pct / 100 + 1e-6


def test_stop_too_tight_is_widened_and_too_wide_rejected() -> None:
    v = evaluate(proposal(stop=99_900.0, tps=(102_000.0,)), ctx())
    assert "stop_widened_to_min" in v.reasons
    assert v.stop_price == pytest.approx(100_000 * (1 - POLICY.min_stop_loss_pct / 100))
    v = evaluate(proposal(stop=90_000.0, tps=(130_000.0,)), ctx())
    assert v.status == "rejected" and v.reasons == ("stop_too_wide",)


def test_expectancy_gate() -> None:
    v = evaluate(proposal(tps=(101_000.0,)), ctx())  # R:R 0.5
    assert v.status == "rejected" and "reward_risk_below_min" in v.reasons
    # a 0.4 % stop with 0.6 % target: R:R 1.5 but 0.6 % < 3 × (0.1 % fees + funding)
    v = evaluate(proposal(stop=99_600.0, tps=(100_600.0,)), ctx(funding_rate=0.0015))
    assert v.status == "rejected" and "target_does_not_cover_costs" in v.reasons
    v = evaluate(proposal(stop=99_600.0, tps=(100_600.0,)), ctx(funding_rate=-0.0015))  # funding pays a long
    assert "target_does_not_cover_costs" not in v.reasons


def test_volatile_regime_caps_leverage_at_two() -> None:
    v = evaluate(proposal(), ctx(regime=Regime.VOLATILE, equity=100_000.0))
    assert v.accepted and v.leverage is not None and v.leverage <= 2
    assert leverage_cap(20, Regime.VOLATILE, 0.99) == 2
    assert leverage_cap(20, Regime.TRENDING_UP, 0.75) == 5
    assert leverage_cap(20, Regime.TRENDING_UP, 0.6) == 3


def test_liquidation_rule_lowers_leverage() -> None:
    # 8 % stop: at 10x a long would be liquidated ~9.6 % away (< 2 × 8 %) → leverage must drop
    pol = replace(POLICY, max_leverage=10)
    v = evaluate(proposal(stop=92_000.0, tps=(120_000.0,), confidence=0.9),
                 ctx(policy=pol, equity=1_000_000.0, available_balance=1_000.0))
    assert v.accepted, v
    assert v.liquidation_price is not None
    assert 100_000 - v.liquidation_price >= 2 * 8_000
    assert v.leverage is not None and v.leverage < 10


def test_kelly_cap_and_no_edge() -> None:
    pol = replace(POLICY, kelly_fraction=0.25)
    v = evaluate(proposal(confidence=0.65), ctx(policy=pol, record=TrackRecord(100, 0.5, 1.2)))
    # Kelly = 0.25 × (0.5 − 0.5/1.2) = 2.08 % > 1 % → not binding
    assert v.risk_usd == pytest.approx(100.0)
    v = evaluate(proposal(confidence=0.65), ctx(policy=pol, record=TrackRecord(100, 0.45, 1.3)))
    assert "kelly_capped" in v.reasons and v.risk_usd < 100.0
    v = evaluate(proposal(), ctx(policy=pol, record=TrackRecord(100, 0.3, 1.0)))
    assert v.status == "rejected" and v.reasons == ("no_edge_in_record",)
    v = evaluate(proposal(), ctx(policy=pol, record=TrackRecord(5, 0.0, 1.0)))  # too few trades: ignored
    assert v.accepted


def test_short_mirror() -> None:
    v = evaluate(proposal(Action.SHORT, stop=102_000.0, tps=(96_000.0,)), ctx())
    assert v.accepted and v.side is Side.SHORT
    assert v.stop_price == 102_000 and v.liquidation_price is not None and v.liquidation_price > 102_000


@pytest.mark.parametrize(
    ("prop", "context", "code"),
    [
        (proposal(stop=101_000.0), ctx(), "stop_wrong_side"),
        (proposal(Action.SHORT, stop=99_000.0, tps=(96_000.0,)), ctx(), "stop_wrong_side"),
        (proposal(price=0.0), ctx(), "invalid_price"),
        (proposal(price=-5.0), ctx(), "invalid_price"),
        (proposal(price=float("nan")), ctx(), "invalid_price"),
        (proposal(stop=-1.0), ctx(), "invalid_stop"),
        (proposal(leverage=0), ctx(), "invalid_leverage"),
        (proposal(leverage=-2), ctx(), "invalid_leverage"),
        (proposal(leverage=125), ctx(), "leverage_above_max"),
        (proposal(leverage=float("nan")), ctx(), "invalid_leverage"),
        (proposal(), ctx(atr=float("nan")), "invalid_atr"),
        (proposal(), ctx(equity=0.0), "equity_not_positive"),
        (proposal(), ctx(equity=-100.0), "equity_not_positive"),
        (proposal(tps=(90_000.0,)), ctx(), "take_profit_wrong_side"),
        (proposal(stop=None), ctx(atr=None), "missing_stop"),
        (proposal(Action.HOLD), ctx(), "not_an_entry"),
        (proposal(confidence=float("nan")), ctx(), "invalid_confidence"),
        (proposal(), ctx(brackets=()), "no_brackets"),
    ],
)
def test_bad_input_is_rejected_with_a_reason_code(prop: Proposal, context: RiskContext, code: str) -> None:
    v = evaluate(prop, context)
    assert v.status == "rejected"
    assert code in v.reasons
    assert v.quantity == 0


def test_fractional_leverage_request_means_1x() -> None:
    v = evaluate(proposal(leverage=0.5), ctx(equity=100_000.0))
    assert v.accepted and v.leverage == 1.0


def test_missing_stop_defaults_from_atr() -> None:
    v = evaluate(proposal(stop=None, tps=(104_000.0,)), ctx(atr=800.0))
    assert v.accepted and v.stop_price == pytest.approx(98_400.0) and "stop_from_atr" in v.reasons


def test_below_min_notional_is_rejected_not_rounded_up() -> None:
    v = evaluate(proposal(), ctx(equity=100.0))  # risk 1 USDT / 2,000 → 0.0005 BTC < step
    assert v.status == "rejected" and "below_min_notional" in v.reasons


def test_breakers_and_exposure_block_entries() -> None:
    book = brk.BreakerBook(trips=(brk.Trip(brk.DRAWDOWN, "dd", 0),))
    v = evaluate(proposal(), ctx(breakers=book))
    assert v.status == "rejected" and "breaker:drawdown" in v.reasons
    state = ExposureState(open_positions=(OpenExposure("BTCUSDT", Side.LONG, 1000.0),))
    v = evaluate(proposal(), ctx(exposure=state))
    assert "position_already_open" in v.reasons
    pol = replace(POLICY, exposure=ExposurePolicy(blocked_symbols=frozenset({"BTCUSDT"})))
    assert "symbol_blocked" in evaluate(proposal(), ctx(policy=pol)).reasons


def test_policy_from_settings() -> None:
    s = Settings(max_leverage=7, risk_per_trade_pct=0.5, blocked_symbols="XRPUSDT", _env_file=None)  # type: ignore[call-arg]
    pol = RiskPolicy.from_settings(s)
    assert pol.max_leverage == 7 and pol.risk_per_trade_pct == 0.5
    assert pol.exposure.blocked_symbols == frozenset({"XRPUSDT"})
    assert pol.taker_fee_rate == pytest.approx(0.0005)


# --- properties --------------------------------------------------------------------------------

@st.composite
def proposals(draw: st.DrawFn) -> tuple[Proposal, RiskContext]:
    side = draw(st.sampled_from([Action.LONG, Action.SHORT]))
    s = 1 if side is Action.LONG else -1
    price = draw(st.sampled_from([0.1234, 2.5, 150.0, 3_000.0, 100_000.0]))
    stop_pct = draw(st.floats(0.1, 12.0))
    rr = draw(st.floats(1.0, 5.0))
    stop = price * (1 - s * stop_pct / 100)
    tp = price * (1 + s * rr * stop_pct / 100)
    tick = price / 10_000
    step = draw(st.sampled_from([0.0001, 0.001, 0.1, 1.0]))
    filters = SymbolFilters("XUSDT", tick_size=tick, step_size=step, min_qty=step, min_notional=5.0)
    pol = replace(POLICY, max_leverage=draw(st.integers(1, 50)),
                  risk_per_trade_pct=draw(st.floats(0.1, 5.0)),
                  liquidation_buffer_multiple=draw(st.floats(1.0, 4.0)))
    n_open = draw(st.integers(0, 3))
    opens = tuple(OpenExposure(f"S{i}USDT", Side.LONG, draw(st.floats(0, 5_000))) for i in range(n_open))
    context = RiskContext(
        equity=draw(st.floats(50, 200_000)), now_ms=0, brackets=BUNDLED["DEFAULT"], filters=filters,
        atr=price * 0.01, atr_pct_percentile=draw(st.floats(0, 1)),
        regime=draw(st.sampled_from(list(Regime))), funding_rate=draw(st.floats(-0.001, 0.001)),
        available_balance=draw(st.one_of(st.none(), st.floats(0, 200_000))),
        exposure=ExposureState(open_positions=opens), policy=pol,
    )
    prop = Proposal("XUSDT", side, draw(st.floats(0.5, 1.0)), price, stop, (tp,),
                    draw(st.one_of(st.none(), st.integers(1, 12).map(float))), 3, 0, 1.0, "", "h", 0)
    return prop, context


@settings(max_examples=300, deadline=None)
@given(proposals())
def test_verdict_properties(case: tuple[Proposal, RiskContext]) -> None:
    prop, c = case
    v = evaluate(prop, c)
    assert v.status in ("approved", "resized", "rejected")
    if not v.accepted:
        assert v.reasons and v.quantity == 0
        return
    pol = c.policy
    assert v.side is not None and v.stop_price is not None and v.entry_price is not None and v.leverage is not None
    s = v.side.sign
    # stop always on the loss side of the entry, target on the profit side
    assert s * (v.entry_price - v.stop_price) > 0
    assert v.take_profit is not None and s * (v.take_profit - v.entry_price) > 0
    # size never above any cap
    equity = c.equity
    assert v.risk_usd <= equity * pol.risk_per_trade_pct / 100 * pol.confidence_size_cap * (1 + 1e-9)
    assert v.notional <= equity * pol.max_notional_pct / 100 * (1 + 1e-9)
    used = sum(p.notional for p in c.exposure.open_positions)
    assert used + v.notional <= equity * pol.exposure.max_total_notional_pct / 100 * (1 + 1e-9) + 1e-9
    assert 1 <= v.leverage <= pol.max_leverage
    if prop.leverage is not None:
        assert v.leverage <= prop.leverage
    # rounding never increases risk: quantity on the step, risk within the budget
    assert c.filters is not None
    steps = v.quantity / c.filters.step_size  # a whole number of steps, up to float precision
    assert math.isclose(steps, round(steps), rel_tol=1e-12, abs_tol=1e-6), steps
    assert v.risk_usd == pytest.approx(v.quantity * abs(v.entry_price - v.stop_price))
    budget = float(v.details["risk_budget"])
    assert v.risk_usd <= budget * (1 + 1e-6)
    assert v.notional >= c.filters.min_notional
    # liquidation beyond the stop by the margin (re-derived independently from the formula)
    bracket = next(b for b in c.brackets if v.notional <= b.notional_cap)
    lp = liquidation_price(v.side, v.quantity, v.entry_price, v.notional / v.leverage,
                           bracket.maint_margin_rate, bracket.maint_amount)
    stop_dist = abs(v.entry_price - v.stop_price)
    if lp > 0:
        assert s * (v.stop_price - lp) > 0
        assert abs(v.entry_price - lp) >= pol.liquidation_buffer_multiple * stop_dist * (1 - 1e-9)
    assert v.margin <= max(equity, 0) + 1e-6


@settings(max_examples=150, deadline=None)
@given(proposals(), st.sampled_from([brk.DAILY_LOSS, brk.LOSS_STREAK, brk.DRAWDOWN, brk.SYMBOL_COOLDOWN]))
def test_tripped_breaker_never_lets_an_entry_through(case: tuple[Proposal, RiskContext], name: str) -> None:
    prop, c = case
    symbol = prop.symbol if name == brk.SYMBOL_COOLDOWN else None
    until = None if name == brk.DRAWDOWN else c.now_ms + 60_000
    book = brk.BreakerBook(trips=(brk.Trip(name, "test", c.now_ms - 1, until_ms=until, symbol=symbol),))
    v = evaluate(prop, replace(c, breakers=book))
    assert v.status == "rejected" and v.quantity == 0
    if evaluate(prop, c).accepted:  # otherwise rejected for its own reasons first
        assert f"breaker:{name}" in v.reasons


@settings(max_examples=300, deadline=None)
@given(st.floats(1e-6, 1e6), st.sampled_from([1e-5, 0.001, 0.01, 0.1, 0.5, 1.0]),
       st.sampled_from([Side.LONG, Side.SHORT]))
def test_rounding_never_increases_risk(x: float, step: float, side: Side) -> None:
    assert floor_to_step(x, step) <= x * (1 + 1e-12)
    entry = 1000.0
    stop = entry * (0.97 if side is Side.LONG else 1.03) + x % 1
    rs = round_stop(stop, side, step)
    assert abs(entry - rs) <= abs(entry - stop) + 1e-9  # stop rounded toward the entry
    tp = entry * (1.05 if side is Side.LONG else 0.95)
    rt = round_target(tp, side, step)
    assert abs(rt - entry) <= abs(tp - entry) + 1e-9
    assert math.isclose(rs / step, round(rs / step), abs_tol=1e-6)


def test_one_rounding_of_quantities_and_prices_for_sizing_every_venue_and_the_backtest() -> None:
    """Sizing floored quantities to 12 decimals, the order manager and the backtest's venue to
    the step's own decimals: two rules for one thing. Now one, in the domain."""
    import quorum.backtest.venue as backtest_venue
    import quorum.execution.orders as orders
    from quorum.domain.sizing import round_to_tick

    assert orders.floor_to_step is floor_to_step and backtest_venue.floor_to_step is floor_to_step
    assert orders.round_to_tick is round_to_tick and backtest_venue.round_to_tick is round_to_tick
    assert floor_to_step(0.3, 0.1) == 0.3 and floor_to_step(0.0069999, 0.001) == 0.006
    assert repr(floor_to_step(3 * 0.001, 0.001)) == "0.003"
    assert round_to_tick(3784.3289, 0.01) == 3784.33 and round_to_tick(0.123456789, 1e-5) == 0.12346
