"""Start-up against a database that is down (waited for, API up meanwhile) or that refuses us
(a configuration error: one line, exit code 2). Uses a private Postgres this module starts and
stops (never the shared one)."""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from structlog.testing import capture_logs

from quorum.api.runner import StartupStopped, service_surface
from quorum.config import ConfigError
from quorum.engine.runtime import RuntimeState, wall_ms
from quorum.store.db import database_target, wait_for_database
from tests.integration.service.conftest import make_settings
from tests.outages import PrivatePostgres, free_port

QUORUM = Path(sys.executable).parent / "quorum"
PASSWORD = "right-pass-7f3a9c"


@pytest.fixture(scope="module")
async def pg() -> AsyncIterator[PrivatePostgres]:
    server = PrivatePostgres()
    await server.start()
    await server.execute(f"CREATE ROLE quorum_pw LOGIN PASSWORD '{PASSWORD}'")
    await server.execute("CREATE DATABASE locked")
    await server.execute("REVOKE CONNECT ON DATABASE locked FROM PUBLIC")
    try:
        yield server
    finally:
        await server.close()


def fresh_runtime() -> RuntimeState:
    rt = RuntimeState(mode="paper", scan_interval_s=60.0)
    now = wall_ms()
    rt.mark_scan(now)
    rt.mark_market_data(now)
    rt.mark_provider("rules", True, now_ms=now)
    return rt


async def poll_health(client: httpx.AsyncClient, done: Any, timeout: float = 120.0) -> dict[str, Any]:
    """GET /health every 0.2 s until `done(body)`; every poll must get an HTTP answer."""
    deadline = asyncio.get_running_loop().time() + timeout
    while asyncio.get_running_loop().time() < deadline:
        r = await client.get("/health")
        assert r.status_code in (200, 503)
        body: dict[str, Any] = r.json()
        if done(body):
            return body
        await asyncio.sleep(0.2)
    raise AssertionError("/health never reached the expected state")


async def until_logged(logs: list[dict[str, Any]], event: str, count: int, timeout: float = 60.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while sum(e["event"] == event for e in logs) < count:
        assert asyncio.get_running_loop().time() < deadline, f"{count} × {event} not logged"
        await asyncio.sleep(0.05)


async def test_surface_waits_for_a_down_database_with_the_api_answering(pg: PrivatePostgres) -> None:
    await pg.stop()
    url = pg.url_for("postgres")
    port = free_port()
    settings = make_settings(telegram_bot_token=None)
    opened = asyncio.Event()
    release = asyncio.Event()
    seen: dict[str, Any] = {}

    async def run() -> None:
        async with service_surface(settings, fresh_runtime(), port=port, database_url=url,
                                   stop=asyncio.Event()) as surface:
            seen["migrations"] = await surface.pool.fetchval("SELECT count(*) FROM schema_migrations")
            seen["port"] = surface.port
            opened.set()
            await release.wait()

    try:
        with capture_logs() as logs:
            task = asyncio.create_task(run())
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=10) as c:
                async def answering() -> dict[str, Any]:
                    for _ in range(600):
                        try:
                            return await poll_health(c, lambda b: "database" in b["failing"])
                        except httpx.TransportError:  # the API child is still starting
                            await asyncio.sleep(0.1)
                    raise AssertionError("the API never answered")

                down = await answering()
                assert down["components"]["database"]["ok"] is False
                await until_logged(logs, "database.waiting", 2)
                assert not opened.is_set()
                await pg.start()
                await asyncio.wait_for(opened.wait(), 120)
                assert seen["migrations"] > 0 and seen["port"] == port  # migrated once it answered
                await poll_health(c, lambda b: b["components"]["database"]["ok"])
            release.set()
            await task
        waits = [e for e in logs if e["event"] == "database.waiting"]
        assert [e["attempt"] for e in waits] == list(range(1, len(waits) + 1))  # one line per attempt
        assert all(e["target"] == f"127.0.0.1:{pg.port}" and e["hint"] == "start Postgres or fix DATABASE_URL"
                   for e in waits)
        assert [e["retry_in_s"] for e in waits][:3] == [1.0, 2.0, 4.0][:len(waits)]
        assert [e["event"] for e in logs].count("database.reachable") == 1
    finally:
        release.set()
        await pg.start()


