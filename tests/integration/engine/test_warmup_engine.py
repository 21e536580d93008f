"""The engine takes no decision before every timeframe's indicators are defined: a replay that
starts inside the warm-up (the 4h EMA200 slope needs 205 4h bars; the files begin 2024-12-31)
only decides from 2025-02-03 04:00, the time the fast backtest's warm-up also ends."""

from __future__ import annotations

from pathlib import Path

import asyncpg

from quorum.backtest.request import parse_time
from quorum.bootstrap import bootstrap
from quorum.config import load_settings

TF = 300_000


async def test_replay_decides_only_once_the_indicators_are_defined(pool: asyncpg.Pool, shared_data: Path) -> None:
    ready = parse_time("2025-02-03T04:00", "ready")
    assert ready is not None
    start = ready - 86_400_000
    settings = load_settings(min_ai_confidence=0.55, symbols=["BTCUSDT"])
    app = await bootstrap(settings, pool=pool, mode="backtest", data_dir=shared_data, symbols=["BTCUSDT"],
                          start_ms=start)
    engine = app.engine
    try:
        await engine.start()
        first_decision = None
        t = start + TF
        while t <= ready + 12 * 3_600_000:
            await app.clock.sleep_until(t)
            await engine.step(t)
            if first_decision is None and engine.stats.decisions:
                first_decision = t
            t += TF
        assert engine.stats.cycles >= 96 + 48  # a decision cycle every 15 minutes throughout
        assert first_decision == ready
    finally:
        await app.close()
