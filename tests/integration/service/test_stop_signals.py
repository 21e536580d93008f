"""`quorum demo` and `quorum run` stop cleanly on SIGTERM and SIGINT in every phase — as PID 1 in a container a
stop signal without a handler is ignored, and `podman stop` then waits its whole timeout and kills.

Each run is the real command (embedded Postgres under its own VAR_DIR); the signal is sent while
the demo is in the phase named, and the process must exit 0 within a few seconds, leaving no
embedded server behind."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import BUNDLED_DATA
from tests.integration.service.test_embedded_postgres import servers
from tests.outages import free_port

STOP_WITHIN_S = 10.0


def _env(var: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL", "TELEGRAM_BOT_TOKEN")}
    env.update({"VAR_DIR": str(var), "LOG_FORMAT": "json", "API_HOST": "127.0.0.1"})
    return env


def _text(path: Path) -> str:
    return path.read_text(errors="replace")


async def _wait_for_line(path: Path, text: str, proc: asyncio.subprocess.Process, timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if text in _text(path):
            return
        assert proc.returncode is None, _text(path)[-3000:]
        await asyncio.sleep(0.1)
    raise AssertionError(f"no {text!r} within {timeout}s: " + _text(path)[-3000:])


@pytest.mark.parametrize(("phase", "sig", "marker", "speed"), [
    ("replay", signal.SIGTERM, "simulated ", "300"),  # 300x: one day takes minutes
    ("keep-serving", signal.SIGTERM, "replay done", "0"),
    ("keep-serving", signal.SIGINT, "replay done", "0"),
])
async def test_demo_stops_cleanly_on_a_signal(tmp_path: Path, phase: str, sig: signal.Signals, marker: str,
                                              speed: str) -> None:
    var = tmp_path / "var"
    out = tmp_path / "demo.out"
    with out.open("w") as sink:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "quorum", "demo", "--data", str(BUNDLED_DATA), "--symbols", "BTCUSDT",
            "--port", str(free_port()), "--days", "1", "--speed", speed, "--keep-serving", "300",
            cwd=tmp_path, env=_env(var), stdout=sink, stderr=subprocess.STDOUT)
        try:
            await _wait_for_line(out, marker, proc)
            await asyncio.sleep(1.0)
            sent = time.monotonic()
            proc.send_signal(sig)
            code = await asyncio.wait_for(proc.wait(), STOP_WITHIN_S + 20)
            took = time.monotonic() - sent
        finally:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
    text = _text(out)
    assert code == 0, text[-3000:]
    assert took < STOP_WITHIN_S, f"{phase}: stopped after {took:.1f}s"
    assert f'"phase": "{phase}"' in text and f'"signal": "{sig.name}"' in text
    assert "Record: paper" in text and "Traceback" not in text  # the record so far, then a clean exit
    if phase == "replay":
        assert "replay stopped by a signal" in text
    assert servers((var / "pgdata").resolve()) == []


@pytest.mark.parametrize("after_s", [0.3, 4.0])  # while importing; while waiting for the database
async def test_run_stops_on_sigterm_during_start_up(tmp_path: Path, after_s: float) -> None:
    env = _env(tmp_path / "var")
    env["DATABASE_URL"] = f"postgresql://quorum@127.0.0.1:{free_port()}/quorum"  # nobody listens there
    out = tmp_path / "run.out"
    with out.open("w") as sink:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "quorum", "run", cwd=tmp_path, env={**env, "API_PORT": str(free_port())},
            stdout=sink, stderr=subprocess.STDOUT)
        try:
            await asyncio.sleep(after_s)
            assert proc.returncode is None, _text(out)[-2000:]
            sent = time.monotonic()
            proc.send_signal(signal.SIGTERM)
            code = await asyncio.wait_for(proc.wait(), 30)
            took = time.monotonic() - sent
        finally:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
    text = _text(out)
    assert "Traceback" not in text, text[-3000:]
    assert took < STOP_WITHIN_S
    if after_s > 1:  # by then the service waits for Postgres, with /health up: a clean stop
        assert '"event": "database.waiting"' in text and '"phase": "start-up"' in text
        assert code == 0, text[-2000:]
    else:
        assert code in (0, 128 + signal.SIGTERM, -signal.SIGTERM), text[-2000:]
