"""Migration 009 through `quorum db upgrade`: rows stored before the write-side scrub (provider
errors echoing keys, as main stored them) are scrubbed in place — the configured key, a rotated
key, a masked form, a JSON-escaped copy, a Bearer token, a bare key-shaped token and a Telegram
token — while Quorum's identifiers and ordinary text stay exactly as they were."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import shutil
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import pytest

from quorum.domain.orders import client_order_id
from quorum.store.migrate import MIGRATIONS_DIR, MigrationError, apply_migrations
from tests.conftest import scratch_database

CONFIGURED = "ds-lowercase-secret-7f3a9c1d0e"  # DEEPSEEK_API_KEY: no known shape, only its value says secret
ROTATED = "sk-proj-OLDr0tat3dK3yWq8Ze5Xn2Bv7Mc4Hs6"
MASKED = "sk-proj-Ab12…Yz90"
ESCAPED = "sk-ant-api03-Wk5Hp2Zr8Lq\\/Dv3Mn6Bx1Tq9e"
BEARER = "eyJhbGciOiJIUzI1NiJ9.Zq81Lw3Rt7"
BARE = "vmPUZE6mv9SD5VNHk4HlWFsOr6aKE2zvsw0MuIgwCIPy6utIco14y7Ju91duEh8A"
TG = "7123456789:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw"
# (a row cast to text doubles backslashes: the escaped copy is searched by its parts)
NEEDLES = [CONFIGURED, ROTATED, "OLDr0tat3d", MASKED, "Ab12…Yz90", "Wk5Hp2Zr8Lq", "Dv3Mn6Bx1Tq9e", BEARER, "Zq81Lw3Rt7",
           BARE, "vmPUZE6mv9", TG, "AAHdqTcvCH1"]


@pytest.fixture
async def old_db() -> AsyncIterator[str]:
    async with scratch_database("quorum_mig009") as url:
        yield url


async def _dump(conn: asyncpg.Connection) -> dict[str, str]:
    tables = [r["tablename"] for r in await conn.fetch(
        "SELECT tablename FROM pg_tables WHERE schemaname = 'public' AND tablename <> 'schema_migrations'")]
    return {t: "\n".join(r["row"] for r in await conn.fetch(f'SELECT t::text AS row FROM "{t}" t')) for t in tables}


async def test_quorum_db_upgrade_scrubs_rows_stored_before(old_db: str, tmp_path: Path) -> None:
    earlier = tmp_path / "migrations"
    earlier.mkdir()
    for f in MIGRATIONS_DIR.iterdir():
        if f.name[:3].isdigit() and int(f.name[:3]) < 9:
            shutil.copy(f, earlier / f.name)
    digest = hashlib.sha256(b"snapshot").hexdigest()
    decision = "d-BTCUSDT-1759996800000-ab12cd34"
    cid = client_order_id("paper", f"p-{decision}", "entry")
    conn = await asyncpg.connect(old_db)  # a plain connection: writes exactly what it is given, as main did
    try:
        await apply_migrations(conn, earlier)
        await conn.execute(
            """INSERT INTO decisions (id, mode, symbol, at, analyst, action, reason)
               VALUES ($1, 'paper', 'BTCUSDT', now(), 'models', 'HOLD', $2)""",
            decision, f"no consensus on snapshot {digest}; openai abstained: {MASKED}")
        await conn.execute(
            """INSERT INTO model_votes (decision_id, snapshot_hash, symbol, voter, provider, model, prompt_version,
                   raw_reply, parsed_vote, abstain_reason, error)
               VALUES ($1, $2, 'BTCUSDT', 'openai:gpt-x', 'openai', 'gpt-x', 'v1', $3, $4::jsonb, $5, $6)""",
            decision, digest, f'{{"reasoning": "gateway said {{\\"x-api-key\\":\\"{ESCAPED}\\"}}"}}',
            json.dumps({"reasoning": f"old key {ROTATED}", "headers": {"Authorization": f"Bearer {BEARER}"}}),
            f"auth: Error code: 401 - Incorrect API key provided: {MASKED} (previous {ROTATED})",
            f"AuthenticationError: key {CONFIGURED} rejected")
        await conn.execute(
            """INSERT INTO orders (client_order_id, mode, symbol, side, type, quantity, state, purpose, decision_id,
                   error) VALUES ($1, 'paper', 'BTCUSDT', 'buy', 'market', 0.01, 'rejected', 'entry', $2, $3)""",
            cid, decision, f"binance -2015: Invalid API-key {BARE}")
        await conn.execute("INSERT INTO order_events (client_order_id, state, detail) VALUES ($1, 'rejected', $2)",
                           cid, json.dumps({"refused": f"apiKey={BARE}", "decision": decision}))
        await conn.execute("INSERT INTO alerts (mode, severity, kind, message) VALUES ('paper', 'warning', 'tg', $1)",
                           f"send failed: https://api.telegram.org/bot{TG}/sendMessage")
        before = await _dump(conn)
    finally:
        await conn.close()
    assert all(any(n in text for text in before.values()) for n in NEEDLES)  # every needle is stored

    env = {**os.environ, "DATABASE_URL": old_db, "DEEPSEEK_API_KEY": CONFIGURED, "LOG_FORMAT": "json"}
    for var in ("OPENAI_API_KEY", "ANTHROPIC_API_KEY"):
        env.pop(var, None)
    cmd = [sys.executable, "-m", "quorum", "db", "upgrade"]
    done = await asyncio.to_thread(subprocess.run, cmd, cwd=tmp_path, env=env, capture_output=True, text=True,
                                   timeout=120)
    assert done.returncode == 0, done.stderr
    assert "applied 009_scrub_stored_secrets.py" in done.stdout

    conn = await asyncpg.connect(old_db)
    try:
        after = await _dump(conn)
        leaked = {n: [t for t, text in after.items() if n in text] for n in NEEDLES}
        assert not any(leaked.values()), leaked
        assert await conn.fetchval("SELECT reason FROM decisions WHERE id = $1", decision) == \
            f"no consensus on snapshot {digest}; openai abstained: sk-***"
        vote = await conn.fetchrow("SELECT snapshot_hash, parsed_vote::text AS p, error FROM model_votes")
        assert vote["snapshot_hash"] == digest and vote["error"] == "AuthenticationError: key *** rejected"
        assert json.loads(vote["p"]) == {"reasoning": "old key sk-***", "headers": {"Authorization": "***"}}
        event = await conn.fetchval("SELECT detail::text FROM order_events WHERE client_order_id = $1", cid)
        assert json.loads(event) == {"refused": "apiKey=***", "decision": decision}
    finally:
        await conn.close()
    again = await asyncio.to_thread(subprocess.run, cmd, cwd=tmp_path, env=env, capture_output=True, text=True,
                                    timeout=120)
    assert again.returncode == 0 and "nothing applied" in again.stdout


async def test_a_failing_python_step_is_one_line_and_rolled_back(old_db: str, tmp_path: Path) -> None:
    (tmp_path / "001_t.sql").write_text("CREATE TABLE t (v text);")
    (tmp_path / "002_fill.py").write_text(
        "async def apply(conn):\n"
        "    await conn.execute(\"INSERT INTO t VALUES ('x')\")\n"
        "    raise ValueError('boom')\n")
    conn = await asyncpg.connect(old_db)
    try:
        with pytest.raises(MigrationError, match=r"^002_fill.py failed and was rolled back: ValueError: boom$"):
            await apply_migrations(conn, tmp_path)
        assert await conn.fetchval("SELECT count(*) FROM t") == 0
        assert [r["version"] for r in await conn.fetch("SELECT version FROM schema_migrations")] == [1]
        (tmp_path / "002_fill.py").write_text(
            "async def apply(conn):\n    await conn.execute(\"INSERT INTO t VALUES ('y')\")\n")
        assert await apply_migrations(conn, tmp_path) == ["002_fill.py"]
        assert await conn.fetchval("SELECT v FROM t") == "y"
    finally:
        await conn.close()
