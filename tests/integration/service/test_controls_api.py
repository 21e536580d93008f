"""Operator controls through the token-protected API (ASGI transport, real Postgres): each route
refuses without the token, records who/why/when in `operator_actions`, and /status shows them."""

from __future__ import annotations

import asyncpg
import httpx
import pytest

from quorum.engine.runtime import RuntimeState
from quorum.risk.gate import check_gate
from quorum.store.state import AlertRepository
from tests.integration.service.conftest import API_TOKEN, make_settings
from tests.integration.service.record import insert_trades
from tests.integration.service.test_readiness import PASSING

AUTH = {"Authorization": f"Bearer {API_TOKEN}"}
ROUTES = ["/control/breakers/drawdown/reset", "/control/positions/BTCUSDT/close", "/control/symbols/BTCUSDT/pause",
          "/control/symbols/BTCUSDT/resume", "/control/alerts/1/ack", "/control/alerts/1/resolve"]


async def _open_position(pool: asyncpg.Pool, symbol: str = "BTCUSDT") -> None:
    await pool.execute(
        """INSERT INTO positions (id, mode, symbol, side, status, entry_price, quantity, initial_quantity,
               leverage, initial_stop, stop_price, peak_price, opened_at)
           VALUES ($1, 'paper', $2, 'long', 'open', 100000, 0.01, 0.01, 3, 97000, 97000, 100000, now())""",
        f"p-{symbol}", symbol)


@pytest.mark.parametrize("route", ROUTES)
async def test_every_control_needs_the_token(client: httpx.AsyncClient, pool: asyncpg.Pool, route: str) -> None:
    await AlertRepository(pool, "paper").raise_alert("critical", "kill_switch", "killed")
    await _open_position(pool)
    assert (await client.post(route)).status_code == 401
    assert (await client.post(route, headers={"Authorization": "Bearer wrong"})).status_code == 403
    assert (await client.post(route, headers={"Authorization": API_TOKEN})).status_code == 401
    assert await pool.fetchval("SELECT count(*) FROM operator_actions") == 0
    assert await pool.fetchval("SELECT resolved_at IS NULL AND acknowledged_at IS NULL FROM alerts")


async def test_resolving_an_alert_over_the_api_unblocks_the_gate(client: httpx.AsyncClient,
                                                                 pool: asyncpg.Pool) -> None:
    await insert_trades(pool, PASSING, days=35)
    aid = await AlertRepository(pool, "paper").raise_alert("critical", "kill_switch", "kill switch engaged")
    assert not (await check_gate(pool, make_settings(), "paper")).passed
    r = await client.post(f"/control/alerts/{aid}/resolve", headers=AUTH,
                          json={"who": "dana", "reason": "venue checked, flat"})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["ok"] and body["action"]["status"] == "done" and body["action"]["surface"] == "api"
    assert body["action"]["who"] == "dana" and body["action"]["target"] == str(aid)
    assert (await check_gate(pool, make_settings(), "paper")).passed
    status = (await client.get("/status")).json()
    assert status["open_alerts"] == []
    assert status["operator_actions"][0]["action"] == "resolve_alert"
    assert status["operator_actions"][0]["reason"] == "venue checked, flat"
    assert (await client.post("/control/alerts/999/resolve", headers=AUTH)).status_code == 404


async def test_engine_controls_are_recorded_and_left_pending_without_an_engine(
        client: httpx.AsyncClient, pool: asyncpg.Pool) -> None:
    await _open_position(pool)
    r = await client.post("/control/positions/btcusdt/close", headers=AUTH, json={"reason": "news", "wait_s": 0.2})
    assert r.status_code == 202, r.text
    assert r.json()["action"]["status"] == "pending" and r.json()["action"]["target"] == "BTCUSDT"
    assert r.json()["action"]["who"].startswith("api:")
    r = await client.post("/control/breakers/cooldown/reset", headers=AUTH, json={"symbol": "ETHUSDT", "wait_s": 0})
    assert r.status_code == 202 and r.json()["action"]["target"] == "symbol_cooldown:ETHUSDT"
    r = await client.post("/control/symbols/SOLUSDT/pause", headers=AUTH, json={"wait_s": 0})
    assert r.status_code == 202
    for route, body, code in [("/control/positions/ETHUSDT/close", {}, 404),
                              ("/control/breakers/margin/reset", {}, 400),
                              ("/control/symbols/BTC-USDT/pause", {}, 400),
                              ("/control/symbols/BTCUSDT/pause", {"wait_s": "soon"}, 400),
                              ("/control/symbols/BTCUSDT/pause", {"who": 7}, 400)]:
        r = await client.post(route, headers=AUTH, json=body)
        assert r.status_code == code, (route, r.text)
    r = await client.post("/control/symbols/BTCUSDT/pause", headers={**AUTH, "content-type": "application/json"},
                          content=b"[1,")
    assert r.status_code == 400
    rows = await pool.fetch("SELECT action, target, status, surface FROM operator_actions ORDER BY id")
    assert [tuple(r) for r in rows] == [("close_position", "BTCUSDT", "pending", "api"),
                                        ("reset_breaker", "symbol_cooldown:ETHUSDT", "pending", "api"),
                                        ("pause_symbol", "SOLUSDT", "pending", "api")]
    status = (await client.get("/status")).json()
    assert [a["action"] for a in status["operator_actions"]] == ["pause_symbol", "reset_breaker", "close_position"]


async def test_pause_resume_kill_are_recorded(client: httpx.AsyncClient, runtime: RuntimeState,
                                              pool: asyncpg.Pool) -> None:
    async def hook() -> dict[str, object]:
        return {}

    runtime.on_kill = hook
    assert (await client.post("/control/pause", headers=AUTH, json={"who": "erin"})).status_code == 200
    assert (await client.post("/control/resume", headers=AUTH)).status_code == 200
    assert (await client.post("/control/kill", headers=AUTH, json={"who": "erin (quorum kill)"})).status_code == 200
    rows = await pool.fetch("SELECT action, who, surface, status FROM operator_actions ORDER BY id")
    assert [(r["action"], r["who"], r["surface"], r["status"]) for r in rows] == [
        ("pause", "erin", "api", "done"), ("resume", rows[1]["who"], "api", "done"),
        ("kill", "erin (quorum kill)", "api", "done")]
    assert rows[1]["who"].startswith("api:")
