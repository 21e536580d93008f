"""The service process: engine + API (+ Telegram), for `quorum run` and `quorum demo`.

The engine comes from the one composition root, `quorum.bootstrap.bootstrap`; this module only
adds the service surface around it (database and migrations, RuntimeState, the live-start gate,
the HTTP server, notifications, signal handling) and, for the demo, prints the record at the end.
"""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import structlog

from quorum.api.bind import guard_bind
from quorum.api.process import ApiProcess
from quorum.api.restart import start_through_outages
from quorum.api.status import build_status
from quorum.api.stopping import StopRequest, stop_on_signals
from quorum.bootstrap import bootstrap, configured_database_url, open_cache, open_record_pool
from quorum.cache import Cache, FallbackCache
from quorum.config import Settings, TradingMode, timeframe_seconds
from quorum.engine.runtime import RuntimeState
from quorum.notify.telegram import TelegramNotifier
from quorum.risk.gate import authorize_live_start
from quorum.store.db import (
    REFUSALS,
    DatabaseUnavailable,
    connect,
    database_target,
    recreate_database,
    redact_url,
    refusal_error,
    wait_for_database,
)
from quorum.store.migrate import apply_migrations

log = structlog.get_logger(__name__)


@dataclass
class Surface:
    """Everything around the engine, opened together and closed together."""

    settings: Settings
    runtime: RuntimeState
    pool: asyncpg.Pool
    cache: Cache
    notifier: TelegramNotifier | None = None
    port: int | None = None


async def migrate(url: str) -> list[str]:
    conn = await connect(url)
    try:
        return await apply_migrations(conn)
    finally:
        await conn.close()


class StartupStopped(Exception):
    """A stop signal arrived while the service was still waiting for its database."""


# errors while migrating or opening the pool that mean "the server went away again": wait again
_LOST_WHILE_OPENING: tuple[type[Exception], ...] = (
    DatabaseUnavailable, OSError, TimeoutError, asyncpg.PostgresConnectionError,
    asyncpg.exceptions.OperatorInterventionError, asyncpg.InterfaceError)


async def open_database(settings: Settings, url: str, stop: asyncio.Event | None, *,
                        sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep) -> asyncpg.Pool | None:
    """Wait until the server answers (`wait_for_database`: capped backoff, one line per try),
    apply the migrations and open the engine's pool on `url` (the configured database, or the
    demo's); from the wait again if the server drops in between. None when `stop` is set first;
    `ConfigError` when the server refuses us."""
    while True:
        if not await wait_for_database(url, stop=stop, sleep=sleep):
            return None
        try:
            applied = await migrate(url)
            if applied:
                log.info("database.migrated", applied=applied)
            return await open_record_pool(settings, url=url, min_size=2, max_size=10)
        except REFUSALS as exc:  # e.g. a role that may connect but not create the tables
            raise refusal_error(url, exc) from None
        except _LOST_WHILE_OPENING as exc:
            log.warning("database.lost_while_opening", target=database_target(url), error=type(exc).__name__)


def _mirror_cache(runtime: RuntimeState) -> Callable[[FallbackCache], None]:
    def on_change(cache: FallbackCache) -> None:
        runtime.cache_degraded = cache.reason if cache.degraded else None

    return on_change


@asynccontextmanager
async def service_surface(settings: Settings, runtime: RuntimeState, *, stop: asyncio.Event,
                          port: int | None = None, serve: bool = True,
                          database_url: str | None = None) -> AsyncIterator[Surface]:
    """API server on API_HOST:port, then the database (waited for, migrated), the cache and the
    Telegram notifier.

    The API comes first and needs no database, so while Postgres is down at start-up /health
    answers 503 `database`; the database is waited for with capped backoff until it answers or
    `stop` is set (the command's stop request: `quorum.api.stopping`), which raises
    `StartupStopped`. A server that refuses us raises `ConfigError`; a busy port `ApiPortInUse`; a
    non-loopback API_HOST without API_TOKEN `ConfigError` (before anything starts)."""
    url = database_url or configured_database_url(settings)
    runtime.loop = asyncio.get_running_loop()
    api: ApiProcess | None = None
    pool: asyncpg.Pool | None = None
    cache: Cache | None = None
    surface: Surface | None = None
    notifier_task: asyncio.Task[None] | None = None
    try:
        if serve:
            guard_bind(settings, port)  # no token, no exposure; an exposure is logged with its endpoints
            api = ApiProcess(settings, runtime, url, host=settings.api_host,
                             port=settings.api_port if port is None else port)
            port = await api.start()
            log.info("api.listening", host=settings.api_host, port=port)
        pool = await open_database(settings, url, stop)
        if pool is None:
            raise StartupStopped("stopped while waiting for the database")
        cache = open_cache(settings, on_change=_mirror_cache(runtime))
        surface = Surface(settings, runtime, pool, cache, port=port if serve else None)
        db_pool = pool
        surface.notifier = TelegramNotifier.from_settings(settings, runtime, lambda: build_status(runtime, db_pool),
                                                          pool=db_pool)
        if surface.notifier is not None:
            runtime.listeners.append(surface.notifier.on_event)
            notifier_task = asyncio.create_task(surface.notifier.run())
        yield surface
    finally:
        if notifier_task is not None:
            notifier_task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await notifier_task
        if surface is not None and surface.notifier is not None:
            await surface.notifier.close()
        if api is not None:
            await api.stop()
        if cache is not None:
            await cache.close()
        if pool is not None:
            await _close_pool(pool)


