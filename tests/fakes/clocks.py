"""Time for tests: waits that are recorded and pass at once."""

from __future__ import annotations

import asyncio


class RecordingSleep:
    """A time source and an async sleep in one: `now()` is virtual time (seconds), each
    `await sleep(s)` is recorded in `calls` and advances it instantly — so backoff and
    Retry-After waits can be asserted without waiting."""

    def __init__(self, start: float = 1_000_000.0) -> None:
        self.calls: list[float] = []
        self.t = start

    def now(self) -> float:
        return self.t

    async def __call__(self, seconds: float) -> None:
        self.calls.append(seconds)
        self.t += seconds
        await asyncio.sleep(0)
