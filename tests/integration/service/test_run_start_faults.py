"""`quorum run` (the real process) meeting foreseen trouble at start-up:

- the exchange is unreachable: it stays up, says which host and what to check in one line per
  attempt (no traceback), /health answers 503 naming the market data, and SIGTERM stops it cleanly;
- a symbol the exchange does not list is a configuration error: one line, exit code 2.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import scratch_database
from tests.fakes.binance_market import FakeBinanceMarket, SymbolInfo
from tests.outages import free_port


@pytest.fixture
async def fresh_db() -> AsyncIterator[str]:
    async with scratch_database("quorum_start") as url:
        yield url


def _env(db: str, port: int, fapi: str, symbols: str, tmp: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("QUORUM_", "BINANCE_", "REDIS_"))}
    env.update({"TRADING_MODE": "paper", "DATABASE_URL": db, "SYMBOLS": symbols, "API_HOST": "127.0.0.1",
                "API_PORT": str(port), "LOG_FORMAT": "json", "BINANCE_FAPI_URL": fapi,
                "BINANCE_FSTREAM_URL": fapi.replace("http", "ws"), "VAR_DIR": str(tmp / "var")})
    return env


async def test_unreachable_exchange_at_start_keeps_retrying_and_says_where(fresh_db: str, tmp_path: Path) -> None:
    closed = free_port()  # nothing listens here
    port = free_port()
    log_path = tmp_path / "run.log"
    with log_path.open("w") as log:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "quorum", "run", cwd=tmp_path,
            env=_env(fresh_db, port, f"http://127.0.0.1:{closed}", "BTCUSDT", tmp_path),
            stdout=log, stderr=subprocess.STDOUT)
    try:
        health: dict[str, Any] | None = None
        async with httpx.AsyncClient(timeout=2.0) as client:
            end = time.monotonic() + 90
            while time.monotonic() < end and proc.returncode is None:
                waiting = [json.loads(line) for line in log_path.read_text().splitlines()
                           if "engine.start_waiting_for_exchange" in line]
                try:
                    r = await client.get(f"http://127.0.0.1:{port}/health")
                    health = r.json() if r.status_code == 503 else None
                except httpx.HTTPError:
                    health = None
                if len(waiting) >= 2 and health is not None:
                    break
                await asyncio.sleep(0.5)
        assert proc.returncode is None, "an unreachable exchange must not end the service"
        assert len(waiting) >= 2 and all(w["host"] == f"127.0.0.1:{closed}" for w in waiting)
        assert "BINANCE_FAPI_URL" in waiting[0]["action"] and waiting[1]["retry_in_s"] > waiting[0]["retry_in_s"]
        assert health is not None and "market_data" in health["failing"]
        assert f"127.0.0.1:{closed}" in health["components"]["market_data"]["detail"]
        # a stop in the middle of the exchange's read retries (waits of up to 8 s, five attempts) is
        # not sat through: `podman stop` gives 10 s before it kills
        retries = _retry_lines(log_path)
        for _ in range(1200):  # up to 60 s for a retry wait of attempt 3 or later to begin
            latest = _retry_lines(log_path)
            if len(latest) > len(retries) and latest[-1]["attempt"] >= 3:
                break
            await asyncio.sleep(0.05)
        sent = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(proc.wait(), 30) == 0
        assert time.monotonic() - sent < 3.0
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert "Traceback" not in log_path.read_text()


def _retry_lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines() if '"binance_read_retry"' in line]


async def test_a_symbol_the_exchange_does_not_list_is_one_line_and_exit_2(fresh_db: str, tmp_path: Path) -> None:
    async with FakeBinanceMarket(now_ms=1_757_462_400_000) as fake:
        fake.add_symbol("BTCUSDT", SymbolInfo())
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "quorum", "run", cwd=tmp_path,
            env=_env(fresh_db, free_port(), fake.rest_root, "BTCUSDT,NOPEUSDT", tmp_path),
            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        out, err = await asyncio.wait_for(proc.communicate(), 90)
    assert proc.returncode == 2
    lines = [line for line in err.decode().splitlines() if line.startswith("configuration error")]
    assert lines == [f"configuration error: SYMBOLS: not USDⓈ-M perpetuals on 127.0.0.1:{fake.port}: NOPEUSDT"]
    assert "Traceback" not in err.decode() + out.decode()