async def test_stop_signal_while_waiting_ends_start_up_quietly(pg: PrivatePostgres) -> None:
    await pg.stop()
    port = free_port()
    stop = asyncio.Event()

    async def run() -> None:
        async with service_surface(make_settings(telegram_bot_token=None), fresh_runtime(), port=port,
                                   database_url=pg.url, stop=stop):
            raise AssertionError("the surface opened without a database")

    try:
        with capture_logs() as logs:
            task = asyncio.create_task(run())
            await until_logged(logs, "database.waiting", 1, timeout=120)
            stop.set()
            with pytest.raises(StartupStopped):
                await asyncio.wait_for(task, 60)
        async with httpx.AsyncClient(timeout=5) as c:  # the API child was stopped with it
            with pytest.raises(httpx.ConnectError):
                await c.get(f"http://127.0.0.1:{port}/health/live")
    finally:
        await pg.start()


async def test_wait_for_database_backs_off_to_30s_one_line_per_attempt() -> None:
    port = free_port()  # nothing listens there
    stop = asyncio.Event()
    sleeps: list[float] = []

    async def fake_sleep(seconds: float) -> None:
        sleeps.append(seconds)
        if len(sleeps) == 7:
            stop.set()

    url = f"postgresql://quorum:hunter2-secret@127.0.0.1:{port}/quorum"
    with capture_logs() as logs:
        assert await wait_for_database(url, stop=stop, sleep=fake_sleep) is False
    assert sleeps == [1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0]
    waits = [e for e in logs if e["event"] == "database.waiting"]
    assert len(waits) == 7 and {e["target"] for e in waits} == {f"127.0.0.1:{port}"}
    assert {e["error"] for e in waits} == {"ConnectionRefusedError"}
    assert "hunter2-secret" not in repr(logs)
    assert database_target("postgresql://u:p@db.example:6543/x") == "db.example:6543"
    assert database_target("postgresql://postgres:@/quorum?host=/tmp/pg") == "/tmp/pg:5432"


@pytest.mark.parametrize(("user", "password", "database", "error"), [
    ("quorum_pw", "wrong-pass-1b2c", "postgres", "InvalidPasswordError"),
    ("nobody_here", None, "postgres", "InvalidPasswordError"),  # scram: an unknown role looks the same
    ("postgres", None, "no_such_db", "InvalidCatalogNameError"),
    ("quorum_pw", PASSWORD, "locked", "InsufficientPrivilegeError"),
])
async def test_a_refusing_database_is_a_configuration_error(pg: PrivatePostgres, user: str, password: str | None,
                                                             database: str, error: str) -> None:
    sleeps: list[float] = []

    async def fake_sleep(seconds: float) -> None:
        sleeps.append(seconds)

    with pytest.raises(ConfigError) as info:
        await wait_for_database(pg.url_for(database, user, password), sleep=fake_sleep)
    message = str(info.value)
    assert f"Postgres at 127.0.0.1:{pg.port} refused us" in message and f"({error})" in message
    assert "DATABASE_URL" in message and "\n" not in message
    assert sleeps == []  # never retried
    if password:
        assert password not in message


@pytest.mark.parametrize("url", ["postgresql://u@127.0.0.1:99999/x", "postgresql://u@127.0.0.1/x?sslmode=bogus",
                                 "mysql://u@127.0.0.1/x"])
async def test_an_unusable_database_url_is_a_configuration_error(url: str) -> None:
    with pytest.raises(ConfigError, match="DATABASE_URL is not a usable Postgres URL"):
        await wait_for_database(url)


async def test_quorum_run_with_a_refusing_database_exits_2_with_one_line(pg: PrivatePostgres,
                                                                          tmp_path: Path) -> None:
    for url, secret in ((pg.url_for("postgres", "quorum_pw", "wrong-pass-9d8e"), "wrong-pass-9d8e"),
                        (pg.url_for("no_such_db"), None)):
        env = {k: v for k, v in os.environ.items() if not k.startswith(("REDIS_", "TELEGRAM_", "API_"))}
        env.update(DATABASE_URL=url, TRADING_MODE="paper", API_PORT=str(free_port()), LOG_FORMAT="json")
        proc = await asyncio.create_subprocess_exec(str(QUORUM), "run", cwd=tmp_path, env=env,
                                                    stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        try:
            out, err = await asyncio.wait_for(proc.communicate(), 120)
        finally:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
        stderr = err.decode()
        assert proc.returncode == 2, stderr
        errors = [line for line in stderr.splitlines() if line.startswith("configuration error:")]
        assert len(errors) == 1 and "refused us" in errors[0], stderr
        assert "Traceback" not in stderr + out.decode()
        if secret:
            assert secret not in stderr + out.decode()
