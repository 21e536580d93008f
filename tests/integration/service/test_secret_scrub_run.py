"""No key leaves the service, current or past: the real `quorum run` process (paper mode, the
live-style fake Binance in its own process) whose fake model providers echo keys — the
configured OpenAI key, a rotated key that is no longer configured, a masked form, and a
JSON-escaped copy of the configured Anthropic key — in their errors and replies. Afterwards every
table (each row cast to text), every log line of the service (engine and API child) and every
HTTP response (API and what Telegram was sent) is searched for each key: 0 hits."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest

from tests.conftest import REDIS_URL, scratch_database
from tests.fakes.anthropic_server import FakeAnthropicServer
from tests.fakes.openai_server import FakeOpenAIServer, Reply
from tests.fakes.telegram_server import FakeTelegram
from tests.fakes.voters import parsed, vote
from tests.integration.service.test_smoke_run import _free_port, _start_fake_binance, _until

KEY = "sk-proj-Qz7Lm2Vx9Tb4Nw8Rk3Jd6Hf1Yc5Gs0Pa"  # OPENAI_API_KEY, configured
ANTHROPIC_KEY = "sk-ant-api03-Wk5Hp2Zr8Lq/Dv3Mn6Bx1Tq9e+Uo4="  # ANTHROPIC_API_KEY, configured
ROTATED = "sk-proj-OLDr0tat3dK3yWq8Ze5Xn2Bv7Mc4Hs6"  # last month's key: no longer configured
MASKED = "sk-proj-Qz7Lm2…Gs0Pa"  # how OpenAI echoes a key
ESCAPED = json.dumps(ANTHROPIC_KEY)[1:-1].replace("/", "\\/")  # as a JSON encoder that escapes '/'
TG_TOKEN = "7123456789:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw"
CHAT = 4242


def _windows(secret: str, body_from: int, size: int = 10) -> list[str]:
    body = secret[body_from:]
    return [body[i:i + size] for i in range(len(body) - size + 1)]


# a family leaks when its full text or any 10 characters in a row of the random part appear
NEEDLES: dict[str, list[str]] = {
    "configured": [KEY, *_windows(KEY, 8)],
    "configured_anthropic": [ANTHROPIC_KEY, *_windows(ANTHROPIC_KEY, 13)],
    "rotated": [ROTATED, *_windows(ROTATED, 8)],
    "masked": [MASKED],
    "json_escaped": [ESCAPED, *_windows(ESCAPED, 13)],
    "telegram_token": [TG_TOKEN, *_windows(TG_TOKEN, 11)],
}


def leaks(text: str) -> list[str]:
    """The needle families found in `text`, as written or once its JSON is decoded (JSON output
    writes '…' as \\u2026 and doubles backslashes: a key is no less leaked for that)."""
    forms = [text]
    try:
        forms.append(json.dumps(json.loads(text), ensure_ascii=False))
    except ValueError:
        pass
    return [family for family, needles in NEEDLES.items() if any(n in form for n in needles for form in forms)]


def openai_error(_: dict[str, Any]) -> Reply:
    return Reply(status=401, error_message=(
        f"Incorrect API key provided: {MASKED} (the previous key {ROTATED} was revoked). You can find your "
        f"API key at https://platform.openai.com/account/api-keys. (sent: Bearer {KEY})"))


def anthropic_vote(body: dict[str, Any]) -> Reply:
    got = parsed(body)
    if got is None:
        return Reply(status=401, error_message=f"invalid x-api-key {ANTHROPIC_KEY}")
    sym, price, _ = got
    v = vote(sym, price, "LONG")
    v["reasoning"] = (f"trend up; the gateway said {{\\\"x-api-key\\\":\\\"{ESCAPED}\\\"}} "
                      f"and still accepts {ROTATED}")
    return Reply(tool_input=v)


@pytest.fixture
async def run_db() -> AsyncIterator[str]:
    async with scratch_database("quorum_scrub") as url:
        yield url


async def table_hits(url: str) -> tuple[int, dict[str, list[str]]]:
    """(tables searched, {table: leaking families}) with every column of every row as text."""
    conn = await asyncpg.connect(url)
    try:
        tables = [r["tablename"] for r in await conn.fetch(
            "SELECT tablename FROM pg_tables WHERE schemaname = 'public' ORDER BY tablename")]
        hits: dict[str, list[str]] = {}
        for table in tables:
            rows = await conn.fetch(f'SELECT t::text AS row FROM "{table}" t')
            found = leaks("\n".join(r["row"] for r in rows))
            if found:
                hits[table] = found
        return len(tables), hits
    finally:
        await conn.close()


async def test_no_key_in_any_table_log_line_or_response_of_a_paper_run(
        run_db: str, shared_data: Path, tmp_path: Path) -> None:
    fake, info = await _start_fake_binance(shared_data)
    openai = await FakeOpenAIServer(default=openai_error).start()
    anthropic = await FakeAnthropicServer(default=anthropic_vote).start()
    telegram = FakeTelegram(TG_TOKEN)
    await telegram.start()
    port, token = _free_port(), "scrub-token-" + uuid.uuid4().hex[:8]
    env = {**os.environ, "TRADING_MODE": "paper", "DATABASE_URL": run_db, "REDIS_URL": REDIS_URL,
           "SYMBOLS": "BTCUSDT,ETHUSDT", "TIMEFRAMES": "1m,5m,15m", "EXECUTION_TIMEFRAME": "1m",
           "DECISION_TIMEFRAME": "1m", "MONITOR_INTERVAL_SECONDS": "60",
           "MODELS": "openai:gpt-scrub,anthropic:claude-scrub", "MIN_VOTERS": "1", "MIN_AGREEMENT": "0.5",
           "MIN_AI_CONFIDENCE": "0.5", "OPENAI_API_KEY": KEY, "OPENAI_BASE_URL": openai.base_url,
           "ANTHROPIC_API_KEY": ANTHROPIC_KEY, "ANTHROPIC_BASE_URL": anthropic.base_url,
           "BINANCE_FAPI_URL": info["rest_root"], "BINANCE_FSTREAM_URL": info["ws_root"],
           "TELEGRAM_BOT_TOKEN": TG_TOKEN, "TELEGRAM_CHAT_ID": str(CHAT), "TELEGRAM_API_URL": telegram.url,
           "API_HOST": "127.0.0.1", "API_PORT": str(port), "API_TOKEN": token,
           "LOG_FORMAT": "json", "LOG_LEVEL": "DEBUG", "VAR_DIR": str(tmp_path / "var")}
    env.pop("QUORUM_TEST_CLOCK", None)
    log_path = tmp_path / "quorum-run.log"
    with log_path.open("w") as log:
        service = await asyncio.create_subprocess_exec(sys.executable, "-m", "quorum", "run", cwd=tmp_path, env=env,
                                                       stdout=log, stderr=subprocess.STDOUT)
    api = httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=5.0)
    responses: list[tuple[str, str]] = []  # (status line and headers, body)
    try:
        async def answering() -> bool:
            try:
                return (await api.get("/health/live")).status_code == 200
            except httpx.HTTPError:
                return False

        await _until("the API answering", answering, 60)

        async def recorded() -> bool:
            conn = await asyncpg.connect(run_db)
            try:
                errors = await conn.fetchval("SELECT count(*) FROM model_votes WHERE error IS NOT NULL")
                votes = await conn.fetchval("SELECT count(*) FROM model_votes WHERE raw_reply IS NOT NULL")
                opened = await conn.fetchval("SELECT count(*) FROM positions")
            except asyncpg.UndefinedTableError:
                return False
            finally:
                await conn.close()
            return bool(errors and votes and opened)

        await _until("provider errors, echoed replies and a paper position recorded", recorded, 240)
        telegram.push_message(CHAT, "/status")
        await _until("Telegram answering /status", lambda: _replied(telegram), 30)
        for method, path, headers in [
            ("GET", "/health", {}), ("GET", "/health/live", {}), ("GET", "/status", {}), ("GET", "/metrics", {}),
            ("GET", "/nope", {}), ("POST", "/control/pause", {}),
            ("POST", "/control/pause", {"Authorization": f"Bearer {KEY}"}),
            ("POST", "/control/pause", {"Authorization": f"Bearer {token}"}),
            ("POST", "/control/resume", {"Authorization": f"Bearer {token}"}),
            ("GET", "/status", {}),
        ]:
            r = await api.request(method, path, headers=headers)
            responses.append((f"{method} {path} {r.status_code} {dict(r.headers)}", r.text))
        status = (await api.get("/status")).json()
        assert status["last_decisions"], "/status shows the decisions (with the voters' texts)"
        service.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(service.wait(), 30) == 0
    finally:
        if service.returncode is None:
            service.kill()
            await service.wait()
        await api.aclose()
        await openai.stop()
        await anthropic.stop()
        await telegram.stop()
        fake.terminate()
        await asyncio.wait_for(fake.wait(), 15)
    responses += [("telegram sendMessage", json.dumps(m)) for m in telegram.sent]
    log_lines = log_path.read_text().splitlines()
    n_tables, tables = await table_hits(run_db)
    conn = await asyncpg.connect(run_db)
    try:  # the providers really did echo the keys, and the records kept what the voters said
        assert await conn.fetchval("SELECT count(*) FROM model_votes WHERE error LIKE '%Incorrect API key%'") >= 1
        assert await conn.fetchval("SELECT count(*) FROM model_votes WHERE raw_reply LIKE '%the gateway said%'") >= 1
    finally:
        await conn.close()
    log_hits = [f for line in log_lines for f in leaks(line)]
    response_hits = [f for head, body in responses for f in set(leaks(head) + leaks(body))]
    figure = (f"{len(tables)} of {n_tables} tables {tables}, {len(log_hits)} hits in {len(log_lines)} log lines, "
              f"{len(response_hits)} hits in {len(responses)} responses")
    print(f"\nsecret scrub: {figure}")
    assert len(telegram.sent) >= 2 and len(log_lines) > 20 and n_tables > 10  # every exit was exercised
    assert not tables and not log_hits and not response_hits, figure
    assert "Traceback" not in "\n".join(log_lines)


async def _replied(telegram: FakeTelegram) -> bool:
    return any("mode" in str(m.get("text", "")) and "uptime" in str(m.get("text", "")) for m in telegram.sent)
