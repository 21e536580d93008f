"""Serve the API from its own process, beside the engine.

The engine's loop (and, in one process, the GIL) can be busy for tens of milliseconds at a time;
/health must still answer in a few milliseconds. So the service runs uvicorn in a child process
with its own asyncpg pool and cache client (`quorum.api.child`), and mirrors the engine's
`RuntimeState` there (`quorum.api.mirror`); this module is the engine side:

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
import multiprocessing
from typing import Any

import structlog

from quorum.api.child import BIND_RETRY_S, child_main
from quorum.api.child import ApiPortInUse as ApiPortInUse  # re-exported: what `ApiProcess.start` raises
from quorum.api.child import ApiStartError as ApiStartError
from quorum.api.metrics_view import dump_registry
from quorum.api.mirror import apply_snapshot as apply_snapshot  # re-exported: the snapshot's two ends
from quorum.api.mirror import snapshot
from quorum.api.pipe import MessagePipe, PipeClosed
from quorum.api.status import jsonable
from quorum.config import Settings
from quorum.engine.runtime import RuntimeState

log = structlog.get_logger(__name__)

MAX_BACKLOG = 4 * 2**20  # snapshot bytes the child may fall behind by before snapshots are skipped


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
