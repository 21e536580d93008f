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
import os
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit, urlunsplit

import asyncpg
import structlog

from quorum.config import ConfigError
from quorum.scrub import scrub, scrub_value

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
    """Start (or reuse) an embedded PostgreSQL in `var_dir/pgdata` and return its URL.

    The server is shared by every Quorum process on the same VAR_DIR (pgserver keeps their pids
    in `pgdata/.handle_pids.json`) and stopped by the last one to exit cleanly
    (`stop_embedded_postgres`). A server left behind by a killed process (its pid is dead) is
    detected here, logged and reused — never a second server on the same data."""
    data_dir = (var_dir / "pgdata").resolve()
    if data_dir not in _embedded_servers:
        import pgserver  # heavy import, only when needed

        data_dir.mkdir(parents=True, exist_ok=True)
        orphan = _forget_dead_handles(data_dir)
        server = pgserver.get_server(str(data_dir), cleanup_mode="stop")
        exists = server.psql(f"SELECT 1 FROM pg_database WHERE datname = '{EMBEDDED_DB_NAME}';")
        if "1 row" not in exists:
            server.psql(f"CREATE DATABASE {EMBEDDED_DB_NAME};")
        _embedded_servers[data_dir] = server
        if orphan is not None:
            log.warning("database.embedded_orphan_reused", data_dir=str(data_dir), server_pid=orphan[0],
                        dead_pids=orphan[1])
        log.info("database.embedded", data_dir=str(data_dir), server_pid=server.get_pid())
    uri: str = _embedded_servers[data_dir].get_uri(EMBEDDED_DB_NAME)
    return uri


def _alive(pid: int) -> bool:
    import psutil

    try:
        return bool(psutil.Process(pid).status() != psutil.STATUS_ZOMBIE)
    except psutil.Error:
        return False


def _forget_dead_handles(data_dir: Path) -> tuple[int | None, list[int]] | None:
    """Drop the pids of processes that died without letting go of the server (SIGKILL, OOM):
    left in the list, the server would never be stopped again. Returns (server pid, dead pids)
    when a server is still running for them (an orphan, reused next), else None."""
    from pgserver.postgres_server import PostgresServer
    from pgserver.utils import PostmasterInfo

    handles = data_dir / ".handle_pids.json"
    with PostgresServer._lock:
        try:
            pids = [int(p) for p in json.loads(handles.read_text())]
        except (OSError, ValueError, TypeError):
            return None
        dead = [p for p in pids if not _alive(p)]
        if not dead:
            return None
        handles.write_text(json.dumps([p for p in pids if p not in dead]))
        info = PostmasterInfo.read_from_pgdata(data_dir)
    if info is None or not info.is_running():
        return None
    return info.pid, dead


def stop_embedded_postgres(var_dir: Path | None = None) -> None:
    """Let go of the embedded server(s) this process started (all when `var_dir` is None); the
    server stops unless another live Quorum process still uses it. Called when a command exits
    cleanly (`quorum.cli.main`, `health_server.py`)."""
    dirs = list(_embedded_servers) if var_dir is None else [(var_dir / "pgdata").resolve()]
    for data_dir in dirs:
        server = _embedded_servers.pop(data_dir, None)
        if server is not None:
            others = [p for p in server.global_process_id_list.get() if p != os.getpid() and _alive(p)]
            server.cleanup()  # pg_ctl stop -w when no other process holds it
            log.info("database.embedded_released", data_dir=str(data_dir), server_pid=server.get_pid(),
                     stopped=not others, still_used_by=others or None)


def resolve_database_url(database_url: str | None, var_dir: Path) -> str:
    """DATABASE_URL when set; otherwise an embedded server (logged once, clearly)."""
    if database_url:
        log.info("database.configured", url=redact_url(database_url))
        return database_url
    return start_embedded_postgres(var_dir)


def _encode_json(value: Any) -> str:
    return json.dumps(scrub_value(value))


def _identity(text: str) -> str:
    return text


async def _init_connection(conn: asyncpg.Connection) -> None:
    """Every connection Quorum opens scrubs what it writes: each `text` parameter and each string
    inside a `json`/`jsonb` parameter passes through `quorum.scrub` (so no column — errors,
    reasons, raw replies, alerts, details — can store a key, whatever the caller). Quorum's own
    identifiers are left as they are by the scrubber, so lookups by id are unaffected."""
    for typename in ("json", "jsonb"):
        await conn.set_type_codec(typename, encoder=_encode_json, decoder=json.loads, schema="pg_catalog")
    await conn.set_type_codec("text", encoder=scrub, decoder=_identity, schema="pg_catalog", format="text")


async def _keep_session(conn: asyncpg.Connection) -> None:
    """A connection goes back to the pool as it is (asyncpg still rolls back an open
    transaction): Quorum keeps no session state on pooled connections — no LISTEN, no SET, no
    session advisory lock — so the default reset query would be a wasted round trip per use."""
    return None


async def create_pool(url: str, *, min_size: int = 1, max_size: int = 10, timeout: float = 10.0) -> asyncpg.Pool:
    """Open a pool; an unreachable server raises `DatabaseUnavailable` with a clear message, a
    refusing one (bad password, unknown database …) `ConfigError`."""
    try:
        pool = await asyncpg.create_pool(
            url, min_size=min_size, max_size=max_size, timeout=timeout, init=_init_connection, reset=_keep_session
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


async def recreate_database(conn: asyncpg.Connection, name: str, *, synchronous_commit: bool = True) -> None:
    """Drop database `name` (closing its sessions) and create it afresh, on the server `conn`
    is connected to; `synchronous_commit=False` sets it off for that database (commits do not
    wait for the WAL flush: only for throwaway databases)."""
    await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    await conn.execute(f'CREATE DATABASE "{name}"')
    if not synchronous_commit:
        await conn.execute(f'ALTER DATABASE "{name}" SET synchronous_commit = off')


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


async def select_one(pool: asyncpg.Pool) -> Any:
    """The server's answer to `SELECT 1` (1 when it works; raises when it does not answer): the
    health check's and the engine's outage probe."""
    return await pool.fetchval("SELECT 1")


async def database_answers(pool: asyncpg.Pool, timeout_s: float = 3.0) -> bool:
    """True when the server answers a trivial query within `timeout_s` (an outage probe)."""
    try:
        await asyncio.wait_for(select_one(pool), timeout_s)
    except Exception:
        return False
    return True


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
