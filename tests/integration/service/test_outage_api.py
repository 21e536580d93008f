"""The API child process through Postgres and Redis outages, a busy port and a SIGKILLed engine.
Outages are of a private Postgres and a private Redis this module starts (never the shared ones)."""

from __future__ import annotations

import asyncio
import socket
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import psutil
import pytest

from quorum.api.process import ApiPortInUse, ApiProcess
from quorum.engine.runtime import RuntimeState, wall_ms
from tests.integration.service.conftest import make_settings
from tests.outages import PrivatePostgres, PrivateRedis

ROOT = Path(__file__).resolve().parents[3]


@pytest.fixture(scope="module")
async def services() -> AsyncIterator[tuple[PrivatePostgres, PrivateRedis]]:
    pg, rd = PrivatePostgres(), PrivateRedis()
    await asyncio.gather(pg.start(), rd.start())
    try:
        yield pg, rd
    finally:
        await asyncio.gather(pg.close(), rd.close())


def engine_runtime() -> RuntimeState:
    rt = RuntimeState(mode="paper", scan_interval_s=60.0)
    now = wall_ms()
    rt.mark_scan(now)
    rt.mark_market_data(now)
    rt.mark_provider("rules", True, now_ms=now)
    rt.equity = 1000.0
    rt.positions = [{"symbol": "BTCUSDT", "side": "long", "entry_price": 60000.0, "quantity": 0.01}]
    return rt


class Poller:
    """Polls GET /health every 0.2 s and records every outcome (status code, or the error)."""

    def __init__(self, client: httpx.AsyncClient) -> None:
        self.client = client
        self.outcomes: list[int | str] = []

    async def until(self, want: str, timeout: float = 90.0) -> dict[str, object]:
        """Poll until /health's body has status `want`; return that body."""
        deadline = asyncio.get_running_loop().time() + timeout
        while asyncio.get_running_loop().time() < deadline:
            try:
                r = await self.client.get("/health")
            except httpx.HTTPError as exc:
                self.outcomes.append(type(exc).__name__)
            else:
                self.outcomes.append(r.status_code)
                body: dict[str, object] = r.json()
                if body["status"] == want:
                    return body
            await asyncio.sleep(0.2)
        raise AssertionError(f"/health never reached {want!r}; outcomes: {self.outcomes[-10:]}")


async def test_api_child_answers_through_postgres_and_redis_outages(
        services: tuple[PrivatePostgres, PrivateRedis]) -> None:
    pg, rd = services
    await asyncio.gather(pg.start(), rd.start())
    runtime = engine_runtime()
    api = ApiProcess(make_settings(redis_url=rd.url), runtime, pg.url, host="127.0.0.1", port=0, interval_s=0.05)
    port = await api.start()
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=10) as c:
            poll = Poller(c)
            ok = await poll.until("ok")
            assert ok["failing"] == [] and ok["degraded"] == []

            await pg.stop()
            down = await poll.until("fail")
            assert down["failing"] == ["database"], down
            db = down["components"]["database"]  # type: ignore[index]
            assert db["ok"] is False and "unreachable" in db["detail"]
            for _ in range(10):  # it keeps answering 503 while the server is gone
                assert (await poll.until("fail"))["failing"] == ["database"]
            runtime.equity = 990.0  # the engine's state still reaches /status meanwhile
            for _ in range(100):
                status = (await c.get("/status")).json()
                if status["equity"] == 990.0:
                    break
                await asyncio.sleep(0.05)
            assert status["equity"] == 990.0 and status["open_positions"][0]["symbol"] == "BTCUSDT"
            assert status["database"].startswith("unavailable (")

            await pg.start()
            assert (await poll.until("ok"))["failing"] == []  # no restart of anything
            assert (await c.get("/status")).json()["database"] == "ok"

            await rd.stop()
            degraded = await poll.until("degraded")
            assert degraded["degraded"] == ["cache"] and degraded["failing"] == []
            cache = degraded["components"]["cache"]  # type: ignore[index]
            assert cache["ok"] is True and cache["degraded"] is True
            assert cache["detail"].endswith("; in-process cache in use")
            await rd.start()
            await poll.until("ok")
            # every poll got an HTTP answer: 200 or 503, never a refused connection or a timeout
            assert poll.outcomes and set(poll.outcomes) <= {200, 503}, poll.outcomes
    finally:
        await api.stop()
        await asyncio.gather(pg.start(), rd.start())


