"""`breakdown(trades, "day")`: groups by the UTC date of the EXIT (not the entry)."""

from __future__ import annotations

import pytest

from quorum.domain.models import ClosedTrade, Side
from quorum.domain.statistics import BREAKDOWN_KEYS, GROUP_KEYS, all_breakdowns, breakdown, wilson_interval

HOUR = 3_600_000
T0 = 1_759_708_800_000  # 2025-10-06 00:00 UTC


def trade(net: float, entry_ms: int, exit_ms: int) -> ClosedTrade:
    return ClosedTrade(symbol="BTCUSDT", side=Side.LONG, entry_ms=entry_ms, exit_ms=exit_ms, entry_price=100.0,
                       exit_price=101.0, quantity=1.0, leverage=2.0, fees=0.5, funding=0.0,
                       gross_pnl=net + 0.5, net_pnl=net, exit_reason="stop_loss", risk_usd=10.0, voters=("rules",))


def test_day_groups_by_utc_exit_date() -> None:
    trades = [
        trade(10.0, T0 + 1 * HOUR, T0 + 2 * HOUR),                # 2025-10-06
        trade(-4.0, T0 + 23 * HOUR, T0 + 24 * HOUR),               # entered the 6th, exits 00:00 on the 7th
        trade(6.0, T0 + 24 * HOUR - 60_000, T0 + 24 * HOUR - 1),  # last millisecond of the 6th
        trade(-2.0, T0 + 30 * HOUR, T0 + 31 * HOUR),               # 2025-10-07
        trade(3.0, T0 + 100 * HOUR, T0 + 101 * HOUR),              # 2025-10-10
    ]
    days = breakdown(trades, "day")
    assert list(days) == ["2025-10-06", "2025-10-07", "2025-10-10"]  # sorted, ISO dates
    assert days["2025-10-06"]["n"] == 2 and days["2025-10-06"]["wins"] == 2
    assert days["2025-10-07"]["n"] == 2 and days["2025-10-07"]["losses"] == 2
    assert days["2025-10-07"]["win_rate"] == 0.0
    assert days["2025-10-07"]["win_rate_ci95"] == list(wilson_interval(0, 2))
    assert days["2025-10-07"]["net_pnl"] == pytest.approx(-6.0)
    assert days["2025-10-10"]["expectancy"] == pytest.approx(3.0)
    assert sum(g["n"] for g in days.values()) == len(trades)


def test_day_is_accepted_but_not_in_the_backtest_tables() -> None:
    assert "day" in GROUP_KEYS and "day" not in BREAKDOWN_KEYS
    assert set(all_breakdowns([trade(1.0, T0, T0 + HOUR)])) == set(BREAKDOWN_KEYS)
    assert breakdown([], "day") == {}
    with pytest.raises(ValueError, match="allowed: .*day"):
        breakdown([], "week")
