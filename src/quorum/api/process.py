"""Serve the API from its own process, beside the engine.

The engine's loop (and, in one process, the GIL) can be busy for tens of milliseconds at a time;
/health must still answer in a few milliseconds. So the service runs uvicorn in a child process
with its own asyncpg pool and cache client, and mirrors the engine's `RuntimeState` there:

- the engine side publishes a JSON snapshot of the runtime every `interval_s` over a socketpair
  (quorum.api.pipe: framed messages, read and written by each side's event loop);
  the child applies it to a mirror `RuntimeState` (and /health fails with component `engine`
  when snapshots stop arriving — a hung engine is noticed);
- every `metrics_interval_s` a snapshot also carries the engine process's Prometheus REGISTRY
  (model, cache, exchange, order and loop counters), which the child's /metrics serves beside
  the state (from the mirror) and the record (from Postgres) — see quorum.api.metrics_view;
- control actions (pause / resume / kill from the API) travel back as requests; the engine side
  runs them with `RuntimeState.control` on its own loop and returns the result;
- the child exits when the engine side closes the pipe (or dies); when the child dies, the engine
  side says so once (`api.process_gone`) and starts another on the same port, with backoff.

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
import multiprocessing
import os
import socket
from multiprocessing.connection import Connection
from typing import Any

import structlog

from quorum.api.metrics_view import PublishedMetrics, dump_registry
from quorum.api.pipe import MessagePipe, PipeClosed
from quorum.api.status import jsonable
from quorum.config import Settings
from quorum.runtime import RuntimeState, wall_ms

log = structlog.get_logger(__name__)

BIND_RETRY_S = 20.0  # how long a busy API port is retried before start-up gives up
BIND_POLL_S = 0.25
MAX_BACKLOG = 4 * 2**20  # snapshot bytes the child may fall behind by before snapshots are skipped


class ApiStartError(Exception):
    """The API server could not start; the message is one line, safe to print."""


class ApiPortInUse(ApiStartError):
    """API_HOST:API_PORT stayed in use for `BIND_RETRY_S` seconds."""


FIELDS = ("mode", "started_ms", "paused", "kill_requested", "last_scan_ms", "scan_interval_s",
          "last_market_data_ms", "exchange_ok", "exchange_error", "providers", "provider_last_success",
          "provider_last_error", "breakers", "paused_symbols", "positions", "equity", "wallet_balance",
          "unrealized_pnl", "drawdown_pct", "day_pnl", "sim_time_ms",
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
    """Engine side: start the child, publish snapshots, answer its control requests, and start
    it again (with backoff) when it dies."""

    def __init__(self, settings: Settings, runtime: RuntimeState, database_url: str, *, host: str, port: int,
                 interval_s: float = 0.1, metrics_interval_s: float = 1.0,
                 bind_retry_s: float = BIND_RETRY_S, restart_backoff_s: tuple[float, float] = (1.0, 30.0)) -> None:
        self.settings = settings
        self.runtime = runtime
        self.database_url = database_url
        self.host = host
        self.port = port
        self.interval_s = interval_s
        self.metrics_interval_s = metrics_interval_s  # collecting REGISTRY costs ~1-2 ms: not every snapshot
        self._metrics_at = -1e18
        self.bind_retry_s = bind_retry_s
        self.restart_backoff_s = restart_backoff_s
        self.restarts = 0
        self._pipe: MessagePipe | None = None
        self._proc: Any = None
        self._closing = False
        self._publisher: asyncio.Task[None] | None = None
        self._supervisor: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[Any]] = set()

    async def start(self, timeout: float = 60.0) -> int:
        """Start the child and return the port it listens on. Raises `ApiPortInUse` when the port
        stays busy, `ApiStartError` for any other reason the server cannot start."""
        self._closing = False
        self.port = await self._spawn(self.port, timeout)
        self._publisher = asyncio.create_task(self._publish())
        self._supervisor = asyncio.create_task(self._supervise(timeout))
        return self.port

    async def _spawn(self, port: int, timeout: float) -> int:
        ctx = multiprocessing.get_context("spawn")
        parent, child = ctx.Pipe(duplex=True)
        proc = ctx.Process(target=child_main, name="quorum-api", daemon=True,
                           args=(child, self.settings, self.database_url, self.host, port, self.bind_retry_s))
        proc.start()
        self._proc = proc
        child.close()
        pipe = await MessagePipe.open(parent)
        pipe.send(self._snapshot_msg(with_metrics=True))
        try:
            ready = await asyncio.wait_for(pipe.recv(), timeout)
        except TimeoutError:
            ready = {"error": f"no answer within {timeout:g}s"}
        except PipeClosed:
            ready = {"error": "the API process exited"}
        if "error" in ready:
            pipe.close()
            await _reap(proc)
            if ready.get("kind") == "port_in_use":
                raise ApiPortInUse(ready["error"])
            if ready.get("kind") == "bind":
                raise ApiStartError(ready["error"])
            raise ApiStartError(f"API server on {self.host}:{port} failed to start: {ready['error']}")
        self._pipe = pipe
        return int(ready["port"])

    def _snapshot_msg(self, *, with_metrics: bool = False) -> dict[str, Any]:
        msg: dict[str, Any] = {"type": "snapshot", "body": snapshot(self.runtime)}
        now = asyncio.get_running_loop().time()
        if with_metrics or now - self._metrics_at >= self.metrics_interval_s:
            msg["metrics"] = dump_registry()
            self._metrics_at = now
        return msg

    async def _publish(self) -> None:
        while True:
            await asyncio.sleep(self.interval_s)
            pipe = self._pipe
            if pipe is not None and pipe.backlog < MAX_BACKLOG:  # never queue up behind a slow reader
                pipe.send(self._snapshot_msg())

    async def _supervise(self, timeout: float) -> None:
        """Serve the child's requests; when it dies, say so once and start another on the same port."""
        first, cap = self.restart_backoff_s
        while not self._closing:
            pipe = self._pipe
            if pipe is not None:
                await self._serve_requests(pipe)
                if self._closing:
                    return
                self._pipe = None
                pipe.close()
                code = await _reap(self._proc)
                log.error("api.process_gone", exit_code=code, port=self.port,
                          hint="/health is down until the API process is started again")
            backoff = first
            while not self._closing:
                await asyncio.sleep(backoff)
                try:
                    await self._spawn(self.port, timeout)
                except ApiStartError as exc:
                    log.error("api.restart_failed", error=str(exc), retry_in_s=min(backoff * 2, cap))
                    backoff = min(backoff * 2, cap)
                    continue
                self.restarts += 1
                log.warning("api.process_restarted", port=self.port, restarts=self.restarts)
                break

    async def _serve_requests(self, pipe: MessagePipe) -> None:
        while True:
            try:
                msg = await pipe.recv()
            except PipeClosed:
                return
            if msg.get("type") == "control":
                task = asyncio.get_running_loop().create_task(self._control(pipe, msg))
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)

    async def _control(self, pipe: MessagePipe, msg: dict[str, Any]) -> None:
        try:
            result = await self.runtime.control(msg["action"])
            if dataclasses.is_dataclass(result) and not isinstance(result, type):
                result = dataclasses.asdict(result)
            reply = {"type": "reply", "id": msg["id"], "result": jsonable(result)}
        except Exception as exc:
            log.error("control.failed", action=msg.get("action"), error=type(exc).__name__)
            reply = {"type": "reply", "id": msg["id"], "error": type(exc).__name__}
        pipe.send(reply)
        pipe.send(self._snapshot_msg())

    async def stop(self, timeout: float = 10.0) -> None:
        self._closing = True
        for task in (self._publisher, self._supervisor):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        if self._pipe is not None:
            self._pipe.close()  # the child sees the end of the stream and shuts down
            self._pipe = None
        if self._proc is not None:
            await _reap(self._proc, timeout)


async def _reap(proc: Any, timeout: float = 10.0) -> int | None:
    """Wait for the child to end (terminating it after `timeout`); its exit code."""
    await asyncio.to_thread(proc.join, timeout)
    if proc.is_alive():
        proc.terminate()
        await asyncio.to_thread(proc.join, 5)
    code: int | None = proc.exitcode
    return code


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
    from quorum.cache import make_cache
    from quorum.store.db import create_pool

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
        pool = await create_pool(database_url, min_size=0, max_size=4, timeout=5.0)
        cache = make_cache(settings.redis_url.get_secret_value() if settings.redis_url else None)
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

