"""Binance one-way liquidation price and bracket lookup by notional."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from quorum.domain.liquidation import (
    bracket_for,
    liquidation_price,
    liquidation_price_for,
    maint_amounts,
)
from quorum.domain.models import Side
from quorum.risk.brackets import BUNDLED, BracketTable, brackets_from_ccxt, fetch_brackets, make_brackets

# Binance's FAQ "How to Calculate Liquidation Price of USDⓈ-M Futures Contracts" (BTCUSDT table
# of that page): notional floor, cap, max leverage, MMR, and its published maintenance amounts.
FAQ_ROWS = [
    (0, 50_000, 125, 0.004), (50_000, 250_000, 100, 0.005), (250_000, 1_000_000, 50, 0.01),
    (1_000_000, 5_000_000, 20, 0.025), (5_000_000, 10_000_000, 10, 0.05),
    (10_000_000, 20_000_000, 5, 0.10), (20_000_000, 50_000_000, 4, 0.125),
    (50_000_000, 100_000_000, 3, 0.15), (100_000_000, 200_000_000, 2, 0.25),
]
FAQ_CUMS = [0, 50, 1_300, 16_300, 141_300, 641_300, 1_141_300, 2_391_300, 12_391_300]
FAQ = make_brackets(FAQ_ROWS)


def test_published_bracket_examples() -> None:
    # "if the position size of a BTCUSDT contract is 264,000 USDT, the MMR would be 1%"
    assert bracket_for(264_000, FAQ).maint_margin_rate == 0.01
    # "if the position size ... is 500,000 USDT, then the maintenance amount would be 1,300 USDT"
    assert bracket_for(500_000, FAQ).maint_amount == pytest.approx(1_300)
    # "Maintenance Amount on Level 3 = 250,000 * (1% - 0.5%) + 50 USDT = 1,300 USDT"
    assert maint_amounts([r[0] for r in FAQ_ROWS], [r[3] for r in FAQ_ROWS]) == pytest.approx(FAQ_CUMS)


def test_bracket_boundaries_by_notional() -> None:
    assert bracket_for(0, FAQ).maint_margin_rate == 0.004
    assert bracket_for(50_000, FAQ).maint_margin_rate == 0.004  # (floor, cap]
    assert bracket_for(50_000.01, FAQ).maint_margin_rate == 0.005
    assert bracket_for(5e9, FAQ).maint_margin_rate == 0.25  # beyond the last cap: the last
    with pytest.raises(ValueError):
        bracket_for(1.0, [])


def test_hand_derived_isolated_examples() -> None:
    # Long 1 BTC at 10,000 with 1,000 USDT isolated margin (10x), tier 1 (MMR 0.4 %, cum 0):
    # LP = (1000 + 0 − 10000) / (0.004 − 1) = 9036.1446
    assert liquidation_price("long", 1, 10_000, 1_000, 0.004, 0) == pytest.approx(9036.144578, rel=1e-9)
    # Short mirror: LP = (1000 + 0 + 10000) / (0.004 + 1) = 10956.1753
    assert liquidation_price(Side.SHORT, 1, 10_000, 1_000, 0.004, 0) == pytest.approx(10956.175299, rel=1e-9)
    # Tier 3 with a maintenance amount: 30 BTC at 10,000 (300k notional), 20x → WB 15,000
    lp = liquidation_price("long", 30, 10_000, 15_000, 0.01, 1_300)
    assert lp == pytest.approx((15_000 + 1_300 - 300_000) / (0.3 - 30))


def test_not_liquidatable_returns_zero() -> None:
    assert liquidation_price("long", 1, 10_000, 10_000, 0.004, 0) == 0.0  # 1x long, fully margined


def test_cross_adds_other_upnl_minus_their_maintenance() -> None:
    iso = liquidation_price("long", 1, 10_000, 1_000, 0.004, 0)
    cross = liquidation_price("long", 1, 10_000, 1_000, 0.004, 0, other_maint_margin=100, other_unrealized_pnl=600)
    assert cross == pytest.approx(liquidation_price("long", 1, 10_000, 1_500, 0.004, 0))
    assert cross < iso


def test_bad_input_raises_value_error() -> None:
    for args in [("up", 1, 1, 1, 0.004, 0), ("long", 0, 1, 1, 0.004, 0), ("long", 1, -5, 1, 0.004, 0),
                 ("long", 1, 1, float("nan"), 0.004, 0), ("long", 1, 1, 1, 1.0, 0)]:
        with pytest.raises(ValueError):
            liquidation_price(*args)  # type: ignore[arg-type]


@settings(max_examples=200, deadline=None)
@example(side="long", qty=30.0, entry=190_834.0, lev=125, other_mm=0.0, other_upnl=0.0)  # found by hypothesis
@given(
    side=st.sampled_from(["long", "short"]),
    qty=st.floats(0.001, 100),
    entry=st.floats(0.01, 200_000),
    lev=st.integers(1, 125),
    other_mm=st.floats(0, 500),
    other_upnl=st.floats(-500, 500),
)
def test_at_liquidation_margin_balance_equals_maintenance(side: str, qty: float, entry: float, lev: int,
                                                         other_mm: float, other_upnl: float) -> None:
    notional = qty * entry
    b = bracket_for(notional, BUNDLED["BTCUSDT"])
    lev = min(lev, b.max_leverage)  # Binance refuses leverage above the position's bracket maximum
    wb = notional / lev
    lp = liquidation_price(side, qty, entry, wb, b.maint_margin_rate, b.maint_amount, other_mm, other_upnl)
    s = 1 if side == "long" else -1
    if lp > 0:
        balance = wb - other_mm + other_upnl + s * qty * (lp - entry)
        maintenance = qty * lp * b.maint_margin_rate - b.maint_amount
        assert balance == pytest.approx(maintenance, rel=1e-7, abs=1e-6 * max(1.0, notional))
        # and it lies on the losing side of the entry whenever the position is leveraged > 1x
        if other_mm == 0 and other_upnl == 0 and lev > 1:
            assert s * (entry - lp) > 0


def test_liquidation_price_for_rechecks_bracket_at_liquidation() -> None:
    # a short whose liquidation notional lands in the next tier is recomputed with that tier
    brackets = BUNDLED["BTCUSDT"]
    lp = liquidation_price_for("short", 0.49, 100_000, 49_000 / 1.01, brackets)
    b2 = bracket_for(0.49 * lp, brackets)
    assert b2.maint_margin_rate == 0.005
    assert lp == pytest.approx(liquidation_price("short", 0.49, 100_000, 49_000 / 1.01, 0.005, 50))


def test_bundled_tables_are_consistent() -> None:
    for sym, brackets in BUNDLED.items():
        for prev, cur in itertools.pairwise(brackets):
            assert cur.notional_floor == prev.notional_cap, sym
            assert cur.maint_margin_rate > prev.maint_margin_rate, sym
            assert cur.max_leverage <= prev.max_leverage, sym
            # Binance's rule: continuity of the maintenance margin at every floor
            at = cur.notional_floor
            assert at * prev.maint_margin_rate - prev.maint_amount == pytest.approx(
                at * cur.maint_margin_rate - cur.maint_amount), sym
    table = BracketTable()
    assert table.for_symbol("BTC/USDT:USDT") == BUNDLED["BTCUSDT"]
    assert table.for_symbol("PEPEUSDT") == BUNDLED["DEFAULT"]


def test_loader_accepts_ccxt_leverage_tiers_shape() -> None:
    ccxt_tiers = {
        "SOL/USDT:USDT": [
            {"tier": 1, "currency": "USDT", "minNotional": 0, "maxNotional": 5000, "maintenanceMarginRate": 0.005,
             "maxLeverage": 75, "info": {"bracket": "1", "cum": "0.0"}},
            {"tier": 2, "currency": "USDT", "minNotional": 5000, "maxNotional": 50000,
             "maintenanceMarginRate": 0.01, "maxLeverage": 50, "info": {"bracket": "2", "cum": "25.0"}},
        ],
        "BAD/USDT:USDT": [{"minNotional": 0, "maxNotional": None, "maintenanceMarginRate": 0.01, "maxLeverage": 5}],
        # Binance's raw leverageBracket item shape is accepted too (cum derived when absent)
        "XRPUSDT": [
            {"bracket": 1, "initialLeverage": 75, "notionalCap": 10000, "notionalFloor": 0, "maintMarginRatio": 0.005},
            {"bracket": 2, "initialLeverage": 50, "notionalCap": 50000, "notionalFloor": 10000,
             "maintMarginRatio": 0.01},
        ],
    }
    out = brackets_from_ccxt(ccxt_tiers)
    assert set(out) == {"SOLUSDT", "XRPUSDT"}
    assert out["SOLUSDT"][1].maint_amount == 25.0 and out["SOLUSDT"][1].max_leverage == 50
    assert out["XRPUSDT"][1].maint_amount == pytest.approx(50.0)
    table = BracketTable(out)
    assert table.for_symbol("SOLUSDT")[0].maint_margin_rate == 0.005


class FakeTiersExchange:
    """Records the calls; answers like ccxt's binanceusdm.fetch_leverage_tiers (or fails)."""

    def __init__(self, reply: dict | None = None, error: Exception | None = None) -> None:
        self.calls: list[object] = []
        self.reply = reply or {}
        self.error = error

    async def fetch_leverage_tiers(self, symbols: object = None, params: object = None) -> dict:
        self.calls.append(symbols)
        if self.error:
            raise self.error
        return self.reply


async def test_fetch_brackets_uses_ccxt_and_falls_back_on_error() -> None:
    ok = FakeTiersExchange({"BTC/USDT:USDT": [
        {"minNotional": 0, "maxNotional": 10_000, "maintenanceMarginRate": 0.004, "maxLeverage": 125,
         "info": {"cum": "0"}}]})
    out = await fetch_brackets(ok, ["BTC/USDT:USDT"])
    assert ok.calls == [["BTC/USDT:USDT"]] and out["BTCUSDT"][0].notional_cap == 10_000
    broken = FakeTiersExchange(error=ConnectionError("boom"))
    assert await fetch_brackets(broken) == {}
    assert broken.calls == [None]
