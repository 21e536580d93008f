"""The API in its own process (as `quorum run` / `quorum demo` serve it): the mirrored runtime,
control requests executed on the engine's loop, and a silent engine turning /health to 503."""

from __future__ import annotations

import asyncio

import asyncpg
import httpx

from quorum.api.app import create_app
from quorum.api.process import ApiProcess, apply_snapshot, snapshot
from quorum.runtime import RuntimeState, wall_ms
from tests.integration.service.conftest import API_TOKEN, make_settings

AUTH = {"Authorization": f"Bearer {API_TOKEN}"}


async def test_api_process_mirrors_runtime_and_forwards_controls(pool: asyncpg.Pool, pg_url: str) -> None:
    settings = make_settings()
    runtime = RuntimeState(mode="paper", scan_interval_s=60)
    runtime.mark_scan()
    runtime.mark_market_data()
    runtime.equity = 1234.5
    runtime.positions = [{"symbol": "SOLUSDT", "side": "short", "entry_price": 150.0, "quantity": 2.0}]
    kills: list[int] = []
    engine_loop = asyncio.get_running_loop()

    async def on_kill() -> dict[str, object]:
        assert asyncio.get_running_loop() is engine_loop  # runs in the engine process, on its loop
        kills.append(1)
        return {"closed": ["SOLUSDT"]}

    runtime.on_kill = on_kill
    api = ApiProcess(settings, runtime, pg_url, host="127.0.0.1", port=0, interval_s=0.05)
    port = await api.start()
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=10) as c:
            status = (await c.get("/status")).json()
            assert status["equity"] == 1234.5 and status["open_positions"][0]["symbol"] == "SOLUSDT"
            health = (await c.get("/health")).json()
            assert health["status"] == "ok" and health["components"]["engine"]["ok"] is True
            runtime.equity = 1300.0  # the next snapshot carries it over
            for _ in range(100):
                if (await c.get("/status")).json()["equity"] == 1300.0:
                    break
                await asyncio.sleep(0.05)
            assert (await c.get("/status")).json()["equity"] == 1300.0
            assert (await c.post("/control/pause")).status_code == 401
            r = await c.post("/control/pause", headers=AUTH)
            assert r.status_code == 200 and runtime.paused is True  # the ENGINE's runtime
            r = await c.post("/control/kill", headers=AUTH)
            assert r.status_code == 200 and r.json()["result"] == {"closed": ["SOLUSDT"]}
            assert kills == [1] and runtime.kill_requested
    finally:
        await api.stop()
    assert not api._proc.is_alive()


async def test_silent_engine_turns_health_503(pool: asyncpg.Pool) -> None:
    engine_side = RuntimeState(mode="paper", scan_interval_s=60)
    engine_side.mark_scan()
    engine_side.mark_market_data()
    mirror = RuntimeState()
    body = snapshot(engine_side)
    body["heartbeat_ms"] = wall_ms() - 60_000
    apply_snapshot(mirror, body)
    app = create_app(make_settings(), mirror, pool, None)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as c:
        r = await c.get("/health")
    assert r.status_code == 503 and r.json()["failing"] == ["engine"]
    assert "engine silent" in r.json()["components"]["engine"]["detail"]