async def test_api_child_starts_while_postgres_is_down(services: tuple[PrivatePostgres, PrivateRedis]) -> None:
    pg, _ = services
    await pg.stop()
    api = ApiProcess(make_settings(), engine_runtime(), pg.url, host="127.0.0.1", port=0, interval_s=0.05)
    try:
        port = await api.start()  # no database needed to start
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=10) as c:
            poll = Poller(c)
            assert (await poll.until("fail"))["failing"] == ["database"]
            assert (await c.get("/status")).status_code == 200
            await pg.start()
            await poll.until("ok")
            assert set(poll.outcomes) <= {200, 503}
    finally:
        await api.stop()
        await pg.start()


async def test_busy_port_is_retried_then_one_line_error(services: tuple[PrivatePostgres, PrivateRedis]) -> None:
    pg, _ = services
    holder = socket.socket()
    holder.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    holder.bind(("127.0.0.1", 0))
    holder.listen()
    port = holder.getsockname()[1]
    try:
        api = ApiProcess(make_settings(), engine_runtime(), pg.url, host="127.0.0.1", port=port, bind_retry_s=1.0)
        with pytest.raises(ApiPortInUse) as info:
            await api.start()
        assert str(info.value) == (f"API port 127.0.0.1:{port} is in use: stop the other process or set API_PORT")
        assert not api._proc.is_alive()

        # freed while the child retries: it binds and serves on that very port
        api = ApiProcess(make_settings(), engine_runtime(), pg.url, host="127.0.0.1", port=port, bind_retry_s=60.0)
        starting = asyncio.create_task(api.start())
        await asyncio.sleep(1.0)
        assert not starting.done()  # still waiting for the port
        holder.close()
        assert await starting == port
        try:
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=10) as c:
                assert (await c.get("/health/live")).status_code == 200
        finally:
            await api.stop()
    finally:
        holder.close()


ENGINE_SCRIPT = """
import asyncio, sys
from quorum.api.process import ApiProcess
from quorum.engine.runtime import RuntimeState
from tests.integration.service.conftest import make_settings

async def main():
    api = ApiProcess(make_settings(), RuntimeState(), sys.argv[1], host="127.0.0.1", port=0)
    port = await api.start()
    print(api._proc.pid, port, flush=True)
    await asyncio.sleep(3600)

asyncio.run(main())
"""


async def test_api_child_exits_when_the_engine_process_is_killed(
        services: tuple[PrivatePostgres, PrivateRedis]) -> None:
    pg, _ = services
    engine = await asyncio.create_subprocess_exec(sys.executable, "-c", ENGINE_SCRIPT, pg.url, cwd=ROOT,
                                                  stdout=asyncio.subprocess.PIPE)
    try:
        assert engine.stdout is not None
        line = (await asyncio.wait_for(engine.stdout.readline(), 60)).decode()
        child_pid, port = map(int, line.split())
        child = psutil.Process(child_pid)
        async with httpx.AsyncClient(timeout=5) as c:
            assert (await c.get(f"http://127.0.0.1:{port}/health/live")).status_code == 200
        engine.kill()  # SIGKILL: no clean-up runs in the engine process
        await engine.wait()

        def gone() -> bool:
            try:
                return child.status() == psutil.STATUS_ZOMBIE
            except psutil.NoSuchProcess:
                return True

        for _ in range(300):
            if gone():
                break
            await asyncio.sleep(0.1)
        assert gone(), "the API child outlived its engine process"
        free = socket.socket()
        free.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the next start binds it
        try:
            free.bind(("127.0.0.1", port))  # and its port is free for the next start
        finally:
            free.close()
    finally:
        if engine.returncode is None:
            engine.kill()
            await engine.wait()

