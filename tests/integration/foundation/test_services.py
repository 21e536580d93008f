import os
import subprocess
import sys
import uuid
from pathlib import Path

import asyncpg
import pytest

from quorum.store.db import DatabaseUnavailable, create_pool, redact_url
from quorum.store.migrate import apply_migrations

ROOT = Path(__file__).resolve().parents[3]


async def test_redis_cache_round_trip_with_ttl(redis_cache):
    await redis_cache.set("k1", "v1", ttl_seconds=30)
    assert await redis_cache.get("k1") == b"v1"
    assert await redis_cache.get("nope") is None
    assert (redis_cache.hits, redis_cache.misses) == (1, 1)
    await redis_cache.set("short", b"x", ttl_seconds=0.05)
    import asyncio

    await asyncio.sleep(0.15)
    assert await redis_cache.get("short") is None
    assert await redis_cache.ping()


async def test_unreachable_database_message_names_url_without_password():
    url = "postgresql://quorum:hunter2secret@127.0.0.1:1/quorum"
    with pytest.raises(DatabaseUnavailable) as info:
        await create_pool(url, timeout=2)
    message = str(info.value)
    assert "hunter2secret" not in message
    assert "postgresql://quorum:***@127.0.0.1:1/quorum" in message
    assert "Start one" in message
    assert redact_url("postgresql://u@h/d") == "postgresql://u@h/d"


def _run_setup(env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(ROOT / "setup_database.py")], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=120)


async def test_setup_database_twice_second_applies_nothing(tmp_path):
    from tests.conftest import ADMIN_URL, _db_url

    name = f"quorum_setup_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(ADMIN_URL)
    await admin.execute(f'CREATE DATABASE "{name}"')
    try:
        env = {**os.environ, "DATABASE_URL": _db_url(name), "LOG_FORMAT": "json"}
        first = _run_setup(env, tmp_path)
        assert first.returncode == 0, first.stderr
        assert "applied 001_initial.sql" in first.stdout
        second = _run_setup(env, tmp_path)
        assert second.returncode == 0, second.stderr
        assert "nothing applied" in second.stdout
        bad = _run_setup({**env, "DATABASE_URL": "postgresql://x:pw123456@127.0.0.1:1/x"}, tmp_path)
        assert bad.returncode == 1 and "pw123456" not in bad.stderr + bad.stdout
        assert "cannot connect to Postgres at postgresql://x:***@127.0.0.1:1/x" in bad.stderr
        conf = _run_setup({**env, "MAX_LEVERAGE": "1000"}, tmp_path)
        assert conf.returncode == 2 and "MAX_LEVERAGE" in conf.stderr
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


async def test_embedded_postgres_when_no_database_url(tmp_path):
    from quorum.store.db import resolve_database_url, stop_embedded_postgres

    url = resolve_database_url(None, tmp_path / "var")
    assert (tmp_path / "var" / "pgdata").is_dir()
    conn = await asyncpg.connect(url)
    try:
        applied = await apply_migrations(conn)
        assert applied and applied[0] == "001_initial.sql"
        assert await conn.fetchval("SELECT count(*) FROM win_rate") == 0
    finally:
        await conn.close()
    try:
        assert resolve_database_url(None, tmp_path / "var") == url  # reused, not restarted
    finally:
        stop_embedded_postgres(tmp_path / "var")
