"""Postgres connection: the configured DATABASE_URL, or an embedded server under `var/`.

`resolve_database_url()` decides which; `create_pool()` opens an asyncpg pool and turns an
unreachable server into a `DatabaseUnavailable` error that names the URL (password removed)
and says how to start one. `wait_for_database()` is the service's start-up: a server that is
DOWN is waited for (capped backoff, one log line per attempt); a server that REFUSES us (bad
password, unknown role or database, no privilege) is a configuration error.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit, urlunsplit

import asyncpg
import structlog

from quorum.config import ConfigError

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
    """Open a pool; an unreachable server raises `DatabaseUnavailable` with a clear message, a
    refusing one (bad password, unknown database …) `ConfigError`."""
    try:
        pool = await asyncpg.create_pool(
            url, min_size=min_size, max_size=max_size, timeout=timeout, init=_init_connection
        )
    except REFUSALS as exc:
        raise refusal_error(url, exc) from None
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
    except REFUSALS as exc:
        raise refusal_error(url, exc) from None
    except (TimeoutError, OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
        raise DatabaseUnavailable(
            f"cannot connect to Postgres at {redact_url(url)}: {type(exc).__name__}: {exc}. "
            "Start one (e.g. `docker compose up -d postgres`), or unset DATABASE_URL to use the embedded one."
        ) from None
    await _init_connection(conn)
    return conn


# The server answered and said no: retrying cannot help, the configuration must change.
REFUSALS: tuple[type[Exception], ...] = (
    asyncpg.InvalidAuthorizationSpecificationError,  # unknown role; InvalidPasswordError is a subclass
    asyncpg.InvalidCatalogNameError,  # unknown database
    asyncpg.InsufficientPrivilegeError,  # e.g. no CONNECT privilege
)
# The server is not there (yet): refused, timed out, starting up or shutting down, full.
OUTAGES: tuple[type[Exception], ...] = (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError)


def database_target(url: str) -> str:
    """host:port of a Postgres URL (never the user or password); a socket directory given as
    `?host=/path` counts as the host."""
    parts = urlsplit(url)
    host = parts.hostname or (parse_qs(parts.query).get("host") or ["localhost"])[0]
    try:
        port = parts.port or 5432
    except ValueError:
        port = 5432
    return f"{host}:{port}"


def refusal_error(url: str, exc: Exception) -> ConfigError:
    """The one-line configuration error for a server that refused us."""
    reason = (str(exc).splitlines() or [""])[0][:200]
    return ConfigError(
        f"Postgres at {database_target(url)} refused us: {reason} ({type(exc).__name__}); "
        "fix the user, password or database name in DATABASE_URL (or the role's privileges)")


async def _pause(delay_s: float, stop: asyncio.Event | None, sleep: Callable[[float], Awaitable[Any]]) -> None:
    if stop is None:
        await sleep(delay_s)
        return
    sleeper = asyncio.ensure_future(sleep(delay_s))
    stopper = asyncio.ensure_future(stop.wait())
    try:
        await asyncio.wait({sleeper, stopper}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in (sleeper, stopper):
            task.cancel()


async def wait_for_database(url: str, *, stop: asyncio.Event | None = None,
                            sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep, first_delay_s: float = 1.0,
                            max_delay_s: float = 30.0, connect_timeout_s: float = 5.0) -> bool:
    """Connect once to prove the server answers and accepts us; True when it does.

    While it is down (connection refused, timeout, "the database system is starting up"/"shutting
    down", too many connections) this retries after 1 s, 2 s, 4 s … capped at `max_delay_s`, with
    one warning per failed attempt naming host:port and what to do, until it answers or `stop`
    is set (then False). A refusal (bad password, unknown role or database, no privilege) or an
    unusable URL raises `ConfigError` at once. `sleep` is injectable for tests."""
    target = database_target(url)
    delay = first_delay_s
    attempt = 0
    while stop is None or not stop.is_set():
        attempt += 1
        try:
            conn = await asyncpg.connect(url, timeout=connect_timeout_s)
        except REFUSALS as exc:
            raise refusal_error(url, exc) from None
        except (ValueError, OverflowError) as exc:  # asyncpg's ClientConfigurationError too; a port > 65535
            raise ConfigError(f"DATABASE_URL is not a usable Postgres URL ({type(exc).__name__}); "
                              "expected postgresql://USER:PASSWORD@HOST:PORT/DATABASE") from None
        except OUTAGES as exc:
            log.warning("database.waiting", target=target, attempt=attempt, error=type(exc).__name__,
                        retry_in_s=delay, hint="start Postgres or fix DATABASE_URL")
        else:
            await conn.close()
            if attempt > 1:
                log.info("database.reachable", target=target, attempts=attempt)
            return True
        await _pause(delay, stop, sleep)
        delay = min(delay * 2, max_delay_s)
    return False
