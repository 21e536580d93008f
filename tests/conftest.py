"""Shared fixtures. Integration tests use the real Postgres (a throwaway database per test
session, dropped afterwards) and the real Redis (db 15, a per-session key namespace deleted
afterwards). Set TEST_DATABASE_URL / TEST_REDIS_URL to point elsewhere."""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path

import asyncpg
import pytest

from quorum.store.db import create_pool
from quorum.store.migrate import apply_migrations

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("QUORUM_SHARED_DATA", ROOT.parent / "shared" / "data"))
BUNDLED_DATA = ROOT / "data"

ADMIN_URL = os.environ.get("TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/15")


def _db_url(name: str) -> str:
    base, _, _ = ADMIN_URL.rpartition("/")
    return f"{base}/{name}"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The real Binance candles beside the project (../shared/data)."""
    if not SHARED_DATA.is_dir():
        pytest.fail(f"shared data not found at {SHARED_DATA}; set QUORUM_SHARED_DATA")
    return SHARED_DATA


@pytest.fixture(scope="session")
async def pg_url() -> AsyncIterator[str]:
    """A fresh database with every migration applied; dropped at the end of the session."""
    name = f"quorum_test_{uuid.uuid4().hex[:10]}"
    admin = await asyncpg.connect(ADMIN_URL)
    await admin.execute(f'CREATE DATABASE "{name}"')
    url = _db_url(name)
    try:
        conn = await asyncpg.connect(url)
        try:
            await apply_migrations(conn)
        finally:
            await conn.close()
        yield url
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


@asynccontextmanager
async def scratch_database(prefix: str) -> AsyncIterator[str]:
    """A new, empty database on the test server, dropped (connections and all) afterwards; yields its URL."""
    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    admin = await asyncpg.connect(ADMIN_URL)
    await admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield _db_url(name)
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


@pytest.fixture(scope="session")
async def empty_pg_url() -> AsyncIterator[str]:
    """A fresh database with nothing in it (for migration-runner tests)."""
    async with scratch_database("quorum_empty") as url:
        yield url


_TABLES_SQL = """SELECT string_agg(quote_ident(tablename), ', ') FROM pg_tables
                 WHERE schemaname = 'public' AND tablename <> 'schema_migrations'"""


@pytest.fixture
async def pool(pg_url: str) -> AsyncIterator[asyncpg.Pool]:
    """A pool on the session database, emptied before each test."""
    p = await create_pool(pg_url, min_size=1, max_size=5)
    async with p.acquire() as conn:
        tables = await conn.fetchval(_TABLES_SQL)
        if tables:
            await conn.execute(f"TRUNCATE {tables} RESTART IDENTITY CASCADE")
    try:
        yield p
    finally:
        await p.close()


@pytest.fixture
async def redis_cache() -> AsyncIterator[object]:
    """A RedisCache on db 15 with its own namespace; its keys are deleted afterwards."""
    import redis.asyncio as aioredis

    from quorum.cache import RedisCache

    ns = f"quorum-test:{uuid.uuid4().hex[:8]}:"
    cache = RedisCache(REDIS_URL, namespace=ns)
    yield cache
    client = aioredis.from_url(REDIS_URL)
    keys = [k async for k in client.scan_iter(match=ns + "*")]
    if keys:
        await client.delete(*keys)
    await client.aclose()
    await cache.close()


@pytest.fixture
def tmp_cwd(tmp_path: Path) -> Iterator[Path]:
    """Run a test inside an empty directory (no stray .env)."""
    old = Path.cwd()
    os.chdir(tmp_path)
    try:
        yield tmp_path
    finally:
        os.chdir(old)
