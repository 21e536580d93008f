"""Operator controls through `quorum ...` against the real Postgres: alerts are acknowledged and
resolved at once (a resolved critical alert stops blocking `quorum readiness`, the row stays);
engine controls are recorded and left for the running engine; bad targets are one line, exit 2."""

from __future__ import annotations

import asyncio
import json

import asyncpg
import pytest

from quorum.risk.gate import check_gate
from quorum.store.controls import ControlStore
from quorum.store.state import AlertRepository
from tests.integration.service.conftest import make_settings
from tests.integration.service.record import insert_trades
from tests.integration.service.test_readiness import PASSING, _cli


async def test_resolving_the_kill_alert_unblocks_the_gate_and_keeps_history(
        pool: asyncpg.Pool, pg_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    await insert_trades(pool, PASSING, days=35)
    aid = await AlertRepository(pool, "paper").raise_alert("critical", "kill_switch",
                                                           "kill switch engaged by operator: kill requested")
    report = await check_gate(pool, make_settings(), "paper")
    assert [c.name for c in report.failures] == ["critical_alerts"]
    code, out = await asyncio.to_thread(_cli, pg_url, monkeypatch, "alerts")
    assert code == 0 and f"#{aid} critical" in out and "kill_switch" in out

    code, out = await asyncio.to_thread(_cli, pg_url, monkeypatch, "alerts", "ack", str(aid), "--who", "alice")
    assert code == 0 and "ack_alert" in out and ": done" in out, out
    assert not (await check_gate(pool, make_settings(), "paper")).passed  # seen is not dealt with
    code, out = await asyncio.to_thread(_cli, pg_url, monkeypatch, "alerts", "resolve", str(aid), "--who",
                                        "alice", "--why", "flattened on purpose; checked the venue")
    assert code == 0 and ": done" in out, out
    assert (await check_gate(pool, make_settings(), "paper")).passed
    code, out = await asyncio.to_thread(_cli, pg_url, monkeypatch, "readiness")
    assert code == 0, out

    row = await pool.fetchrow("SELECT * FROM alerts WHERE id = $1", aid)  # history stays
    assert row["resolved_at"] is not None and row["resolved_by"] == "alice"
    assert row["acknowledged_by"] == "alice" and row["resolution"].startswith("flattened on purpose")
    code, out = await asyncio.to_thread(_cli, pg_url, monkeypatch, "alerts", "resolve", str(aid))
    assert code == 0 and "noop (already resolved)" in out
    actions = await ControlStore(pool, "paper").recent()
    assert [(a["action"], a["status"], a["who"], a["surface"]) for a in actions][:3] == [
        ("resolve_alert", "noop", actions[0]["who"], "cli"), ("resolve_alert", "done", "alice", "cli"),
        ("ack_alert", "done", "alice", "cli")]


async def test_engine_controls_are_queued_with_who_why_and_surface(
        pool: asyncpg.Pool, pg_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    await pool.execute(
        """INSERT INTO positions (id, mode, symbol, side, status, entry_price, quantity, initial_quantity,
               leverage, initial_stop, stop_price, peak_price, opened_at)
           VALUES ('p1', 'paper', 'BTCUSDT', 'long', 'open', 100000, 0.01, 0.01, 3, 97000, 97000, 100000, now())""")
    code, out = await asyncio.to_thread(_cli, pg_url, monkeypatch, "close", "btcusdt", "--who", "bob", "--why",
                                        "news", "--wait", "0.3", "--json")
    assert code == 0, out
    row = json.loads(out[out.index("{"):])
    assert (row["action"], row["target"], row["status"], row["who"], row["reason"]) == (
        "close_position", "BTCUSDT", "pending", "bob", "news")
    code, out = await asyncio.to_thread(_cli, pg_url, monkeypatch, "reset-breaker", "cooldown", "--symbol",
                                        "ethusdt", "--wait", "0")
    assert code == 0 and "reset_breaker symbol_cooldown:ETHUSDT: pending (queued" in out, out
    code, out = await asyncio.to_thread(_cli, pg_url, monkeypatch, "pause", "SOLUSDT", "--wait", "0")
    assert code == 0 and "pause_symbol SOLUSDT: pending" in out
    pending = await ControlStore(pool, "paper").pending()
    assert [(p["action"], p["target"], p["surface"]) for p in pending] == [
        ("close_position", "BTCUSDT", "cli"), ("reset_breaker", "symbol_cooldown:ETHUSDT", "cli"),
        ("pause_symbol", "SOLUSDT", "cli")]
    code, out = await asyncio.to_thread(_cli, pg_url, monkeypatch, "actions")
    assert code == 0 and "bob via cli: #1 close_position BTCUSDT: pending" in out and "— news" in out, out


@pytest.mark.parametrize("args,message", [
    (("reset-breaker", "margin"), "unknown breaker 'margin'"),
    (("reset-breaker", "symbol_cooldown"), "needs a symbol"),
    (("close", "ETHUSDT"), "no open paper position on ETHUSDT"),
    (("pause", "BTC/USDT"), "not a symbol"),
    (("alerts", "resolve", "999"), "no alert 999"),
    (("alerts", "resolve"), "needs an alert id"),
])
async def test_bad_targets_are_one_line_exit_2_and_not_recorded(
        pool: asyncpg.Pool, pg_url: str, monkeypatch: pytest.MonkeyPatch, args: tuple[str, ...],
        message: str) -> None:
    code, out = await asyncio.to_thread(_cli, pg_url, monkeypatch, *args)
    assert code == 2, out
    assert message in out and "Traceback" not in out and len(out.strip().splitlines()) == 1, out
    assert await pool.fetchval("SELECT count(*) FROM operator_actions") == 0
