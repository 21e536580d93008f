"""Postgres connection: the configured DATABASE_URL, or an embedded server under `var/`.

`resolve_database_url()` decides which; `create_pool()` opens an asyncpg pool and turns an
unreachable server into a `DatabaseUnavailable` error that names the URL (password removed)
and says how to start one.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import structlog

log = structlog.get_logger(__name__)

EMBEDDED_DB_NAME = "quorum"
_embedded_servers: dict[Path, Any] = {}


class DatabaseUnavailable(Exception):
    """The database cannot be reached; the message is safe to print (no password)."""


def redact_url(url: str) -> str:
    """The URL with its password replaced by ***."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return urlunsplit(parts._replace(netloc=netloc))


def start_embedded_postgres(var_dir: Path) -> str:
    """Start (or reuse) an embedded PostgreSQL in `var_dir/pgdata` and return its URL."""
    data_dir = (var_dir / "pgdata").resolve()
    if data_dir not in _embedded_servers:
        import pgserver  # heavy import, only when needed

        data_dir.mkdir(parents=True, exist_ok=True)
        server = pgserver.get_server(str(data_dir), cleanup_mode="stop")
        exists = server.psql(f"SELECT 1 FROM pg_database WHERE datname = '{EMBEDDED_DB_NAME}';")
        if "1 row" not in exists:
            server.psql(f"CREATE DATABASE {EMBEDDED_DB_NAME};")
        _embedded_servers[data_dir] = server
        log.info("database.embedded", data_dir=str(data_dir))
    uri: str = _embedded_servers[data_dir].get_uri(EMBEDDED_DB_NAME)
    return uri


def stop_embedded_postgres(var_dir: Path) -> None:
    """Stop an embedded server this process started (tests, the demo's end)."""
    server = _embedded_servers.pop((var_dir / "pgdata").resolve(), None)
    if server is not None:
        server.cleanup()


def resolve_database_url(database_url: str | None, var_dir: Path) -> str:
    """DATABASE_URL when set; otherwise an embedded server (logged once, clearly)."""
    if database_url:
        log.info("database.configured", url=redact_url(database_url))
        return database_url
    return start_embedded_postgres(var_dir)


async def _init_connection(conn: asyncpg.Connection) -> None:
    for typename in ("json", "jsonb"):
        await conn.set_type_codec(typename, encoder=json.dumps, decoder=json.loads, schema="pg_catalog")


async def create_pool(url: str, *, min_size: int = 1, max_size: int = 10, timeout: float = 10.0) -> asyncpg.Pool:
    """Open a pool; an unreachable server raises `DatabaseUnavailable` with a clear message."""
    try:
        pool = await asyncpg.create_pool(
            url, min_size=min_size, max_size=max_size, timeout=timeout, init=_init_connection
        )
    except (TimeoutError, OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
        raise DatabaseUnavailable(
            f"cannot connect to Postgres at {redact_url(url)}: {type(exc).__name__}: {exc}. "
            "Start one (e.g. `docker compose up -d postgres` or "
            "`pg_ctlcluster <version> main start`), or unset DATABASE_URL to use the embedded one."
        ) from None
    assert pool is not None
    return pool


async def connect(url: str, timeout: float = 10.0) -> asyncpg.Connection:
    """One connection with the same error handling as `create_pool`."""
    try:
        conn = await asyncpg.connect(url, timeout=timeout)
    except (TimeoutError, OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
        raise DatabaseUnavailable(
            f"cannot connect to Postgres at {redact_url(url)}: {type(exc).__name__}: {exc}. "
            "Start one (e.g. `docker compose up -d postgres`), or unset DATABASE_URL to use the embedded one."
        ) from None
    await _init_connection(conn)
    return conn
