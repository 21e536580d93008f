"""The engine in paper mode on replayed files: runtime status, graceful stop (stops stay on the
venue), pause (no new entries, exits still managed) and kill (flat)."""

from __future__ import annotations

from pathlib import Path

import asyncpg

from quorum.backtest.request import parse_time
from quorum.bootstrap import bootstrap
from quorum.clock import SimulatedClock
from quorum.config import load_settings

TF = 300_000


async def test_engine_runtime_stop_pause_kill(pool: asyncpg.Pool, shared_data: Path) -> None:
    settings = load_settings(min_ai_confidence=0.55, symbols=["BTCUSDT"])
    start = parse_time("2025-10-01", "s")
    assert start is not None
    app = await bootstrap(settings, pool=pool, mode="paper", data_dir=shared_data, symbols=["BTCUSDT"],
                          start_ms=start, account="paper-lifecycle")
    assert isinstance(app.clock, SimulatedClock)
    engine, rt = app.engine, app.runtime
    await engine.start()
    assert app.executor.entries_allowed  # reconciliation succeeded on the empty venue

    # run until a position is open
    t = start + TF
    while not await app.executor.positions.open_positions():
        await app.clock.sleep_until(t)
        await engine.step(t)
        t += TF
        assert t < start + 2 * 86_400_000, "no entry in two days"
    assert rt.last_scan_ms is not None and rt.sim_time_ms == t - TF
    assert rt.last_decisions and rt.equity is not None and rt.positions
    assert rt.positions[0]["stop_price"] is not None

    # graceful stop: the loop ends, the protective stop stays on the venue for the full size
    steps = engine.stats.steps
    await engine.stop()
    stats = await engine.run(until_ms=t + 10 * TF)
    assert stats.steps == steps  # nothing more ran after stop()
    pos = (await app.executor.positions.open_positions())[0]
    orders = await app.exchange.fetch_open_orders("BTCUSDT")
    stops = [o for o in orders if o.type == "stop_market" and o.reduce_only]
    assert len(stops) == 1 and abs(stops[0].quantity - pos.quantity) < 1e-9

    # pause: no new entries for a day, while the open position is still managed to its exit
    engine._stopping = False
    await rt.pause()
    entries_before = engine.stats.entries
    end = t + 86_400_000
    while t < end:
        await app.clock.sleep_until(t)
        await engine.step(t)
        t += TF
    assert engine.stats.entries == entries_before
    paused_seen = any(d.get("verdict") == "paused" for d in rt.last_decisions)
    assert paused_seen or not await app.executor.positions.open_positions()

    # resume and trade until something is open again, then kill: flat, entries stay blocked
    await rt.resume()
    while not await app.executor.positions.open_positions():
        await app.clock.sleep_until(t)
        await engine.step(t)
        t += TF
        assert t < end + 3 * 86_400_000
    await rt.kill()
    assert not await app.executor.positions.open_positions()
    assert [p for p in await app.exchange.fetch_positions()] == []
    await app.clock.sleep_until(t)
    await engine.step(t)  # a step after the kill opens nothing
    assert not await app.executor.positions.open_positions()
    await app.close()


async def test_demo_wiring_accelerated_replay_runs_to_the_end(pool: asyncpg.Pool, shared_data: Path) -> None:
    """What `quorum demo` does: replayed files, an accelerated simulated clock, the paper venue."""
    from quorum.bootstrap import run_app

    settings = load_settings(symbols=["ETHUSDT"])
    start = parse_time("2025-10-05", "s")
    assert start is not None
    app = await bootstrap(settings, pool=pool, mode="backtest", data_dir=shared_data, symbols=["ETHUSDT"],
                          start_ms=start, speed=1_000_000.0, account="demo")
    assert app.data_end_ms is not None and app.data_end_ms > start
    stats = await run_app(app, until_ms=start + 2 * 3_600_000)
    assert stats.steps == 24 and stats.cycles == 8
    assert app.runtime.sim_time_ms == start + 2 * 3_600_000
    assert app.runtime.mode == "backtest" and app.runtime.last_scan_ms is not None
    assert app.clock.now_ms() == start + 2 * 3_600_000
