"""`quorum report`'s per-day table comes from `statistics.breakdown(trades, "day")` and agrees with
the SQL view people query themselves (`win_rate_by_day`, UTC date of the exit)."""

from __future__ import annotations

import asyncpg
import pytest

from quorum.commands.report import build_report, format_report
from tests.integration.service.conftest import make_settings
from tests.integration.service.record import insert_trades


async def test_report_by_day_matches_the_sql_view(pool: asyncpg.Pool) -> None:
    pnls = [10.0, -4.0, 6.0, -2.0, -1.0, 8.0, 3.0, -5.0, 2.0]
    await insert_trades(pool, pnls, days=4)  # 9 trades over 4 days: some days hold 2 or 3 trades
    rep = await build_report(pool, make_settings(), "paper")
    view = {r["day"].isoformat(): r for r in await pool.fetch(
        "SELECT * FROM win_rate_by_day WHERE mode = 'paper' ORDER BY day")}
    assert list(rep["by_day"]) == list(view) and len(view) >= 3
    for day, g in rep["by_day"].items():
        assert g["n"] == view[day]["trades"] and g["wins"] == view[day]["wins"]
        assert g["net_pnl"] == pytest.approx(float(view[day]["net_pnl"]), abs=1e-4)
        assert g["expectancy"] == pytest.approx(float(view[day]["expectancy_usd"]), abs=1e-4)
    # the day table no longer hijacks the exit-reason one
    assert set(rep["by_exit_reason"]) == {"take_profit", "stop"}
    text = format_report(rep)
    assert "By day:" in text and all(day in text for day in view)
