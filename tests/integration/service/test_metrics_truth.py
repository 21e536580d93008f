"""/metrics tells the truth in the real two-process service: the real `quorum run` process (paper
mode, its API in a child process) paper-trades against the live-style fake Binance and a fake
OpenAI-compatible model, on the test-only accelerated clock (`QUORUM_TEST_CLOCK`, as the soak).

After closed trades, every figure /metrics carries equals /status equals a SELECT on the record
(trades and wins by symbol and side, win rate, realised P&L, fees, funding, open positions,
breaker trips), the state families equal /status (equity, unrealised P&L, drawdown, last scan),
and the engine process's own counters arrive (model calls = the requests the fake model saw,
cache misses, loop durations). Then the service is SIGKILLed and started again: the record
families carry on from the record (not from zero), the process counters count from the new
process's start, which /metrics names."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import math
import os
import signal
import sys
import time
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from quorum.clock import TEST_CLOCK_ENV, ScaledClock
from quorum.store.migrate import apply_migrations
from tests.conftest import ADMIN_URL, _db_url
from tests.fakes.binance_live import LiveBinanceMarket
from tests.fakes.openai_server import FakeOpenAIServer
from tests.fakes.voters import openai_reply
from tests.outages import free_port

SYMBOLS = ("BTCUSDT", "ETHUSDT", "SOLUSDT")
START = datetime(2025, 9, 20, tzinfo=UTC)
SPEED = 150.0  # simulated seconds per wall second (a busy 2-core machine keeps up)
BOOT_S = 45.0  # the service's start-up (history through the fake's REST) on a loaded machine
VOTERS = ("openai:truth-a", "openai:truth-b")  # two voters agreeing with each other: a consensus forms


def decide(symbol: str, price: float, text: str) -> str:
    """~30 % long, ~30 % short, ~40 % hold, from the symbol and price (votes flip: trades close)."""
    h = hashlib.sha256(f"{symbol}:{price:.6g}".encode()).digest()[0]
    return "LONG" if h < 77 else "SHORT" if h < 154 else "HOLD"


@pytest.fixture
async def truth_db() -> AsyncIterator[str]:
    name = f"quorum_truth_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(ADMIN_URL)
    await admin.execute(f'CREATE DATABASE "{name}"')
    try:
        conn = await asyncpg.connect(_db_url(name))
        try:
            await apply_migrations(conn)  # the tests reads it before the service has migrated it
        finally:
            await conn.close()
        yield _db_url(name)
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


def parse(text: str) -> dict[str, dict[tuple[tuple[str, str], ...], float]]:
    """sample name → {sorted labels: value}."""
    out: dict[str, dict[tuple[tuple[str, str], ...], float]] = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            out.setdefault(s.name, {})[tuple(sorted(s.labels.items()))] = s.value
    return out


def one(m: dict[str, Any], name: str) -> float | None:
    values = m.get(name) or {}
    return values.get(()) if values else None


async def select_record(pool: asyncpg.Pool) -> dict[str, Any]:
    """The record as a reader of Postgres computes it, independently of Quorum's code."""
    rows = await pool.fetch("""SELECT symbol, side, count(*) AS n, count(*) FILTER (WHERE net_pnl > 0) AS w,
                                      sum(net_pnl) AS pnl
                               FROM positions WHERE mode = 'paper' AND status = 'closed' GROUP BY 1, 2""")
    return {
        "trades": {(r["symbol"], r["side"]): int(r["n"]) for r in rows},
        "wins": {(r["symbol"], r["side"]): int(r["w"]) for r in rows},
        "realized": float(sum(r["pnl"] for r in rows)) if rows else 0.0,
        "fees": float(await pool.fetchval("SELECT coalesce(sum(fee), 0) FROM fills WHERE mode = 'paper'")),
        "funding_paid": float(await pool.fetchval(
            "SELECT coalesce(sum(amount), 0) FROM funding_payments WHERE mode = 'paper' AND amount > 0")),
        "funding_received": float(await pool.fetchval(
            "SELECT coalesce(-sum(amount), 0) FROM funding_payments WHERE mode = 'paper' AND amount < 0")),
        "open": int(await pool.fetchval("SELECT count(*) FROM positions WHERE mode = 'paper' AND status = 'open'")),
        "trips": int(await pool.fetchval("SELECT count(*) FROM breaker_events WHERE mode = 'paper' AND event='trip'")),
        "wallet": float(await pool.fetchval("SELECT wallet_balance FROM paper_accounts LIMIT 1") or math.nan),
    }


