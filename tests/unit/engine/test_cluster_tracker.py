"""The engine's clusters (`ClusterTracker`, from the market data port) equal the backtester's
(`cluster_schedule`, from the prepared execution series) day by day, and never read a bar the
clock has not closed."""

from __future__ import annotations

from pathlib import Path

from quorum.backtest.inputs import cluster_schedule
from quorum.backtest.request import BacktestRequest, load_market, parse_time
from quorum.backtest.runner import prepare_inputs
from quorum.config import load_settings
from quorum.domain.clusters import DAY_MS
from quorum.engine.clusters import ClusterTracker, cluster_timeframe
from quorum.market.feeds import ReplayMarketData

SYMBOLS = ("BTCUSDT", "DOGEUSDT", "ETHUSDT", "SOLUSDT")


class Clock:
    def __init__(self, now: int) -> None:
        self.now = now

    def now_ms(self) -> int:
        return self.now


async def test_engine_and_backtest_clusters_agree_every_day(shared_data: Path) -> None:
    settings = load_settings(symbols=list(SYMBOLS), correlation_threshold=0.82)
    assert cluster_timeframe(settings) == "1h"  # read from the 1h bars; the backtester reads 5m closes
    start = parse_time("2025-06-01", "start")
    assert start is not None
    market = load_market(BacktestRequest(shared_data, SYMBOLS, start, start + 20 * DAY_MS))
    schedule = cluster_schedule(prepare_inputs(market, settings), 0.82, 300_000)
    clock = Clock(start)
    feed = ReplayMarketData.from_settings(settings, clock, data_dir=shared_data)
    tracker = ClusterTracker(feed, settings)
    seen = set()
    for day in range(20):
        t = start + day * DAY_MS + 15 * 60_000  # the day's first decision: the clock is at it
        clock.now = t
        clusters = await tracker.at(t, SYMBOLS)
        assert clusters == schedule.at(t), day
        seen.add(clusters)
    assert len(seen) > 1  # the clusters do change over these days, and both follow