async def _close_pool(pool: asyncpg.Pool, timeout_s: float = 10.0) -> None:
    """Close gracefully; terminate when the server does not let us (it may be gone)."""
    try:
        await asyncio.wait_for(pool.close(), timeout_s)
    except (TimeoutError, OSError, asyncpg.PostgresError, asyncpg.InterfaceError):
        pool.terminate()


async def build_app(settings: Settings, surface: Surface, **overrides: Any) -> Any:
    """Engine + adapters from the composition root (`quorum.bootstrap`), wired to our
    runtime, pool and cache."""
    return await bootstrap(settings, pool=surface.pool, runtime=surface.runtime, cache=surface.cache, **overrides)


async def run_service(settings: Settings, *, override_gate: bool = False, who: str | None = None,
                      why: str | None = None) -> int:
    """`quorum run`: refuse live without the gate (or a recorded override), then serve until stopped."""

    with stop_on_signals() as stop:
        return await _serve_until_stopped(settings, stop, override_gate=override_gate, who=who, why=why)


async def _serve_until_stopped(settings: Settings, stop: StopRequest, *, override_gate: bool, who: str | None,
                               why: str | None) -> int:
    runtime = RuntimeState(mode=settings.trading_mode.value, scan_interval_s=float(settings.scan_interval_seconds),
                           symbols=list(settings.symbols))
    # one surface: /health answers from the first moment (503 `database` while Postgres is awaited)
    async with service_surface(settings, runtime, stop=stop.event) as surface:
        if override_gate and settings.trading_mode is not TradingMode.LIVE:
            log.info("gate.override_ignored", reason="not live mode")
        current: list[Any] = []

        async def stop_engine() -> None:
            if current:
                await current[0].engine.stop()

        stop.on_stop(stop_engine)

        async def start() -> Any:
            if settings.trading_mode is TradingMode.LIVE:
                _, override = await authorize_live_start(surface.pool, settings, override=override_gate, who=who,
                                                         why=why)
                runtime.live_override = override
            app = await build_app(settings, surface)
            current[:] = [app]
            if stop.requested:  # the signal came while the engine was being built
                await app.engine.stop()
            try:
                await stop.unless_stopped(app.engine.start())  # a stop cuts the exchange's retries short
            except BaseException:
                current.clear()
                await _close_quietly(app)
                raise
            return app

        app = await start_through_outages(start, surface.pool, configured_database_url(settings), stop.event)
        if app is not None:
            try:
                if not app.engine.stopping and not stop.requested:
                    stop.phase = "running"
                    log.info("service.started", mode=runtime.mode, port=surface.port)
                    await app.engine.run()
            finally:
                await app.close()
        log.info("service.stopped")
    return 0


async def _close_quietly(app: Any) -> None:
    try:
        await app.close()
    except Exception as exc:  # the database may be gone: what could be closed is closed
        log.info("service.start_cleanup", error=type(exc).__name__)


async def run_demo(settings: Settings, *, data_dir: str, symbols: str, speed: float, port: int | None,
                   keep_serving_s: float, days: float | None = None, database: str | None = None,
                   allow_contaminated: bool = False) -> int:
    """`quorum demo`: replay the bundled data through the paper engine as fast as possible
    (or at `speed` simulated seconds per second) with the API up, then print the record.
    `days` limits the replayed span (after the indicator warm-up); None = all the data."""

    with stop_on_signals() as stop:
        return await _demo(settings, stop, data_dir=data_dir, symbols=symbols, speed=speed, port=port,
                           keep_serving_s=keep_serving_s, days=days, database=database,
                           allow_contaminated=allow_contaminated)


def _contamination(settings: Settings, start_ms: int, allow: bool) -> dict[str, str] | None:
    """The configured models that knew the replayed period (voter → label); None (after one line
    on stderr) when that is refused — without `--allow-contaminated`, or a bad cutoff setting."""
    from quorum.ai.cutoffs import checked_period

    try:
        return checked_period(list(settings.models), start_ms, allow)
    except ValueError as exc:  # ContaminatedPeriod, or a bad <PROVIDER>_KNOWLEDGE_CUTOFF
        print(f"error: {exc}", file=sys.stderr)
        return None


