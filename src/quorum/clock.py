"""Time for the engine: a `Clock` is the only source of "now" and the only way to wait.

`WallClock` follows real UTC time. `SimulatedClock` jumps (or, with `speed`, runs accelerated)
through replayed time, so the same engine code runs a backtest, a demo and a live service with no
wall-clock sleeps inside the logic.

`service_clock()` is the clock of `quorum run`: the wall clock, unless the TEST-ONLY variable
`QUORUM_TEST_CLOCK` is set (see `ScaledClock`). That variable is the one seam through which the
soak and the smoke tests run the real service faster than real time; no user sets it.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Mapping
from typing import Protocol, runtime_checkable

TEST_CLOCK_ENV = "QUORUM_TEST_CLOCK"


@runtime_checkable
class Clock(Protocol):
    """UTC epoch milliseconds and waiting until a given time (the engine's clock port)."""

    @property
    def speed(self) -> float | None:
        """Clock seconds per wall second (1 on live data; None: a replay that jumps)."""

    def now_ms(self) -> int: ...

    async def sleep_until(self, ms: int) -> None: ...

    def wake(self) -> None:
        """End a `sleep_until` early (stop)."""


class WallClock:
    """Real time. `sleep_until` wakes at the target (never early) and can be interrupted by
    `wake()` (graceful shutdown does not wait for the next bar). `speed` is how many clock
    seconds pass per wall second (1 here): code that waits for the market in wall seconds
    divides by it."""

    speed: float = 1.0

    def __init__(self) -> None:
        self._wake = asyncio.Event()

    def now_ms(self) -> int:
        return int(time.time() * 1000)

    async def sleep_until(self, ms: int) -> None:
        while True:
            delay = (ms - self.now_ms()) / 1000.0 / self.speed
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


class ScaledClock(WallClock):
    """TEST ONLY. Market time that runs `speed` times faster than the wall, anchored so that
    now = sim0_ms + (time.time() - wall0_s) × speed × 1000. Every process given the same anchor
    (the soak's fake Binance, the service, the service again after a SIGKILL) agrees on "now"
    without talking to each other. Spec string: "SIM0_MS,WALL0_S,SPEED"."""

    def __init__(self, sim0_ms: int, wall0_s: float, speed: float) -> None:
        super().__init__()
        if speed <= 0:
            raise ValueError("speed must be positive")
        self.sim0_ms = int(sim0_ms)
        self.wall0_s = float(wall0_s)
        self.speed = float(speed)

    @classmethod
    def parse(cls, spec: str) -> ScaledClock:
        try:
            sim0, wall0, speed = (part.strip() for part in spec.split(","))
            return cls(int(sim0), float(wall0), float(speed))
        except ValueError as exc:
            raise ValueError(f"{TEST_CLOCK_ENV}={spec!r}: expected SIM0_MS,WALL0_S,SPEED ({exc})") from None

    def spec(self) -> str:
        return f"{self.sim0_ms},{self.wall0_s!r},{self.speed!r}"

    def now_ms(self) -> int:
        return int(self.sim0_ms + (time.time() - self.wall0_s) * self.speed * 1000.0)


def service_clock(env: Mapping[str, str] | None = None) -> WallClock:
    """The clock of the running service: wall time, or the test-only `ScaledClock` when
    QUORUM_TEST_CLOCK is set (soak and smoke tests only)."""
    spec = (os.environ if env is None else env).get(TEST_CLOCK_ENV, "").strip()
    return ScaledClock.parse(spec) if spec else WallClock()


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
