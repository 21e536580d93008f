"""Serve the API from its own process, beside the engine.

The engine's loop (and, in one process, the GIL) can be busy for tens of milliseconds at a time;
/health must still answer in a few milliseconds. So the service runs uvicorn in a child process
with its own asyncpg pool and cache client, and mirrors the engine's `RuntimeState` there:

- the engine side publishes a JSON snapshot of the runtime every `interval_s` over a socketpair;
  the child applies it to a mirror `RuntimeState` (and /health fails with component `engine`
  when snapshots stop arriving — a hung engine is noticed);
- control actions (pause / resume / kill from the API) travel back as requests; the engine side
  runs them with `RuntimeState.control` on its own loop and returns the result;
- the child exits when the engine side closes the pipe (or dies).

The child needs no database to start: its pool connects lazily, so through a Postgres outage
(or before Postgres is up) /health answers 503 `database` and /status answers from the mirrored
engine state, and both recover by themselves when the server returns. A port still held (say, by
the API child of a SIGKILLed predecessor that is still exiting) is retried for `BIND_RETRY_S`
seconds, then start-up fails with `ApiPortInUse`.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import errno
import itertools
import json
import multiprocessing
import os
import socket
from multiprocessing.connection import Connection
from typing import Any

import structlog

from quorum.api.status import jsonable
from quorum.config import Settings
from quorum.runtime import RuntimeState, wall_ms

log = structlog.get_logger(__name__)

BIND_RETRY_S = 20.0  # how long a busy API port is retried before start-up gives up
BIND_POLL_S = 0.25


class ApiStartError(Exception):
    """The API server could not start; the message is one line, safe to print."""


class ApiPortInUse(ApiStartError):
    """API_HOST:API_PORT stayed in use for `BIND_RETRY_S` seconds."""


FIELDS = ("mode", "started_ms", "paused", "kill_requested", "last_scan_ms", "scan_interval_s",
          "last_market_data_ms", "exchange_ok", "exchange_error", "providers", "provider_last_success",
          "provider_last_error", "breakers", "positions", "equity", "wallet_balance", "day_pnl", "sim_time_ms",
          "live_override", "symbols", "database_ok", "database_error", "engine", "funding",
          "cache_degraded")


def snapshot(runtime: RuntimeState) -> dict[str, Any]:
    body = {name: getattr(runtime, name) for name in FIELDS}
    body["last_decisions"] = list(runtime.last_decisions)
    body["has_engine"] = runtime.on_kill is not None
    body["heartbeat_ms"] = wall_ms()
    return jsonable(body)  # type: ignore[no-any-return]


def apply_snapshot(mirror: RuntimeState, body: dict[str, Any]) -> None:
    for name in FIELDS:
        if name in body:
            setattr(mirror, name, body[name])
    mirror.last_decisions.clear()
    mirror.last_decisions.extend(body.get("last_decisions") or [])
    mirror.heartbeat_ms = body.get("heartbeat_ms")
    mirror.has_engine = bool(body.get("has_engine"))


class ApiProcess:
    """Engine side: start the child, publish snapshots, answer its control requests."""

    def __init__(self, settings: Settings, runtime: RuntimeState, database_url: str, *, host: str, port: int,
                 interval_s: float = 0.1, bind_retry_s: float = BIND_RETRY_S) -> None:
        self.settings = settings
        self.runtime = runtime
        self.database_url = database_url
        self.host = host
        self.port = port
        self.interval_s = interval_s
        self.bind_retry_s = bind_retry_s
        self._conn: Connection | None = None
        self._proc: Any = None
        self._publisher: asyncio.Task[None] | None = None
        self._sending = False
        self._tasks: set[asyncio.Task[Any]] = set()

    async def start(self, timeout: float = 60.0) -> int:
        """Start the child and return the port it listens on. Raises `ApiPortInUse` when the port
        stays busy, `ApiStartError` for any other reason the server cannot start."""
        ctx = multiprocessing.get_context("spawn")
        parent, child = ctx.Pipe(duplex=True)
        self._conn = parent
        self._proc = ctx.Process(target=child_main, name="quorum-api", daemon=True,
                                 args=(child, self.settings, self.database_url, self.host, self.port,
                                       self.bind_retry_s))
        self._proc.start()
        child.close()
        parent.send_bytes(json.dumps({"type": "snapshot", "body": snapshot(self.runtime)}).encode())
        ready = await asyncio.to_thread(self._wait_ready, timeout)
        if "error" in ready:
            await self.stop()
            if ready.get("kind") == "port_in_use":
                raise ApiPortInUse(ready["error"])
            if ready.get("kind") == "bind":
                raise ApiStartError(ready["error"])
            raise ApiStartError(f"API server on {self.host}:{self.port} failed to start: {ready['error']}")
        self.port = int(ready["port"])
        loop = asyncio.get_running_loop()
        loop.add_reader(parent.fileno(), self._on_readable)
        self._publisher = asyncio.create_task(self._publish())
        return self.port

    def _wait_ready(self, timeout: float) -> dict[str, Any]:
        assert self._conn is not None
        if not self._conn.poll(timeout):
            return {"error": f"no answer within {timeout:g}s"}
        try:
            msg: dict[str, Any] = json.loads(self._conn.recv_bytes())
        except EOFError:
            return {"error": "the API process exited"}
        return msg

    async def _publish(self) -> None:
        while True:
            await asyncio.sleep(self.interval_s)
            if not self._sending:  # never queue up behind a slow reader
                await self._send({"type": "snapshot", "body": snapshot(self.runtime)})

    async def _send(self, msg: dict[str, Any]) -> None:
        if self._conn is None:
            return
        data = json.dumps(msg, default=str).encode()
        self._sending = True
        try:
            await asyncio.to_thread(self._conn.send_bytes, data)
        except (OSError, ValueError):
            log.warning("api.process_gone")
        finally:
            self._sending = False

    def _on_readable(self) -> None:
        assert self._conn is not None
        try:
            while self._conn.poll():
                msg = json.loads(self._conn.recv_bytes())
                if msg.get("type") == "control":
                    task = asyncio.get_running_loop().create_task(self._control(msg))
                    self._tasks.add(task)
                    task.add_done_callback(self._tasks.discard)
        except (EOFError, OSError):
            asyncio.get_running_loop().remove_reader(self._conn.fileno())

    async def _control(self, msg: dict[str, Any]) -> None:
        try:
            result = await self.runtime.control(msg["action"])
            if dataclasses.is_dataclass(result) and not isinstance(result, type):
                result = dataclasses.asdict(result)
            reply = {"type": "reply", "id": msg["id"], "result": jsonable(result)}
        except Exception as exc:
            log.error("control.failed", action=msg.get("action"), error=type(exc).__name__)
            reply = {"type": "reply", "id": msg["id"], "error": type(exc).__name__}
        await self._send(reply)
        await self._send({"type": "snapshot", "body": snapshot(self.runtime)})

    async def stop(self, timeout: float = 10.0) -> None:
        if self._publisher is not None:
            self._publisher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._publisher
        if self._conn is not None:
            with contextlib.suppress(Exception):
                asyncio.get_running_loop().remove_reader(self._conn.fileno())
            self._conn.close()  # the child sees EOF and shuts down
            self._conn = None
        if self._proc is not None:
            await asyncio.to_thread(self._proc.join, timeout)
            if self._proc.is_alive():
                self._proc.terminate()
                await asyncio.to_thread(self._proc.join, 5)


# --- child process ---------------------------------------------------------------------------
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
    except ApiStartError as exc:
        kind = "port_in_use" if isinstance(exc, ApiPortInUse) else "bind"
        with contextlib.suppress(Exception):
            conn.send_bytes(json.dumps({"type": "ready", "error": str(exc), "kind": kind}).encode())
    except Exception as exc:
        log.error("api.child_failed", error=type(exc).__name__, exc_info=True)
        with contextlib.suppress(Exception):
            conn.send_bytes(json.dumps({"type": "ready", "error": type(exc).__name__}).encode())


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


async def _child(conn: Connection, settings: Settings, database_url: str, host: str, port: int,
                 bind_retry_s: float) -> None:
    from quorum.api.app import create_app
    from quorum.api.server import bound_port, make_server
    from quorum.cache import make_cache
    from quorum.store.db import create_pool

    loop = asyncio.get_running_loop()
    mirror = RuntimeState()
    pending: dict[int, asyncio.Future[Any]] = {}
    ids = itertools.count(1)

    async def forward(action: str) -> Any:
        rid = next(ids)
        fut: asyncio.Future[Any] = loop.create_future()
        pending[rid] = fut
        conn.send_bytes(json.dumps({"type": "control", "id": rid, "action": action}).encode())
        try:
            return await asyncio.wait_for(fut, 60.0)
        finally:
            pending.pop(rid, None)

    mirror.on_pause = lambda: forward("pause")
    mirror.on_resume = lambda: forward("resume")
    stopping = asyncio.Event()

    def on_readable() -> None:
        try:
            while conn.poll():
                msg = json.loads(conn.recv_bytes())
                if msg["type"] == "snapshot":
                    apply_snapshot(mirror, msg["body"])
                    mirror.on_kill = (lambda: forward("kill")) if mirror.has_engine else None
                elif msg["type"] == "reply" and msg["id"] in pending and not pending[msg["id"]].done():
                    if "error" in msg:
                        pending[msg["id"]].set_exception(RuntimeError(msg["error"]))
                    else:
                        pending[msg["id"]].set_result(msg.get("result"))
        except (EOFError, OSError):
            loop.remove_reader(conn.fileno())
            stopping.set()

    loop.add_reader(conn.fileno(), on_readable)
    sock = await bind_with_retry(host, port, stopping, bind_retry_s)
    if sock is None:
        return  # the engine side went away while we waited for the port
    # min_size=0: no connection at start, so the API comes up (and answers 503 `database`)
    # while Postgres is down, and reconnects on the next probe once it is back
    pool = await create_pool(database_url, min_size=0, max_size=4, timeout=5.0)
    cache = make_cache(settings.redis_url.get_secret_value() if settings.redis_url else None)
    try:
        server = make_server(create_app(settings, mirror, pool, cache), host, port)
        task = asyncio.create_task(server.serve(sockets=[sock]))
        while not server.started:
            if task.done():
                await task
                raise RuntimeError("server stopped before it started")
            await asyncio.sleep(0.01)
        conn.send_bytes(json.dumps({"type": "ready", "port": bound_port(server)}).encode())
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
