"""SIGINT / SIGTERM for a whole command (`quorum run`, `quorum demo`), in every phase.

A command installs `stop_on_signals()` first thing, so a stop signal is never left to its default
action — which, for PID 1 in a container, is to ignore SIGTERM. The first signal sets `event`
(phases that wait — for the database, the exchange, the keep-serving window — watch it) and runs
every registered callback (the engine's stop: it finishes its step and returns). A second signal
ends the process at once: recovery is crash-only, so nothing is lost that a restart cannot mend.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import structlog

log = structlog.get_logger(__name__)

SIGNALS = (signal.SIGINT, signal.SIGTERM)


class StopRequest:
    """Set once a stop signal arrived; `on_stop` callbacks run then (or at once if it already has)."""

    def __init__(self) -> None:
        self.event = asyncio.Event()
        self.phase = "start-up"
        self._callbacks: list[Callable[[], Awaitable[Any]]] = []
        self._tasks: set[asyncio.Task[Any]] = set()

    @property
    def requested(self) -> bool:
        return self.event.is_set()

    def on_stop(self, callback: Callable[[], Awaitable[Any]]) -> None:
        self._callbacks.append(callback)
        if self.requested:
            self._run(callback)

    def request(self, signame: str = "request") -> None:
        if self.requested:
            return
        log.info("service.stopping", signal=signame, phase=self.phase)
        self.event.set()
        for callback in self._callbacks:
            self._run(callback)

    async def sleep(self, seconds: float) -> bool:
        """Wait `seconds` or until a stop is requested; True when stopped."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.event.wait(), seconds)
        return self.requested

    async def unless_stopped(self, awaitable: Awaitable[Any]) -> bool:
        """Run `awaitable` to its end (True; its exception propagates) unless a stop is requested
        first: then it is cancelled (False). For waits a stop must not sit through, such as the
        exchange's read retries during the start (crash-only: a cancelled start loses nothing)."""
        work = asyncio.ensure_future(awaitable)
        stopped = asyncio.ensure_future(self.event.wait())
        try:
            await asyncio.wait({work, stopped}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stopped.cancel()
        if work.done():
            work.result()
            return True
        work.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await work
        return False

    def _run(self, callback: Callable[[], Awaitable[Any]]) -> None:
        task = asyncio.ensure_future(callback())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)


@contextlib.contextmanager
def stop_on_signals() -> Iterator[StopRequest]:
    """Within the block SIGINT/SIGTERM request a stop (a second one exits at once); the previous
    handlers come back after it."""
    loop = asyncio.get_running_loop()
    stop = StopRequest()
    installed: dict[signal.Signals, Any] = {}

    def on_signal(sig: signal.Signals) -> None:
        if stop.requested:
            log.warning("service.stopping_now", signal=sig.name, hint="second stop signal: exiting at once")
            os._exit(128 + sig.value)
        stop.request(sig.name)

    for sig in SIGNALS:
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            previous = signal.getsignal(sig)
            loop.add_signal_handler(sig, on_signal, sig)
            installed[sig] = previous
    try:
        yield stop
    finally:
        for sig, previous in installed.items():
            with contextlib.suppress(NotImplementedError, RuntimeError, ValueError, TypeError):
                loop.remove_signal_handler(sig)
                signal.signal(sig, previous)  # asyncio leaves the default action, not the one before
