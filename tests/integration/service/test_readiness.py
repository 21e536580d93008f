"""`quorum readiness` / the live-start gate and `quorum report` on records in Postgres."""

from __future__ import annotations

import asyncio
import json

import asyncpg
import httpx
import pytest
from typer.testing import CliRunner

from quorum.api.app import create_app
from quorum.cli import app as cli_app
from quorum.commands.report import build_report, win_rate_rows
from quorum.commands.service import GateRefused, authorize_live_start
from quorum.domain.statistics import wilson_interval
from quorum.engine.runtime import RuntimeState
from quorum.logging import configure_logging
from quorum.risk.gate import check_gate, format_gate
from tests.integration.service.conftest import make_settings
from tests.integration.service.record import insert_trades

PASSING = [12.0] * 80 + [-6.0] * 40  # 66.7 % wins, break-even 1/3, PF 4


def _cli(pg_url: str, monkeypatch: pytest.MonkeyPatch, *args: str) -> tuple[int, str]:
    monkeypatch.setenv("DATABASE_URL", pg_url)
    monkeypatch.setenv("LOG_LEVEL", "WARNING")
    try:
        result = CliRunner().invoke(cli_app, list(args))
    finally:
        configure_logging(level="INFO", fmt="json")  # the CLI bound logging to CliRunner's (closed) stderr
    try:
        err = result.stderr
    except ValueError:
        err = ""
    return result.exit_code, result.stdout + err


