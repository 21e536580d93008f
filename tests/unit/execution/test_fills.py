"""The pure fill model: fees, slippage, funding sign, gaps through stops, liquidation."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from quorum.domain.fills import ExitKind, FillModel, funding_times, gross_pnl
from quorum.domain.models import Side

M = FillModel(taker_fee_rate=0.0005, maker_fee_rate=0.0002, spread_bps=2.0, impact_bps_per_100k=4.0)


def test_from_pct_reads_settings_percentages():
    m = FillModel.from_pct(0.05, 0.02, 1.0, 2.0)
    assert m.taker_fee_rate == pytest.approx(0.0005) and m.maker_fee_rate == pytest.approx(0.0002)


def test_fees_taker_and_maker():
    assert M.fee(10_000.0) == pytest.approx(5.0)
    assert M.fee(10_000.0, "maker") == pytest.approx(2.0)
    assert M.fee(-10_000.0) == pytest.approx(5.0)


def test_slippage_is_half_spread_plus_size_impact():
    # 1 bps half-spread + 4 bps per 100k × 0.5 (50k notional) = 3 bps
    assert M.market_price("buy", 100.0, 50_000.0) == pytest.approx(100.0 * 1.0003)
    assert M.market_price("sell", 100.0, 50_000.0) == pytest.approx(100.0 * 0.9997)
    small, big = M.market_price("buy", 100.0, 1_000.0), M.market_price("buy", 100.0, 1_000_000.0)
    assert 100.0 < small < big


def test_bad_inputs_are_named():
    with pytest.raises(ValueError, match="order side"):
        M.market_price("hold", 100.0, 1.0)
    with pytest.raises(ValueError, match="reference price"):
        M.market_price("buy", 0.0, 1.0)


def test_funding_positive_rate_longs_pay_shorts_receive():
    assert M.funding_payment(Side.LONG, 2.0, 100.0, 0.0001) == pytest.approx(0.02)
    assert M.funding_payment(Side.SHORT, 2.0, 100.0, 0.0001) == pytest.approx(-0.02)
    assert M.funding_payment(Side.LONG, 2.0, 100.0, -0.0001) == pytest.approx(-0.02)


def test_stop_gap_fills_at_the_open_the_worse_price():
    assert M.stop_fill_price(Side.LONG, 95.0, 93.0, 96.0, 92.0) == 93.0  # gap down through a long's stop
    assert M.stop_fill_price(Side.LONG, 95.0, 98.0, 99.0, 94.0) == 95.0  # touched inside the bar
    assert M.stop_fill_price(Side.LONG, 95.0, 98.0, 99.0, 96.0) is None
    assert M.stop_fill_price(Side.SHORT, 105.0, 107.0, 108.0, 104.0) == 107.0  # gap up through a short's stop
    assert M.stop_fill_price(Side.SHORT, 105.0, 100.0, 105.5, 99.0) == 105.0


def test_take_profit_gap_fills_at_the_open():
    assert M.take_profit_fill_price(Side.LONG, 110.0, 112.0, 113.0, 111.0) == 112.0
    assert M.take_profit_fill_price(Side.SHORT, 90.0, 95.0, 96.0, 89.0) == 90.0


def test_bar_exit_stop_before_take_profit_when_both_touched():
    ex = M.bar_exit(Side.LONG, 100.0, 111.0, 94.0, stop_price=95.0, take_profit=110.0)
    assert ex is not None and ex.kind is ExitKind.STOP and ex.reference_price == 95.0 and not ex.gapped


def test_bar_exit_gap_through_stop_is_worse_and_flagged():
    ex = M.bar_exit(Side.LONG, 90.0, 91.0, 89.0, stop_price=95.0, liquidation_price=80.0)
    assert ex is not None and ex.kind is ExitKind.STOP and ex.reference_price == 90.0 and ex.gapped
    price, fee = M.exit_fill(Side.LONG, ex, 1.0)
    assert price < 90.0 and fee == pytest.approx(price * 0.0005)


def test_liquidation_at_liquidation_price_with_fee():
    ex = M.bar_exit(Side.LONG, 100.0, 101.0, 70.0, stop_price=None, liquidation_price=80.0)
    assert ex is not None and ex.kind is ExitKind.LIQUIDATION and ex.reference_price == 80.0
    price, fee = M.exit_fill(Side.LONG, ex, 2.0)
    assert price == 80.0 and fee == pytest.approx(2.0 * 80.0 * 0.0005)
    # a gap through both the stop and the liquidation price: liquidation
    ex2 = M.bar_exit(Side.SHORT, 130.0, 131.0, 125.0, stop_price=110.0, liquidation_price=120.0)
    assert ex2 is not None and ex2.kind is ExitKind.LIQUIDATION
    assert M.liquidation_hit(Side.SHORT, 120.0, 119.0, 100.0) is False


def test_gross_pnl_and_funding_times():
    assert gross_pnl(Side.SHORT, 2.0, 100.0, 90.0) == pytest.approx(20.0)
    h8 = 8 * 3_600_000
    assert funding_times(0, 3 * h8) == [h8, 2 * h8, 3 * h8]
    assert funding_times(h8, h8) == []


@settings(max_examples=200, deadline=None)
@given(side=st.sampled_from([Side.LONG, Side.SHORT]), stop=st.floats(50, 150), o=st.floats(50, 150),
       a=st.floats(50, 150), b=st.floats(50, 150))
def test_stop_fill_is_never_better_than_the_stop(side, stop, o, a, b):
    high, low = max(o, a, b), min(o, a, b)
    px = M.stop_fill_price(side, stop, o, high, low)
    if px is not None:
        assert (px - stop) * side.sign <= 1e-9  # a long sells at or below its stop
        assert low - 1e-9 <= px <= high + 1e-9
