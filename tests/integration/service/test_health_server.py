"""`health_server.py` as its own process on 127.0.0.1: serves the record from Postgres."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import asyncpg
import httpx

from tests.integration.service.record import insert_trades

ROOT = Path(__file__).resolve().parents[3]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_health_server_process(pool: asyncpg.Pool, pg_url: str, tmp_path: Path) -> None:
    await insert_trades(pool, [4.0, -1.0, 2.0], days=2)
    port = _free_port()
    env = {**os.environ, "DATABASE_URL": pg_url, "API_PORT": str(port), "API_HOST": "127.0.0.1",
           "API_TOKEN": "proc-token-1234", "LOG_FORMAT": "json", "VAR_DIR": str(tmp_path)}
    env.pop("REDIS_URL", None)
    proc = await asyncio.to_thread(subprocess.Popen, [sys.executable, str(ROOT / "health_server.py")],
                                   cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=5) as c:
            deadline = time.monotonic() + 30
            while True:
                try:
                    r = await c.get("/health")
                    break
                except httpx.ConnectError:
                    assert proc.poll() is None, proc.stderr.read().decode()  # type: ignore[union-attr]
                    assert time.monotonic() < deadline
                    await asyncio.sleep(0.1)
            assert r.status_code == 200, r.text  # fresh process: waiting for a first scan is fine
            assert r.json()["components"]["scan"]["detail"] == "waiting for the first scan"
            status = (await c.get("/status")).json()
            assert status["source"] == "database" and status["equity"] == 1005.0
            assert len(status["last_decisions"]) == 3
            text = (await c.get("/metrics")).text
            assert "quorum_win_rate 0.6666" in text
            assert (await c.post("/control/pause", headers={"Authorization": "Bearer nope"})).status_code == 403
            assert (await c.post("/control/pause", headers={"Authorization": "Bearer proc-token-1234"})
                    ).status_code == 200
    finally:
        proc.terminate()
        _, err = await asyncio.to_thread(proc.communicate, timeout=15)
    assert proc.returncode == 0, err.decode()[-2000:]
    assert b"proc-token-1234" not in err