def mismatches(m: dict[str, Any], st: dict[str, Any], db: dict[str, Any]) -> list[str]:
    """Every disagreement between /metrics, /status and the SELECT (empty: all three agree)."""
    bad: list[str] = []

    def same(what: str, *values: Any) -> None:
        if all(v is None for v in values):  # unknown everywhere (no scan yet): no sample on /metrics either
            return
        if any(v is None for v in values) or any(not math.isclose(v, values[0], rel_tol=1e-9, abs_tol=1e-9)
                                                 for v in values):
            bad.append(f"{what}: {values}")

    def scaled(v: Any, k: float) -> Any:
        return None if v is None else v * k

    rec = st.get("record") or {}
    by = {name: {(dict(k)["symbol"], dict(k)["side"]): v for k, v in (m.get(name) or {}).items()}
          for name in ("quorum_trades_total", "quorum_wins_total")}
    if by["quorum_trades_total"] != db["trades"] or by["quorum_wins_total"] != db["wins"]:
        bad.append(f"trades/wins by symbol and side: {by} vs {db['trades']} {db['wins']}")
    n, w = sum(db["trades"].values()), sum(db["wins"].values())
    same("trades", rec.get("trades"), n)
    same("wins", rec.get("wins"), w)
    same("win rate", one(m, "quorum_win_rate"), rec.get("win_rate"), w / n if n else None)
    same("realized P&L", one(m, "quorum_realized_pnl_usd"), rec.get("realized_pnl"), db["realized"])
    same("fees", one(m, "quorum_fees_paid_usd_total"), rec.get("fees"), db["fees"])
    same("funding paid", one(m, "quorum_funding_paid_usd_total"), rec.get("funding_paid"), db["funding_paid"])
    same("funding received", one(m, "quorum_funding_received_usd_total"), rec.get("funding_received"),
         db["funding_received"])
    same("breaker trips", sum((m.get("quorum_breaker_trips_total") or {}).values()),
         sum((rec.get("breaker_trips") or {}).values()), db["trips"])
    same("open positions", one(m, "quorum_open_positions"), len(st.get("open_positions") or []), db["open"])
    same("equity", one(m, "quorum_equity_usd"), st.get("equity"))
    same("unrealised P&L", one(m, "quorum_unrealized_pnl_usd"), st.get("unrealized_pnl"),
         math.fsum(p["pnl"] or 0.0 for p in st.get("open_positions") or []))
    same("wallet", (st.get("equity") or 0.0) - (st.get("unrealized_pnl") or 0.0), st.get("wallet_balance"),
         db["wallet"])
    same("drawdown", one(m, "quorum_drawdown_pct"), st.get("drawdown_pct"))
    same("last scan", one(m, "quorum_last_scan_timestamp_seconds"), scaled(st.get("last_scan_ms"), 1e-3))
    tripped = {dict(k)["breaker"]: v for k, v in (m.get("quorum_breaker_tripped") or {}).items()}
    blocking = {b["name"].split(":")[0] for b in st.get("breakers") or []}
    if {k for k, v in tripped.items() if v > 0} != blocking:
        bad.append(f"breakers: {tripped} vs {st['breakers']}")
    return bad


class Service:
    """`python -m quorum run` in its own process (restartable), logging to a file."""

    def __init__(self, env: dict[str, str], work: Path) -> None:
        self.env, self.work = env, work
        self.log = work / "service.log"
        self.proc: asyncio.subprocess.Process | None = None

    async def start(self) -> None:
        with self.log.open("a") as log:
            self.proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "quorum", "run", cwd=self.work, env=self.env, stdout=log,
                stderr=asyncio.subprocess.STDOUT)

    async def stop(self) -> int:
        assert self.proc is not None
        if self.proc.returncode is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                return await asyncio.wait_for(self.proc.wait(), 30)
            except TimeoutError:
                self.proc.kill()
        return await self.proc.wait()


async def _until(what: str, probe: Any, timeout: float, every: float = 0.5) -> Any:
    end = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < end:
        with contextlib.suppress(httpx.HTTPError, ValueError):
            last = await probe()
            if last and not isinstance(last, list | str):
                return last
        await asyncio.sleep(every)
    raise AssertionError(f"not reached within {timeout:.0f}s: {what}; last: {last}")


