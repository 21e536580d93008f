"""`health_server.py`: the API alone, on the configured database and cache."""

from __future__ import annotations

import asyncio
import signal
import sys

import structlog

from quorum.api.app import create_app
from quorum.api.bind import guard_bind
from quorum.api.server import make_server
from quorum.bootstrap import open_cache, open_record_pool
from quorum.config import ConfigError, load_settings
from quorum.engine.runtime import RuntimeState
from quorum.logging import configure_logging
from quorum.store.db import DatabaseUnavailable, stop_embedded_postgres

log = structlog.get_logger(__name__)


async def serve() -> None:
    settings = load_settings()
    configure_logging(settings)
    guard_bind(settings)
    pool = await open_record_pool(settings, min_size=1, max_size=4)
    cache = open_cache(settings)
    runtime = RuntimeState(mode=settings.trading_mode.value, scan_interval_s=float(settings.scan_interval_seconds))
    server = make_server(create_app(settings, runtime, pool, cache), settings.api_host, settings.api_port)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, lambda: setattr(server, "should_exit", True))
    log.info("api.listening", host=settings.api_host, port=settings.api_port)
    try:
        await server.serve()
    finally:
        await pool.close()
        await cache.close()


def main() -> int:
    try:
        asyncio.run(serve())
    except ConfigError as exc:
        print(f"configuration error: {exc}", file=sys.stderr)
        return 2
    except DatabaseUnavailable as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    finally:
        stop_embedded_postgres()  # the embedded server, when this process started it (no DATABASE_URL)
    return 0
