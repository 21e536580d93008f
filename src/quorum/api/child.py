"""The API process (the child side of `quorum.api.process`): bind API_HOST:API_PORT (a busy port
is retried for `BIND_RETRY_S` seconds), open its own pool and cache, serve the app on a mirror
`RuntimeState` fed by the engine's snapshots, forward control actions to the engine, and exit
when the engine side closes the pipe.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import itertools
import os
import socket
from multiprocessing.connection import Connection
from typing import Any

import structlog

from quorum.api.metrics_view import PublishedMetrics
from quorum.api.mirror import apply_snapshot
from quorum.api.pipe import MessagePipe, PipeClosed
from quorum.bootstrap import open_cache, open_record_pool
from quorum.config import Settings
from quorum.engine.runtime import RuntimeState

log = structlog.get_logger(__name__)

BIND_RETRY_S = 20.0  # how long a busy API port is retried before start-up gives up
BIND_POLL_S = 0.25


class ApiStartError(Exception):
    """The API server could not start; the message is one line, safe to print."""


class ApiPortInUse(ApiStartError):
    """API_HOST:API_PORT stayed in use for `BIND_RETRY_S` seconds."""


def child_main(conn: Connection, settings: Settings, database_url: str, host: str, port: int,
               bind_retry_s: float = BIND_RETRY_S) -> None:
    import signal

    from quorum.logging import configure_logging

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the engine process owns Ctrl-C; we follow its pipe
    configure_logging(settings)
    try:
        try:  # uvloop when installed: lower per-request overhead in this latency-critical process
            import uvloop

            uvloop.run(_child(conn, settings, database_url, host, port, bind_retry_s))
        except ImportError:
            asyncio.run(_child(conn, settings, database_url, host, port, bind_retry_s))
    except Exception as exc:  # the engine side sees the pipe close and starts another
        log.error("api.child_failed", error=type(exc).__name__, exc_info=True)


async def _child(conn: Connection, settings: Settings, database_url: str, host: str, port: int,
                 bind_retry_s: float) -> None:
    pipe = await MessagePipe.open(conn)
    try:
        await _serve(pipe, settings, database_url, host, port, bind_retry_s)
    except ApiStartError as exc:
        kind = "port_in_use" if isinstance(exc, ApiPortInUse) else "bind"
        pipe.send({"type": "ready", "error": str(exc), "kind": kind})
        await pipe.drain()
    except Exception as exc:
        log.error("api.child_failed", error=type(exc).__name__, exc_info=True)
        pipe.send({"type": "ready", "error": type(exc).__name__})
        await pipe.drain()
    finally:
        pipe.close()


def _bind(host: str, port: int) -> socket.socket:
    """A bound (not yet listening) TCP socket, as uvicorn would make it."""
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
    except BaseException:
        sock.close()
        raise
    return sock


async def bind_with_retry(host: str, port: int, stopping: asyncio.Event,
                          retry_s: float = BIND_RETRY_S) -> socket.socket | None:
    """Bind host:port, retrying a busy port for `retry_s` seconds (one log line). None when
    `stopping` is set meanwhile. Raises `ApiPortInUse`, or `ApiStartError` for any other bind
    error (an address not on this machine, a privileged port)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + retry_s
    waiting = False
    while True:
        try:
            sock = _bind(host, port)
        except OSError as exc:
            if exc.errno != errno.EADDRINUSE:
                reason = os.strerror(exc.errno) if exc.errno else type(exc).__name__
                raise ApiStartError(f"API cannot listen on {host}:{port}: {reason}; check API_HOST and API_PORT") \
                    from None
            if loop.time() >= deadline:
                raise ApiPortInUse(f"API port {host}:{port} is in use: stop the other process or set API_PORT") \
                    from None
            if not waiting:
                log.warning("api.port_in_use", host=host, port=port, retry_for_s=retry_s,
                            hint="another process holds the port; retrying")
                waiting = True
        else:
            if waiting:
                log.info("api.port_free", host=host, port=port)
            return sock
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stopping.wait(), BIND_POLL_S)
        if stopping.is_set():
            return None


async def _serve(pipe: MessagePipe, settings: Settings, database_url: str, host: str, port: int,
                 bind_retry_s: float) -> None:
    from quorum.api.app import create_app
    from quorum.api.server import bound_port, make_server

    loop = asyncio.get_running_loop()
    mirror = RuntimeState()
    published = PublishedMetrics()
    pending: dict[int, asyncio.Future[Any]] = {}
    ids = itertools.count(1)

    async def forward(action: str) -> Any:
        rid = next(ids)
        fut: asyncio.Future[Any] = loop.create_future()
        pending[rid] = fut
        if not pipe.send({"type": "control", "id": rid, "action": action}):
            pending.pop(rid, None)
            raise RuntimeError("the engine process is gone")
        try:
            return await asyncio.wait_for(fut, 60.0)
        finally:
            pending.pop(rid, None)

    mirror.on_pause = lambda: forward("pause")
    mirror.on_resume = lambda: forward("resume")
    stopping = asyncio.Event()

    def apply(msg: dict[str, Any]) -> None:
        if msg["type"] == "snapshot":
            apply_snapshot(mirror, msg["body"])
            if "metrics" in msg:
                published.update(msg["metrics"])
            mirror.on_kill = (lambda: forward("kill")) if mirror.has_engine else None
        elif msg["type"] == "reply" and msg["id"] in pending and not pending[msg["id"]].done():
            if "error" in msg:
                pending[msg["id"]].set_exception(RuntimeError(msg["error"]))
            else:
                pending[msg["id"]].set_result(msg.get("result"))

    async def follow_engine() -> None:
        try:
            while True:
                apply(await pipe.recv())
        except PipeClosed as exc:
            log.info("api.engine_pipe_closed", reason=str(exc))
        finally:
            stopping.set()

    follower = asyncio.create_task(follow_engine())
    try:
        sock = await bind_with_retry(host, port, stopping, bind_retry_s)
        if sock is None:
            return  # the engine side went away while we waited for the port
        # min_size=0: no connection at start, so the API comes up (and answers 503 `database`)
        # while Postgres is down, and reconnects on the next probe once it is back
        pool = await open_record_pool(settings, url=database_url, min_size=0, max_size=4, timeout=5.0)
        cache = open_cache(settings)
        try:
            app = create_app(settings, mirror, pool, cache, process_metrics=published.collect)
            server = make_server(app, host, port)
            task = asyncio.create_task(server.serve(sockets=[sock]))
            while not server.started:
                if task.done():
                    await task
                    raise RuntimeError("server stopped before it started")
                await asyncio.sleep(0.01)
            pipe.send({"type": "ready", "port": bound_port(server)})
            await stopping.wait()
            server.should_exit = True
            await task
        finally:
            sock.close()
            await cache.close()
            try:
                await asyncio.wait_for(pool.close(), 5.0)
            except TimeoutError:
                pool.terminate()
    finally:
        follower.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await follower