async def test_readiness_fails_on_short_record_saying_why(pool: asyncpg.Pool, pg_url: str,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    await insert_trades(pool, [5.0, -3.0, 4.0, -2.0, 6.0], days=3)
    report = await check_gate(pool, make_settings(), "paper")
    assert not report.passed
    failing = {c.name for c in report.failures}
    assert {"days", "trades", "win_rate_lower_bound"} <= failing
    text = format_gate(report)
    assert "FAIL  days" in text and "5 closed trades (need 100)" in text
    assert "go-live gate: FAILED" in text
    code, out = await asyncio.to_thread(_cli, pg_url, monkeypatch, "readiness")
    assert code == 1, out
    assert "FAIL  trades" in out and "need 100" in out and "break-even" in out


async def test_readiness_passes_on_synthetic_strong_record(pool: asyncpg.Pool, pg_url: str,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    await insert_trades(pool, PASSING, days=35)
    report = await check_gate(pool, make_settings(), "paper")
    assert report.passed, format_gate(report)
    crit = {c.name: c for c in report.criteria}
    assert crit["days"].value == pytest.approx(35 - 35 / 120 / 2, abs=0.01)  # first open → last close
    assert crit["win_rate_lower_bound"].value == round(wilson_interval(80, 120)[0], 4)
    code, out = await asyncio.to_thread(_cli, pg_url, monkeypatch, "readiness", "--json")
    assert code == 0, out
    assert json.loads(out)["passed"] is True


async def test_open_critical_alert_blocks_the_gate(pool: asyncpg.Pool) -> None:
    await insert_trades(pool, PASSING, days=35)
    await pool.execute("""INSERT INTO alerts (mode, severity, kind, message)
                          VALUES ('paper', 'critical', 'stop_missing', 'no stop on BTCUSDT')""")
    report = await check_gate(pool, make_settings(), "paper")
    assert [c.name for c in report.failures] == ["critical_alerts"]


async def test_backtest_records_do_not_count_for_the_gate(pool: asyncpg.Pool) -> None:
    await insert_trades(pool, PASSING, days=35, mode="backtest")
    report = await check_gate(pool, make_settings(), "paper")
    assert not report.passed and next(c for c in report.criteria if c.name == "trades").value == 0


async def test_live_start_refused_then_overridden_and_shown_on_status(pool: asyncpg.Pool) -> None:
    settings = make_settings(trading_mode="live")
    await insert_trades(pool, [5.0, -3.0], days=1)
    with pytest.raises(GateRefused, match="trades"):
        await authorize_live_start(pool, settings, override=False, who=None, why=None)
    with pytest.raises(GateRefused, match="--who"):
        await authorize_live_start(pool, settings, override=True, who="alice", why=" ")
    assert await pool.fetchval("SELECT count(*) FROM live_overrides") == 0
    _, record = await authorize_live_start(pool, settings, override=True, who="alice", why="small test size")
    assert record is not None and record["who"] == "alice" and "trades" in record["failing"]
    row = await pool.fetchrow("SELECT who, why, gate_report FROM live_overrides")
    assert row["who"] == "alice" and row["why"] == "small test size" and row["gate_report"]["passed"] is False
    runtime = RuntimeState(mode="live")  # /status shows the recorded override (from Postgres here)
    app = create_app(settings, runtime, pool, None)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as c:
        body = (await c.get("/status")).json()
    assert body["live_override"]["who"] == "alice" and body["live_override"]["why"] == "small test size"


async def test_live_start_allowed_when_gate_passes(pool: asyncpg.Pool) -> None:
    await insert_trades(pool, PASSING, days=35)
    report, record = await authorize_live_start(pool, make_settings(trading_mode="live"), override=False,
                                                who=None, why=None)
    assert report.passed and record is None


async def test_report_uses_statistics_and_matches_sql_view(pool: asyncpg.Pool, pg_url: str,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    pnls = [10.0, -4.0, 6.0, -2.0, -1.0, 8.0]
    await insert_trades(pool, pnls, days=3)
    rep = await build_report(pool, make_settings(), "paper")
    s = rep["summary"]
    assert s["trades"] == 6 and s["wins"] == 3
    assert s["win_rate_ci95"] == list(wilson_interval(3, 6))
    assert s["profit_factor"] == pytest.approx(24 / 7)
    assert s["final_equity"] == pytest.approx(1000 + sum(pnls))
    assert set(rep["by_symbol"]) == {"BTCUSDT", "ETHUSDT"} and set(rep["by_side"]) == {"long", "short"}
    assert rep["by_model"]["rules"]["n"] == 6
    assert sum(g["n"] for g in rep["by_day"].values()) == 6 and all(len(d) == 10 for d in rep["by_day"])
    view = (await win_rate_rows(pool))[0]
    assert view["trades"] == s["trades"] and float(view["win_rate"]) == pytest.approx(0.5)
    assert float(view["profit_factor"]) == pytest.approx(s["profit_factor"], abs=1e-4)
    code, out = await asyncio.to_thread(_cli, pg_url, monkeypatch, "report")
    assert code == 0, out
    assert "win rate 50.0% (n=6, 95% CI" in out and "By symbol:" in out and "SELECT * FROM win_rate;" in out
    code, out = await asyncio.to_thread(_cli, pg_url, monkeypatch, "report", "--json")
    assert code == 0 and json.loads(out)["summary"]["trades"] == 6


async def test_quorum_run_live_refuses_on_failing_gate(pool: asyncpg.Pool, pg_url: str,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    await insert_trades(pool, [5.0, -3.0, 4.0], days=2)
    for k, v in {"TRADING_MODE": "live", "BINANCE_API_KEY": "k-123456", "BINANCE_API_SECRET": "s-123456",
                 "API_TOKEN": "t-123456"}.items():
        monkeypatch.setenv(k, v)
    code, out = await asyncio.to_thread(_cli, pg_url, monkeypatch, "run")
    assert code == 1, out
    assert "TRADING_MODE=live refuses to start: the go-live gate fails" in out and "--override-gate" in out
    code, out = await asyncio.to_thread(_cli, pg_url, monkeypatch, "run", "--override-gate", "--who", "bob")
    assert code == 1 and "--why" in out
    assert await pool.fetchval("SELECT count(*) FROM live_overrides") == 0
