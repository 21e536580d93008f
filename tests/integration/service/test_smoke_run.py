"""The real `quorum run` process (the CLI, not a wired function), paper mode, against the live-style
fake Binance in its own process (pointed at it only through BINANCE_FAPI_URL / BINANCE_FSTREAM_URL)
and a fake OpenAI-compatible model, with 1-minute bars in real time for under three minutes: it
scans, decides, paper-trades, records in Postgres, serves /health /status /metrics; a burst of
HTTP 500s from the exchange does not end it; SIGTERM stops it cleanly and leaves no process behind."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import psutil
import pytest

from tests.conftest import REDIS_URL, ROOT, scratch_database
from tests.fakes.openai_server import FakeOpenAIServer
from tests.fakes.voters import always, openai_reply

SYMBOLS = "BTCUSDT,ETHUSDT"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
async def smoke_db() -> AsyncIterator[str]:
    async with scratch_database("quorum_smoke") as url:
        yield url


async def _start_fake_binance(shared_data: Path) -> tuple[asyncio.subprocess.Process, dict[str, Any]]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "tests.fakes.binance_live", "--symbols", SYMBOLS, "--data", str(shared_data),
        "--shift-to-now", "2025-10-09T08:00", "--partial-every-s", "0",
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    assert proc.stdout is not None
    line = await asyncio.wait_for(proc.stdout.readline(), 120)
    assert line, "the fake Binance did not start"
    return proc, json.loads(line)


async def _until(what: str, cond: Any, timeout: float) -> Any:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        got = await cond()
        if got:
            return got
        await asyncio.sleep(1.0)
    raise AssertionError(f"not reached within {timeout:.0f}s: {what}")


async def test_quorum_run_process_paper_trades_survives_a_5xx_burst_and_stops_on_sigterm(
        smoke_db: str, shared_data: Path, tmp_path: Path) -> None:
    fake, info = await _start_fake_binance(shared_data)
    model = await FakeOpenAIServer(default=openai_reply(always("LONG"))).start()
    port, token = _free_port(), "smoke-token-" + uuid.uuid4().hex[:8]
    env = {**os.environ, "TRADING_MODE": "paper", "DATABASE_URL": smoke_db, "REDIS_URL": REDIS_URL,
           "SYMBOLS": SYMBOLS, "TIMEFRAMES": "1m,5m,15m", "EXECUTION_TIMEFRAME": "1m", "DECISION_TIMEFRAME": "1m",
           "MONITOR_INTERVAL_SECONDS": "60", "MODELS": "openai:smoke-model", "OPENAI_API_KEY": "sk-smoke-key-123",
           "OPENAI_BASE_URL": model.base_url, "BINANCE_FAPI_URL": info["rest_root"],
           "BINANCE_FSTREAM_URL": info["ws_root"], "API_HOST": "127.0.0.1", "API_PORT": str(port),
           "API_TOKEN": token, "LOG_FORMAT": "json", "MIN_AI_CONFIDENCE": "0.5", "VAR_DIR": str(tmp_path / "var")}
    env.pop("QUORUM_TEST_CLOCK", None)
    log_path = tmp_path / "quorum-run.log"
    with log_path.open("w") as log:
        service = await asyncio.create_subprocess_exec(sys.executable, "-m", "quorum", "run", cwd=tmp_path, env=env,
                                                       stdout=log, stderr=subprocess.STDOUT)
    api = httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=5.0)
    exchange = httpx.AsyncClient(base_url=info["rest_root"], timeout=5.0)
    pool = None
    try:
        async def status() -> dict[str, Any] | None:
            try:
                r = await api.get("/status")
            except httpx.HTTPError:
                return None
            return r.json() if r.status_code == 200 else None

        # a burst of 500s from the exchange as the service starts: retried, what exhausts the retries is
        # skipped (and named on /health — tests/integration/engine/test_faults.py), the process stays up
        await _until("the API answering", status, 60)
        fault = await exchange.post("/_fake/fault", json={"kind": "rest_errors", "count": 7, "status": 500})
        assert fault.status_code == 200

        # it scans and decides, and paper-trades (the model says LONG with a stop and a target)
        body = await _until("an open paper position", lambda: _with_positions(status), 150)
        pos = body["open_positions"][0]
        assert pos["stop_price"] is not None and pos["quantity"] > 0 and body["last_scan_ms"]
        health = (await api.get("/health")).json()
        assert set(health["components"]) >= {"database", "cache", "market_data", "models", "scan"}
        metrics = (await api.get("/metrics")).text
        assert "quorum_equity_usd" in metrics and "quorum_loop_duration_seconds" in metrics
        pool = await asyncpg.create_pool(smoke_db, min_size=1, max_size=2)
        assert await pool.fetchval("SELECT count(*) FROM decisions WHERE mode='paper'") >= 1
        assert await pool.fetchval("SELECT count(*) FROM model_votes") >= 1
        assert await pool.fetchval("SELECT count(*) FROM paper_orders WHERE type='stop_market'") >= 1
        assert await pool.fetchval("SELECT count(*) FROM fills WHERE mode='paper'") >= 1
        stats = (await exchange.get("/_fake/stats")).json()
        served_500 = sum(n for per in stats["requests"].values() for code, n in per.items() if str(code) == "500")
        assert served_500 == 7, stats["requests"]
        assert service.returncode is None, "the 500s must not end the service"

        # SIGTERM: a clean stop, nothing left behind
        children = psutil.Process(service.pid).children(recursive=True)
        assert children, "the API runs in a child process"
        started = time.monotonic()
        service.send_signal(signal.SIGTERM)
        rc = await asyncio.wait_for(service.wait(), 30)
        assert rc == 0 and time.monotonic() - started < 20
        _, alive = await asyncio.to_thread(psutil.wait_procs, children, 10)
        assert not alive, f"left behind: {alive}"
    finally:
        if service.returncode is None:
            service.kill()
            await service.wait()
        await api.aclose()
        await exchange.aclose()
        if pool is not None:
            await pool.close()
        await model.stop()
        fake.terminate()
        await asyncio.wait_for(fake.wait(), 15)
        tail = log_path.read_text().splitlines()[-25:]
        print("\n--- quorum run (log tail) ---\n" + "\n".join(tail))
    text = log_path.read_text()
    assert "Traceback" not in text
    assert "sk-smoke-key-123" not in text and token not in text


async def _with_positions(status: Any) -> dict[str, Any] | None:
    body = await status()
    return body if body and body.get("open_positions") else None


async def _scanned_after(status: Any, scanned: int) -> bool:
    body = await status()
    return bool(body and (body.get("last_scan_ms") or 0) > scanned)
