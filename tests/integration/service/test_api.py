"""The API over HTTP (ASGI transport and a real uvicorn on 127.0.0.1)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import asyncpg
import httpx
from prometheus_client.parser import text_string_to_metric_families

from quorum import metrics
from quorum.api.app import create_app
from quorum.api.health import IoChecks
from quorum.api.server import bound_port, start_server, stop_server
from quorum.cache import MemoryTTLCache
from quorum.config import Settings
from quorum.engine.runtime import RuntimeState, wall_ms
from quorum.store.db import create_pool
from tests.conftest import ADMIN_URL, _db_url
from tests.integration.service.conftest import API_TOKEN, make_settings

AUTH = {"Authorization": f"Bearer {API_TOKEN}"}


async def test_health_ok_shape(client: httpx.AsyncClient) -> None:
    r = await client.get("/health")
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["status"] == "ok" and body["failing"] == []
    assert set(body["components"]) == {"database", "cache", "market_data", "models", "scan", "breakers"}
    assert all(c["ok"] for c in body["components"].values())
    assert body["components"]["models"]["voters"]["rules"]["ok"] is True


async def test_health_503_when_scan_stale(client: httpx.AsyncClient, runtime: RuntimeState) -> None:
    runtime.last_scan_ms = wall_ms() - 10 * 60_000  # 10 min ago, interval 60 s
    r = await client.get("/health")
    assert r.status_code == 503
    assert r.json()["failing"] == ["scan"]
    assert "last scan" in r.json()["components"]["scan"]["detail"]


async def test_health_503_when_breaker_tripped_or_paused(client: httpx.AsyncClient, runtime: RuntimeState) -> None:
    runtime.set_breaker("daily_loss", "day P&L -5.2% <= -5%")
    r = await client.get("/health")
    assert r.status_code == 503 and r.json()["failing"] == ["breakers"]
    assert r.json()["components"]["breakers"]["tripped"] == {"daily_loss": "day P&L -5.2% <= -5%"}
    runtime.set_breaker("daily_loss", None)
    runtime.set_breaker("symbol_cooldown:BTCUSDT", "stop_loss on BTCUSDT")  # one symbol only: still trading
    r = await client.get("/health")
    assert r.status_code == 200 and "cool-down" in r.json()["components"]["breakers"]["detail"]
    await runtime.pause()
    r = await client.get("/health")
    assert r.status_code == 503 and "paused" in r.json()["components"]["breakers"]["detail"]


async def test_health_503_when_model_providers_fail(runtime: RuntimeState, pool: asyncpg.Pool) -> None:
    settings = make_settings(models="openai:gpt-x,anthropic:claude-y", min_voters=2)
    runtime.providers = ["openai:gpt-x", "anthropic:claude-y"]
    runtime.mark_provider("openai:gpt-x", True)
    runtime.mark_provider("anthropic:claude-y", False, "HTTP 529 overloaded")
    app = create_app(settings, runtime, pool, MemoryTTLCache())
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as c:
        r = await c.get("/health")
    assert r.status_code == 503 and r.json()["failing"] == ["models"]
    voters = r.json()["components"]["models"]["voters"]
    assert voters["openai:gpt-x"]["ok"] is True and voters["anthropic:claude-y"]["ok"] is False
    assert voters["anthropic:claude-y"]["last_error"] == "HTTP 529 overloaded"


async def test_health_503_when_database_is_dropped(settings: Settings, runtime: RuntimeState) -> None:
    """A pool on a database that is then dropped (the server itself keeps running)."""
    name = f"quorum_drop_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(ADMIN_URL)
    await admin.execute(f'CREATE DATABASE "{name}"')
    pool = await create_pool(_db_url(name), min_size=1, max_size=2)
    app = create_app(settings, runtime, pool, MemoryTTLCache(), check_ttl_s=0)
    try:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as c:
            assert (await c.get("/health")).status_code == 200
            await admin.execute(f'DROP DATABASE "{name}" WITH (FORCE)')
            r = await c.get("/health")
            assert r.status_code == 503
            assert r.json()["failing"] == ["database"]
            assert "unreachable" in r.json()["components"]["database"]["detail"]
            # /status still answers and says the database is unavailable
            s = await c.get("/status")
            assert s.status_code == 200
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()
        pool.terminate()


async def test_health_503_with_closed_pool(settings: Settings, runtime: RuntimeState, pg_url: str) -> None:
    pool = await create_pool(pg_url, min_size=1, max_size=2)
    await pool.close()
    app = create_app(settings, runtime, pool, MemoryTTLCache())
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as c:
        r = await c.get("/health")
    assert r.status_code == 503 and r.json()["failing"] == ["database"]


async def test_status_shape_from_engine_state(client: httpx.AsyncClient, runtime: RuntimeState) -> None:
    runtime.equity, runtime.day_pnl = 1012.5, 12.5
    runtime.positions = [{"symbol": "BTCUSDT", "side": "long", "entry_price": 100000.0, "mark_price": 101000.0,
                          "quantity": 0.01, "leverage": 3, "pnl": 10.0, "stop_price": 98000.0,
                          "liquidation_price": 67000.0, "trailing_active": True, "trailing_stop": 99500.0}]
    runtime.set_breaker("loss_streak", "4 losses in a row")
    runtime.record_decision({"symbol": "BTCUSDT", "action": "LONG", "confidence": 0.7,
                             "votes": [{"voter": "rules", "action": "LONG", "confidence": 0.7}]})
    body = (await client.get("/status")).json()
    assert body["mode"] == "paper" and body["source"] == "engine"
    assert body["equity"] == 1012.5 and body["day_pnl"] == 12.5
    pos = body["open_positions"][0]
    assert pos["entry_price"] == 100000.0 and pos["liquidation_price"] == 67000.0 and pos["trailing_active"]
    assert pos["take_profit"] is None  # missing keys are null, never absent
    assert body["breakers"] == [{"name": "loss_streak", "reason": "4 losses in a row"}]
    assert body["last_decisions"][0]["votes"][0]["voter"] == "rules"
    assert body["uptime_s"] >= 0


async def test_status_from_database_when_no_engine(settings: Settings, pool: asyncpg.Pool) -> None:
    runtime = RuntimeState(mode="paper")
    now = datetime.now(UTC)
    await pool.execute(
        """INSERT INTO positions (id, mode, symbol, side, status, entry_price, quantity, initial_quantity,
               leverage, initial_stop, stop_price, peak_price, liquidation_price, opened_at)
           VALUES ('p1','paper','ETHUSDT','short','open',3000,1,1,2,3100,3050,2900,4400,$1)""", now)
    await pool.execute("INSERT INTO equity_snapshots (mode, at, equity, wallet_balance) VALUES ('paper',$1,990,1000)",
                       now)
    await pool.execute("""INSERT INTO decisions (id, mode, symbol, at, analyst, action, confidence)
                          VALUES ('d1','paper','ETHUSDT',$1,'rules','SHORT',0.8)""", now)
    await pool.execute("""INSERT INTO model_votes (decision_id, symbol, voter, provider, model, prompt_version,
                          action, confidence) VALUES ('d1','ETHUSDT','rules','rules','rules','v1','SHORT',0.8)""")
    await pool.execute("""INSERT INTO breaker_events (mode, breaker, event, reason)
                          VALUES ('paper','drawdown','trip','drawdown 21% >= 20%')""")
    app = create_app(settings, runtime, pool, None)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as c:
        body = (await c.get("/status")).json()
    assert body["source"] == "database" and body["equity"] == 990.0
    assert body["open_positions"][0]["symbol"] == "ETHUSDT" and body["open_positions"][0]["stop_price"] == 3050.0
    assert body["last_decisions"][0]["votes"] == [{"voter": "rules", "action": "SHORT", "confidence": 0.8,
                                                   "abstain_reason": None}]
    assert body["breakers"] == [{"name": "drawdown", "reason": "drawdown 21% >= 20%"}]


async def test_metrics_parse_and_record_gauges(client: httpx.AsyncClient, pool: asyncpg.Pool) -> None:
    now = datetime.now(UTC)
    for i, pnl in enumerate([5.0, -2.0, 3.0]):
        await pool.execute(
            """INSERT INTO positions (id, mode, symbol, side, status, entry_price, quantity, initial_quantity,
                   leverage, initial_stop, stop_price, peak_price, opened_at, closed_at, exit_price, gross_pnl,
                   net_pnl, exit_reason) VALUES ($1,'paper','BTCUSDT','long','closed',100,0,1,1,99,99,100,$2,$2,
                   101,$3,$3,'tp')""", f"m{i}", now, pnl)
    metrics.MODEL_LATENCY.labels(voter="rules").observe(0.01)
    r = await client.get("/metrics")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
    families = {f.name: f for f in text_string_to_metric_families(r.text)}
    for name in ("quorum_equity_usd", "quorum_win_rate", "quorum_drawdown_pct", "quorum_model_latency_seconds",
                 "quorum_trades", "quorum_breaker_tripped", "quorum_order_errors"):
        assert name in families, name
    win_rate = families["quorum_win_rate"].samples[0].value
    assert abs(win_rate - 2 / 3) < 1e-9
    assert families["quorum_realized_pnl_usd"].samples[0].value == 6.0


async def test_controls_reject_missing_malformed_wrong_tokens(client: httpx.AsyncClient,
                                                              runtime: RuntimeState) -> None:
    for path in ("/control/pause", "/control/resume", "/control/kill"):
        assert (await client.post(path)).status_code == 401
        assert (await client.post(path, headers={"Authorization": API_TOKEN})).status_code == 401
        assert (await client.post(path, headers={"Authorization": f"Basic {API_TOKEN}"})).status_code == 401
        assert (await client.post(path, headers={"Authorization": "Bearer "})).status_code == 401
        r = await client.post(path, headers={"Authorization": "Bearer wrong-token"})
        assert r.status_code == 403 and API_TOKEN not in r.text
        r = await client.post(path, headers={"Authorization": f"Bearer {API_TOKEN}x"})
        assert r.status_code == 403
    assert runtime.paused is False and runtime.kill_requested is False


async def test_controls_pause_resume_kill_call_engine_hooks(client: httpx.AsyncClient,
                                                            runtime: RuntimeState) -> None:
    calls: list[str] = []

    async def hook(name: str) -> dict[str, object]:
        calls.append(name)
        return {"closed": ["BTCUSDT"]} if name == "kill" else {}

    runtime.on_pause = lambda: hook("pause")
    runtime.on_resume = lambda: hook("resume")
    runtime.on_kill = lambda: hook("kill")
    r = await client.post("/control/pause", headers=AUTH)
    assert r.status_code == 200 and r.json()["paused"] is True and runtime.paused
    r = await client.post("/control/resume", headers=AUTH)
    assert r.status_code == 200 and runtime.paused is False
    r = await client.post("/control/kill", headers=AUTH)
    assert r.status_code == 200 and r.json()["result"] == {"closed": ["BTCUSDT"]}
    assert runtime.kill_requested and runtime.paused
    assert calls == ["pause", "resume", "kill"]


async def test_controls_refused_without_configured_token(runtime: RuntimeState, pool: asyncpg.Pool) -> None:
    settings = make_settings(api_token=None)
    app = create_app(settings, runtime, pool, None)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as c:
        r = await c.post("/control/pause", headers={"Authorization": "Bearer anything"})
        assert r.status_code == 403 and "API_TOKEN" in r.json()["detail"]
        r = await c.post("/control/kill", headers={"Authorization": "Bearer "})
        assert r.status_code == 403
    assert runtime.paused is False


async def test_kill_without_engine_says_nothing_flattened(client: httpx.AsyncClient, runtime: RuntimeState) -> None:
    r = await client.post("/control/kill", headers=AUTH)
    assert r.status_code == 503 and "nothing was flattened" in r.json()["detail"]


async def test_bad_requests_get_the_right_4xx(client: httpx.AsyncClient) -> None:
    assert (await client.get("/nope")).status_code == 404
    assert (await client.get("/../../etc/passwd")).status_code == 404
    assert (await client.post("/health")).status_code == 405
    assert (await client.get("/control/pause")).status_code == 405
    assert (await client.get("/docs")).status_code == 404
    r = await client.post("/control/pause", headers=AUTH, content=b"x" * 200_000)
    assert r.status_code == 413
    r = await client.post("/control/pause", headers={**AUTH, "Content-Length": "abc"}, content=b"")
    assert r.status_code in (400, 413)


async def test_real_uvicorn_on_loopback(settings: Settings, runtime: RuntimeState, pool: asyncpg.Pool) -> None:
    app = create_app(settings, runtime, pool, MemoryTTLCache())
    server, task = await start_server(app, "127.0.0.1", 0)
    try:
        base = f"http://127.0.0.1:{bound_port(server)}"
        async with httpx.AsyncClient(base_url=base) as c:
            assert (await c.get("/health")).status_code == 200
            assert (await c.get("/status")).json()["mode"] == "paper"
            families = list(text_string_to_metric_families((await c.get("/metrics")).text))
            assert any(f.name == "quorum_equity_usd" for f in families)
            assert (await c.post("/control/pause")).status_code == 401
            assert (await c.post("/control/pause", headers=AUTH)).status_code == 200
            r = await c.post("/control/pause", headers=AUTH, content=b"y" * 100_000)
            assert r.status_code == 413
        assert runtime.paused
    finally:
        await stop_server(server, task)


async def test_io_checks_are_reused_within_their_ttl(pg_url: str) -> None:
    pool = await create_pool(pg_url, min_size=1, max_size=2)
    cached, fresh = IoChecks(ttl_s=3600), IoChecks(ttl_s=0)
    assert (await cached.get(pool, None))[0].ok and (await fresh.get(pool, None))[0].ok
    await pool.close()
    assert (await cached.get(pool, None))[0].ok  # reused: no query within the TTL
    assert not (await fresh.get(pool, None))[0].ok


async def test_head_health_answers_like_get(settings: Settings, runtime: RuntimeState, pool: asyncpg.Pool) -> None:
    """HEAD /health (load balancers, `curl -I`): GET's status code and headers, no body — 200 while
    healthy, 503 once the scan is stale; HEAD /health/live too."""
    app = create_app(settings, runtime, pool, MemoryTTLCache(), check_ttl_s=0)
    server, task = await start_server(app, "127.0.0.1", 0)
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{bound_port(server)}") as c:
            for stale in (False, True):
                if stale:
                    runtime.mark_scan(wall_ms() - 3_600_000)
                get, head = await c.get("/health"), await c.head("/health")
                assert head.status_code == get.status_code == (503 if stale else 200)
                assert head.content == b"" and get.content
                assert head.headers["content-type"] == get.headers["content-type"] == "application/json"
                assert int(head.headers["content-length"]) > 0  # what GET's body would be
            live = await c.head("/health/live")
            assert live.status_code == 200 and live.content == b""
            assert (await c.head("/status")).status_code == 405  # only the health probes
    finally:
        await stop_server(server, task)
