"""Bind safety through the user's door: `quorum run` and `quorum demo` refuse an empty or
shorthand API_HOST and a non-loopback bind without API_TOKEN with one line and exit code 2, before
touching anything; an exposed API (health_server.py on 0.0.0.0 with a token) logs one warning
naming every endpoint it serves."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.integration.service.test_health_server import _free_port

ROOT = Path(__file__).resolve().parents[3]
NOWHERE = "postgresql://quorum@127.0.0.1:1/quorum"  # nothing listens: a refusal must come first


@pytest.mark.parametrize("command", [["run"], ["demo", "--days", "0.1"]])
@pytest.mark.parametrize("host, token, says", [
    ("", "", "API_HOST='': empty"),
    ("0", "", "API_HOST='0': not an IP address or a hostname"),
    ("0.0.0.0", "", "API_HOST=0.0.0.0 exposes the API beyond this machine: set API_TOKEN"),
    ("::", "", "API_HOST=:: exposes the API"),
])
async def test_unsafe_binds_are_refused_with_one_line(command: list[str], host: str, token: str, says: str,
                                                      tmp_path: Path) -> None:
    env = {**os.environ, "TRADING_MODE": "paper", "API_HOST": host, "API_TOKEN": token, "DATABASE_URL": NOWHERE,
           "VAR_DIR": str(tmp_path / "var"), "LOG_FORMAT": "json"}
    done = await asyncio.to_thread(subprocess.run, [sys.executable, "-m", "quorum", *command], cwd=tmp_path,
                                   env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2, done.stderr
    errors = [line for line in done.stderr.splitlines() if line.startswith("configuration error:")]
    assert len(errors) == 1 and says in errors[0], done.stderr
    assert "Traceback" not in done.stderr and not (tmp_path / "var").exists()


async def test_an_exposed_api_logs_the_endpoints_it_exposes(pg_url: str, tmp_path: Path) -> None:
    port = _free_port()
    env = {**os.environ, "DATABASE_URL": pg_url, "API_PORT": str(port), "API_HOST": "0.0.0.0",
           "API_TOKEN": "bind-token-5678", "LOG_FORMAT": "json", "VAR_DIR": str(tmp_path)}
    env.pop("REDIS_URL", None)
    proc = await asyncio.to_thread(subprocess.Popen, [sys.executable, str(ROOT / "health_server.py")],
                                   cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=5) as c:
            deadline = time.monotonic() + 30
            while True:
                try:
                    if (await c.get("/health/live")).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                assert time.monotonic() < deadline, "health_server did not answer"
                await asyncio.sleep(0.3)
            assert (await c.post("/control/pause")).status_code == 401  # exposed, but guarded
    finally:
        proc.terminate()
        _, stderr = await asyncio.to_thread(proc.communicate, timeout=20)
    events = [json.loads(line) for line in stderr.splitlines() if line.startswith("{")]
    exposed = [e for e in events if e.get("event") == "api.exposed"]
    assert len(exposed) == 1 and exposed[0]["level"] == "warning"
    assert exposed[0]["host"] == "0.0.0.0" and exposed[0]["port"] == port
    assert {"GET /health", "GET /status", "GET /metrics", "POST /control/kill"} <= set(exposed[0]["endpoints"])
    assert "bind-token-5678" not in stderr
