"""Statistics: Wilson intervals, summary figures and breakdowns from known trades."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from quorum.domain.models import ClosedTrade, Side
from quorum.domain.statistics import (
    breakdown,
    compute_stats,
    daily_equity,
    max_drawdown_pct,
    monthly_returns,
    wilson_interval,
)

DAY = 86_400_000
T0 = 1_735_689_600_000  # 2025-01-01 00:00 UTC


def trade(net: float, *, symbol: str = "BTCUSDT", side: Side = Side.LONG, hour: int = 0,
          reason: str = "stop_loss", risk: float | None = 10.0, fees: float = 1.0,
          funding: float = 0.5, voters: tuple[str, ...] = ("rules",)) -> ClosedTrade:
    entry = T0 + hour * 3_600_000
    return ClosedTrade(symbol=symbol, side=side, entry_ms=entry, exit_ms=entry + 60_000,
                       entry_price=100.0, exit_price=101.0, quantity=1.0, leverage=2.0,
                       fees=fees, funding=funding, gross_pnl=net + fees + funding, net_pnl=net,
                       exit_reason=reason, risk_usd=risk, voters=voters)


def test_wilson_known_values() -> None:
    # Reference: Wilson 95 % for 8/10 is (0.4902, 0.9433).
    low, high = wilson_interval(8, 10)
    assert low == pytest.approx(0.4902, abs=1e-4)
    assert high == pytest.approx(0.9433, abs=1e-4)
    assert wilson_interval(0, 0) == (0.0, 1.0)
    low0, high0 = wilson_interval(0, 20)
    assert low0 == 0.0 and 0.15 < high0 < 0.17
    with pytest.raises(ValueError):
        wilson_interval(5, 3)


@settings(max_examples=200, deadline=None)
@given(st.integers(1, 5000), st.data())
def test_wilson_contains_point_estimate(n: int, data: st.DataObject) -> None:
    wins = data.draw(st.integers(0, n))
    low, high = wilson_interval(wins, n)
    assert 0.0 <= low <= wins / n <= high <= 1.0
    # Narrower with more data at the same proportion.
    low2, high2 = wilson_interval(wins * 4, n * 4)
    assert high2 - low2 <= high - low + 1e-12


def test_compute_stats_trade_figures() -> None:
    trades = [trade(20.0), trade(-10.0), trade(30.0), trade(-5.0, risk=None)]
    eq = [(T0 + DAY, 1020.0), (T0 + 2 * DAY, 1010.0), (T0 + 3 * DAY, 1040.0), (T0 + 4 * DAY, 1035.0)]
    s = compute_stats(trades, eq, 1000.0)
    assert s["trades"] == 4 and s["wins"] == 2 and s["losses"] == 2
    assert s["win_rate"] == 0.5
    assert s["win_rate_ci95"] == list(wilson_interval(2, 4))
    assert s["profit_factor"] == pytest.approx(50 / 15)
    assert s["expectancy_usd"] == pytest.approx(35 / 4)
    assert s["expectancy_r"] == pytest.approx((2.0 - 1.0 + 3.0) / 3)
    assert s["avg_win_usd"] == 25.0 and s["avg_loss_usd"] == -7.5
    assert s["fees_paid"] == 4.0 and s["funding_paid"] == 2.0
    assert s["final_equity"] == 1035.0
    assert s["total_return_pct"] == pytest.approx(3.5)
    assert s["max_drawdown_pct"] == pytest.approx((1020 - 1010) / 1020 * 100)
    assert s["worst_trade_usd"] == -10.0
    rets = [0.02, 1010 / 1020 - 1, 1040 / 1010 - 1, 1035 / 1040 - 1]
    mean = sum(rets) / 4
    sd = math.sqrt(sum((r - mean) ** 2 for r in rets) / 3)
    assert s["sharpe"] == pytest.approx(mean / sd * math.sqrt(365))
    assert s["sortino"] is not None and s["sortino"] > s["sharpe"]
    assert s["calmar"] is not None and s["calmar"] > 0


def test_compute_stats_empty_is_honest() -> None:
    s = compute_stats([], [], 500.0)
    assert s["trades"] == 0 and s["win_rate"] is None and s["profit_factor"] is None
    assert s["final_equity"] == 500.0 and s["total_return_pct"] == 0.0
    assert s["sharpe"] is None and s["win_rate_ci95"] == [0.0, 1.0]


def test_profit_factor_none_without_losses() -> None:
    assert compute_stats([trade(5.0)], [], 100.0)["profit_factor"] is None


def test_daily_equity_uses_last_value_per_day() -> None:
    eq = [(T0 + 10, 1.0), (T0 + 20, 2.0), (T0 + DAY + 5, 3.0)]
    d = daily_equity(eq, 0.5)
    assert d == [(T0 - DAY, 0.5), (T0, 2.0), (T0 + DAY, 3.0)]


def test_max_drawdown() -> None:
    assert max_drawdown_pct([100, 120, 60, 130, 65]) == pytest.approx(50.0)
    assert max_drawdown_pct([1, 2, 3]) == 0.0


def test_breakdowns() -> None:
    trades = [
        trade(10.0, symbol="BTCUSDT", side=Side.LONG, hour=3, reason="take_profit", voters=("rules", "openai:x")),
        trade(-4.0, symbol="ETHUSDT", side=Side.SHORT, hour=3, reason="stop_loss", voters=("openai:x",)),
        trade(6.0, symbol="ETHUSDT", side=Side.SHORT, hour=14, reason="take_profit", voters=()),
    ]
    by_sym = breakdown(trades, "symbol")
    assert by_sym["ETHUSDT"]["n"] == 2 and by_sym["ETHUSDT"]["wins"] == 1
    assert by_sym["ETHUSDT"]["win_rate_ci95"] == list(wilson_interval(1, 2))
    assert by_sym["ETHUSDT"]["profit_factor"] == pytest.approx(1.5)
    assert set(breakdown(trades, "side")) == {"long", "short"}
    assert breakdown(trades, "hour")["03"]["n"] == 2
    assert breakdown(trades, "exit_reason")["take_profit"]["wins"] == 2
    voters = breakdown(trades, "voter")
    assert voters["openai:x"]["n"] == 2 and voters["rules"]["n"] == 1 and voters["(none)"]["n"] == 1
    with pytest.raises(ValueError, match="unknown breakdown key"):
        breakdown(trades, "weekday")


def test_monthly_returns() -> None:
    jan = T0 + 5 * DAY
    feb = T0 + 40 * DAY
    m = monthly_returns([(jan, 1100.0), (feb, 990.0)], 1000.0)
    assert m == {"2025-01": pytest.approx(10.0), "2025-02": pytest.approx(-10.0)}