async def _demo(settings: Settings, stop: StopRequest, *, data_dir: str, symbols: str, speed: float,
                port: int | None, keep_serving_s: float, days: float | None, database: str | None,
                allow_contaminated: bool = False) -> int:
    from quorum.commands.report import build_report, format_report, format_win_rate_rows, win_rate_rows
    from quorum.store.equity import EquityRepository

    data = Path(data_dir)
    syms = [s.strip().upper() for s in symbols.split(",") if s.strip()]
    missing = [s for s in syms if not (data / f"{s}-futures-5m.csv.gz").is_file()]
    if missing:
        print(f"error: no 5m candles for {', '.join(missing)} in {data}/ (expected SYMBOL-futures-5m.csv.gz)")
        return 2
    settings = settings.model_copy(update={"trading_mode": TradingMode.PAPER, "symbols": syms, "data_dir": data})
    runtime = RuntimeState(mode="paper", symbols=syms,
                           scan_interval_s=float(settings.scan_interval_seconds))
    exec_ms = timeframe_seconds(settings.execution_timeframe) * 1000
    first_ms = max(_first_open_ms(data / f"{s}-futures-5m.csv.gz") for s in syms)
    start_ms = (first_ms + WARMUP_DAYS * DAY_MS) // exec_ms * exec_ms
    labels = _contamination(settings, start_ms, allow_contaminated)
    if labels is None:
        return 2
    demo_url = await fresh_demo_database(configured_database_url(settings), database or DEMO_DATABASE)
    async with service_surface(settings, runtime, port=port, database_url=demo_url, stop=stop.event) as surface:
        print(f"Quorum demo: replaying {', '.join(syms)} from {data}/ "
              f"({'as fast as possible' if not speed else f'{speed:g}x'}); "
              f"API on http://{settings.api_host}:{surface.port} (/health /status /metrics)", flush=True)
        print(f"  record: paper mode in its own database {redact_url(demo_url)}", flush=True)
        app = await build_app(settings, surface, mode="paper", data_dir=data, symbols=syms,
                              start_ms=start_ms, speed=speed or None)
        stop.on_stop(app.engine.stop)
        if labels:  # the models vote on a period they know: said first, and on every recorded vote
            app.consensus.contamination = labels
            for label in labels.values():
                print(f"  {label.replace('contaminated:', 'CONTAMINATED:', 1)}", flush=True)
        end_ms = min(int(app.market.builder(s).base.open_ms[-1]) for s in syms) + exec_ms
        if days:
            end_ms = min(end_ms, start_ms + int(days * DAY_MS))
        print(f"  simulated {_iso(start_ms)} → {_iso(end_ms)} after {WARMUP_DAYS} days of indicator history",
              flush=True)
        started = time.monotonic()
        stats = None
        try:
            if not stop.requested:
                stop.phase = "replay"
                await app.engine.start()
                stats = await app.engine.run(until_ms=end_ms)
        finally:
            await app.close()
        if stats is not None:
            print(f"  replay {'stopped by a signal' if stop.requested else 'done'} in "
                  f"{time.monotonic() - started:.1f}s: {stats.steps} bar steps, {stats.cycles} "
                  f"decision cycles, {stats.entries} entries, {stats.closes} closed trades", flush=True)
        if keep_serving_s > 0 and not stop.requested:
            stop.phase = "keep-serving"
            await stop.sleep(keep_serving_s)
        report = await build_report(surface.pool, settings, "paper")
        rows = await win_rate_rows(surface.pool)
        history = await EquityRepository(surface.pool, "paper").count()
    print(f"Equity history: {sum(history.values())} rows in equity_snapshots ("
          + ", ".join(f"{n} {kind}" for kind, n in sorted(history.items())) + ")")
    print(format_report(report))
    print(format_win_rate_rows(rows))
    return 0


DAY_MS = 86_400_000
WARMUP_DAYS = 35  # the 4h EMA200 needs ~34 days of bars before the first decision
DEMO_DATABASE = "quorum_demo"


def _iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, tz=UTC).strftime("%Y-%m-%d %H:%M UTC")


def _first_open_ms(path: Path) -> int:
    with gzip.open(path, "rt", encoding="utf-8") as f:
        f.readline()
        return int(f.readline().split(",", 1)[0])


def _with_database(url: str, name: str) -> str:
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path=f"/{name}"))


async def fresh_demo_database(base_url: str, name: str = DEMO_DATABASE) -> str:
    """(Re)create database `name` on the server of `base_url` and return its URL. The demo's
    replayed paper record lives there, so it never mixes with (or counts toward the go-live gate
    of) the real paper record in the configured database."""
    admin_url = base_url if urlsplit(base_url).path.strip("/") != name else _with_database(base_url, "postgres")
    conn = await connect(admin_url)
    try:
        # a throwaway, recreated-each-run database: commits need not wait for the WAL flush
        # (measured ~15 % faster replay steps); a crash can only lose the demo's own record
        await recreate_database(conn, name, synchronous_commit=False)
    except asyncpg.PostgresError as exc:
        raise DatabaseUnavailable(
            f"the demo needs to create database {name!r} on the configured server ({type(exc).__name__}: {exc}); "
            "grant CREATEDB, or unset DATABASE_URL to use the embedded server") from None
    finally:
        await conn.close()
    return _with_database(base_url, name)
