"""`health_server.py`: the API alone, on the configured database and cache."""

from __future__ import annotations

import asyncio
import signal
import socket
import sys

import structlog

from quorum.api.app import create_app
from quorum.api.bind import guard_bind
from quorum.api.child import bind_with_retry
from quorum.api.server import make_server
from quorum.bootstrap import open_cache, open_record_pool
from quorum.config import Settings, load_settings
from quorum.engine.runtime import RuntimeState
from quorum.foreseen import describe
from quorum.logging import configure_logging
from quorum.store.db import stop_embedded_postgres

log = structlog.get_logger(__name__)


async def serve() -> None:
    settings = load_settings()
    configure_logging(settings)
    guard_bind(settings)
    # bind before anything else: a port in use is one line and exit code 1, not uvicorn's log and exit 3
    sock = await bind_with_retry(settings.api_host, settings.api_port, asyncio.Event(), retry_s=0.0)
    assert sock is not None  # None only when the (never set) event is set
    try:
        await _serve_on(settings, sock)
    finally:
        sock.close()


async def _serve_on(settings: Settings, sock: socket.socket) -> None:
    pool = await open_record_pool(settings, min_size=1, max_size=4)
    cache = open_cache(settings)
    runtime = RuntimeState(mode=settings.trading_mode.value, scan_interval_s=float(settings.scan_interval_seconds))
    server = make_server(create_app(settings, runtime, pool, cache), settings.api_host, settings.api_port)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, lambda: setattr(server, "should_exit", True))
    log.info("api.listening", host=settings.api_host, port=settings.api_port)
    try:
        await server.serve(sockets=[sock])
    finally:
        await pool.close()
        await cache.close()


def main() -> int:
    try:
        asyncio.run(serve())
    except Exception as exc:  # foreseen conditions (a setting, Postgres, the port): one line, as `quorum` does
        foreseen = describe(exc)
        if foreseen is None:
            raise
        print(foreseen.line, file=sys.stderr)
        return foreseen.code
    finally:
        stop_embedded_postgres()  # the embedded server, when this process started it (no DATABASE_URL)
    return 0
