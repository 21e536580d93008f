"""Clocks: simulated time jumps forward only; the wall clock follows real time."""

from __future__ import annotations

import asyncio
import time

import pytest

from quorum.clock import Clock, SimulatedClock, WallClock


async def test_simulated_clock_jumps_and_never_goes_back() -> None:
    clock = SimulatedClock(1_000)
    assert isinstance(clock, Clock)
    await clock.sleep_until(5_000)
    assert clock.now_ms() == 5_000
    await clock.sleep_until(2_000)  # the past: returns at once, time unchanged
    assert clock.now_ms() == 5_000
    clock.advance_to(4_000)
    assert clock.now_ms() == 5_000
    clock.advance_to(9_000)
    assert clock.now_ms() == 9_000


async def test_simulated_clock_accelerated_reaches_target() -> None:
    clock = SimulatedClock(0, speed=1_000_000.0)  # 1000 s of replay per real ms
    await clock.sleep_until(300_000)
    assert clock.now_ms() == 300_000


async def test_simulated_clock_rejects_bad_speed() -> None:
    with pytest.raises(ValueError):
        SimulatedClock(0, speed=0)


async def test_wall_clock_now_and_past_target() -> None:
    clock = WallClock()
    before = int(time.time() * 1000)
    assert abs(clock.now_ms() - before) < 5_000
    await clock.sleep_until(before - 10)  # already passed: returns


async def test_wall_clock_wake_interrupts() -> None:
    clock = WallClock()
    task = asyncio.create_task(clock.sleep_until(clock.now_ms() + 3_600_000))
    await asyncio.sleep(0)
    clock.wake()
    await asyncio.wait_for(task, timeout=5)
    assert task.done()
