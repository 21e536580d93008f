"""The embedded Postgres (no DATABASE_URL: a server under VAR_DIR/pgdata) through the `quorum`
command: stopped when the command exits cleanly; the server a SIGKILLed `quorum demo` leaves
behind is found and reused by the next start — never a second server on the same data — and
stopped when that one exits cleanly."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil

from tests.conftest import BUNDLED_DATA
from tests.outages import free_port


def servers(pgdata: Path) -> list[int]:
    """pids of the postmasters running on `pgdata` (their command line names the directory)."""
    found = []
    for proc in psutil.process_iter(attrs=["name", "cmdline"]):
        cmd = proc.info["cmdline"] or []
        if proc.info["name"] == "postgres" and str(pgdata) in cmd:
            found.append(proc.pid)
    return found


def _env(var: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL", "TELEGRAM_BOT_TOKEN")}
    env.update({"VAR_DIR": str(var), "LOG_FORMAT": "json", "API_HOST": "127.0.0.1"})
    return env


def _demo(var: Path, port: int, *extra: str) -> list[str]:
    return [sys.executable, "-m", "quorum", "demo", "--data", str(BUNDLED_DATA), "--symbols", "BTCUSDT",
            "--port", str(port), *extra]


async def test_clean_exit_stops_the_embedded_server(tmp_path: Path) -> None:
    var = tmp_path / "var"
    done = await asyncio.to_thread(subprocess.run, [sys.executable, "-m", "quorum", "db", "upgrade"], cwd=tmp_path,
                                   env=_env(var), capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "applied 001_initial.sql" in done.stdout
    pgdata = (var / "pgdata").resolve()
    assert (pgdata / "PG_VERSION").is_file() and servers(pgdata) == []
    assert json.loads((pgdata / ".handle_pids.json").read_text()) == []


async def test_an_orphan_left_by_a_kill_is_reused_then_stopped(tmp_path: Path) -> None:
    var = tmp_path / "var"
    pgdata = (var / "pgdata").resolve()
    log = (tmp_path / "demo.log").open("w")
    killed = await asyncio.create_subprocess_exec(*_demo(var, free_port(), "--days", "3", "--keep-serving", "120"),
                                                  cwd=tmp_path, env=_env(var), stdout=log, stderr=subprocess.STDOUT)
    second: asyncio.subprocess.Process | None = None
    try:
        deadline = time.monotonic() + 180
        handles = pgdata / ".handle_pids.json"
        while not (servers(pgdata) and handles.is_file() and killed.pid in json.loads(handles.read_text() or "[]")):
            assert killed.returncode is None, (tmp_path / "demo.log").read_text()[-3000:]
            assert time.monotonic() < deadline, "the demo's embedded server did not start"
            await asyncio.sleep(0.2)
        killed.send_signal(signal.SIGKILL)  # no clean-up at all
        await asyncio.wait_for(killed.wait(), 30)
        orphan = servers(pgdata)
        assert len(orphan) == 1  # left behind, as a kill leaves it

        second = await asyncio.create_subprocess_exec(*_demo(var, free_port(), "--days", "0.05", "--keep-serving", "1"),
                                                      cwd=tmp_path, env=_env(var), stdout=log, stderr=subprocess.STDOUT)
        seen: set[int] = set()
        while second.returncode is None:  # while it runs: one server, the orphan
            running = servers(pgdata)
            assert len(running) <= 1, running
            seen.update(running)
            await asyncio.sleep(0.1)
        text = (tmp_path / "demo.log").read_text()
        assert second.returncode == 0, text[-3000:]
        assert seen == set(orphan) and "Record: paper" in text
        await asyncio.sleep(0.5)
        assert servers(pgdata) == []  # stopped by the clean exit
        assert "database.embedded_orphan_reused" in text
    finally:
        for proc in (killed, second):
            if proc is not None and proc.returncode is None:
                proc.kill()
                await asyncio.wait_for(proc.wait(), 30)
        log.close()
        for pid in servers(pgdata):  # never leave a server behind, whatever failed
            psutil.Process(pid).terminate()