async def test_metrics_equal_status_equal_record_across_a_sigkill(truth_db: str, shared_data: Path,
                                                                  tmp_path: Path) -> None:
    start_ms = int(START.timestamp() * 1000)
    clock = ScaledClock(start_ms, time.time() + BOOT_S, SPEED)
    exchange = await LiveBinanceMarket(clock, partial_every_s=None).load(shared_data, SYMBOLS).start()
    model = await FakeOpenAIServer(default=openai_reply(decide)).start()
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("QUORUM_", "BINANCE_", "OPENAI_", "ANTHROPIC_",
                                                                    "REDIS_", "TELEGRAM_"))}
    env.update({
        "TRADING_MODE": "paper", "DATABASE_URL": truth_db, "SYMBOLS": ",".join(SYMBOLS),
        "INITIAL_CAPITAL": "1000", "MODELS": ",".join(VOTERS), "RULES_VOTER": "always",
        "OPENAI_API_KEY": "sk-truth-0000", "OPENAI_BASE_URL": model.base_url, "MODEL_TIMEOUT_SECONDS": "3",
        "MODEL_RETRY_ATTEMPTS": "1",
        "DAILY_AI_BUDGET_USD": "100000", "MIN_AI_CONFIDENCE": "0.6", "MAX_DRAWDOWN_PCT": "95",
        "BINANCE_FAPI_URL": exchange.rest_root, "BINANCE_FSTREAM_URL": exchange.fstream_root,
        TEST_CLOCK_ENV: clock.spec(), "API_HOST": "127.0.0.1", "API_PORT": str(port), "API_TOKEN": "truth-token",
        "LOG_FORMAT": "json", "VAR_DIR": str(tmp_path / "var"),
    })
    service = Service(env, tmp_path)
    api = httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=5.0)
    pool = await asyncpg.create_pool(truth_db, min_size=1, max_size=2)
    try:
        await service.start()

        async def agreed() -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]] | list[str]:
            """(metrics, status, select) when all three agree (the record read twice, unchanged)."""
            db = await select_record(pool)
            st = (await api.get("/status")).json()
            m = parse((await api.get("/metrics")).text)
            if st.get("equity") is None or st.get("source") != "engine":
                return ["no engine state yet"]
            bad = mismatches(m, st, db)
            return bad if bad or await select_record(pool) != db else (m, st, db)

        async def traded() -> bool:
            return bool(await pool.fetchval("SELECT count(*) >= 1 FROM positions WHERE status = 'closed'"))

        await _until("a closed paper trade", traded, 300, every=1.0)
        m, st, db = await _until("/metrics = /status = SELECT", agreed, 60, every=0.3)
        trades_before = sum(db["trades"].values())
        assert trades_before >= 1 and db["fees"] > 0
        assert one(m, "quorum_cache_misses_total") and one(m, "quorum_cache_misses_total") > 0  # type: ignore[operator]
        assert sum((m.get("quorum_loop_duration_seconds_count") or {}).values()) > 0
        assert "# HELP quorum_model_calls_total Model calls (this engine process, since its start)" in (
            await api.get("/metrics")).text

        async def calls_match(since: float) -> bool:
            seen = sum(1 for r in model.requests if r.at > since)
            calls = parse((await api.get("/metrics")).text).get("quorum_model_calls_total", {})
            return sum(calls.get((("voter", v),), 0) for v in VOTERS) == seen and seen > 0

        await _until("model calls on /metrics = requests the fake model saw", lambda: calls_match(0.0), 60, every=0.2)

        # SIGKILL, as a crash or an OOM kill would: no clean-up at all
        assert service.proc is not None
        killed_at_wall, killed_at = time.time(), time.monotonic()
        service.proc.send_signal(signal.SIGKILL)
        await service.proc.wait()
        await asyncio.sleep(1.0)  # its API child notices the closed pipe and exits
        await service.start()

        async def restarted() -> bool:
            st = (await api.get("/status")).json()
            return st["started_ms"] > killed_at_wall * 1000 and st.get("source") == "engine"

        await _until("the restarted service's engine state", restarted, 90)
        m, st, db = await _until("/metrics = /status = SELECT after the restart", agreed, 60, every=0.3)
        assert sum(db["trades"].values()) >= trades_before  # the record's totals carried on, not from zero
        assert one(m, "quorum_engine_start_time_seconds") == st["started_ms"] / 1000 > killed_at_wall
        await _until("model calls counted from the new process's start", lambda: calls_match(killed_at), 90,
                     every=0.2)
        assert await service.stop() == 0
    finally:
        if service.proc is not None and service.proc.returncode is None:
            service.proc.kill()
            await service.proc.wait()
        await api.aclose()
        await pool.close()
        await model.stop()
        await exchange.stop()
        print("\n".join(service.log.read_text().splitlines()[-15:]) if service.log.exists() else "")
    assert "Traceback" not in service.log.read_text()
