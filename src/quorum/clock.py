"""Time for the engine: a `Clock` is the only source of "now" and the only way to wait.

`WallClock` follows real UTC time. `SimulatedClock` jumps (or, with `speed`, runs accelerated)
through replayed time, so the same engine code runs a backtest, a demo and a live service with no
wall-clock sleeps inside the logic.
"""

from __future__ import annotations

import asyncio
import time
from typing import Protocol, runtime_checkable


@runtime_checkable
class Clock(Protocol):
    """UTC epoch milliseconds and waiting until a given time."""

    def now_ms(self) -> int: ...

    async def sleep_until(self, ms: int) -> None: ...


class WallClock:
    """Real time. `sleep_until` wakes at the target (never early) and can be interrupted by
    `wake()` (graceful shutdown does not wait for the next bar)."""

    def __init__(self) -> None:
        self._wake = asyncio.Event()

    def now_ms(self) -> int:
        return int(time.time() * 1000)

    async def sleep_until(self, ms: int) -> None:
        while True:
            delay = (ms - self.now_ms()) / 1000.0
            if delay <= 0:
                return
            self._wake.clear()
            try:
                await asyncio.wait_for(self._wake.wait(), timeout=min(delay, 60.0))
                return
            except TimeoutError:
                continue

    def wake(self) -> None:
        self._wake.set()


class SimulatedClock:
    """Replayed time. Without `speed` it jumps to the target instantly; with `speed` (e.g. 3600 =
    one simulated hour per real second) it also waits the scaled real time, for demos.

    Time never goes backwards: sleeping until a past time returns at once without moving it.
    """

    def __init__(self, start_ms: int, *, speed: float | None = None) -> None:
        if speed is not None and speed <= 0:
            raise ValueError("speed must be positive (or None to jump)")
        self._now = int(start_ms)
        self.speed = speed
        self._stopped = False

    def now_ms(self) -> int:
        return self._now

    def advance_to(self, ms: int) -> None:
        """Move the clock forward (no-op if `ms` is in the past)."""
        if ms > self._now:
            self._now = int(ms)

    async def sleep_until(self, ms: int) -> None:
        if ms <= self._now:
            await asyncio.sleep(0)
            return
        if self.speed is not None and not self._stopped:
            await asyncio.sleep((ms - self._now) / 1000.0 / self.speed)
        else:
            await asyncio.sleep(0)
        self.advance_to(ms)

    def wake(self) -> None:
        """Stop waiting real time (shutdown); later sleeps jump instantly."""
        self._stopped = True
