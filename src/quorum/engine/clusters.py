"""The engine's correlation clusters: the day's clusters (`quorum.domain.clusters`) from the
market data port, computed once per UTC day and symbol set.

The closes come from `MarketData.closed_bars`: the 1h bars when 1h is a configured timeframe
(live data keeps ~41 days of them), else the execution timeframe's bars (live data keeps fewer
days of those: a shorter window, fewer returns). On replayed files both give the backtester's
closes exactly, so paper and backtest see the same clusters. A symbol whose bars cannot be read
is left out and the day is computed again at the next entry (one warning line per failure).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np
import structlog

from quorum.config import timeframe_seconds
from quorum.domain.clusters import CLUSTER_LOOKBACK_DAYS, DAY_MS, HOUR_MS, Closes, Clusters, ClusterSchedule
from quorum.market.feeds import MarketData

log = structlog.get_logger("quorum.engine")


def cluster_timeframe(settings: Any) -> str:
    """The timeframe whose closes feed the clusters (see the module docstring)."""
    exec_tf = str(settings.execution_timeframe)
    if timeframe_seconds(exec_tf) * 1000 < HOUR_MS and "1h" in settings.timeframes:
        return "1h"
    return exec_tf


class ClusterTracker:
    """`await tracker.at(t, symbols)`: the clusters in force at t among `symbols`."""

    def __init__(self, market: MarketData, settings: Any) -> None:
        self.market = market
        self.threshold = float(settings.correlation_threshold)
        self.timeframe = cluster_timeframe(settings)
        self.step_ms = max(HOUR_MS, timeframe_seconds(str(settings.execution_timeframe)) * 1000)
        self._key: tuple[int, frozenset[str]] | None = None
        self._clusters: Clusters = ()

    async def at(self, time_ms: int, symbols: Iterable[str]) -> Clusters:
        day = time_ms // DAY_MS * DAY_MS
        names = frozenset(symbols)
        if self._key == (day, names):
            return self._clusters
        start = day - CLUSTER_LOOKBACK_DAYS * DAY_MS
        closes: dict[str, Closes] = {}
        complete = True
        for sym in sorted(names):
            try:
                bars = await self.market.closed_bars(sym, self.timeframe, start - self.step_ms, day)
            except Exception as exc:  # a symbol without bars is left out; the day is tried again
                complete = False
                log.warning("engine.cluster_bars_unavailable", symbol=sym, timeframe=self.timeframe,
                            error=f"{type(exc).__name__}: {exc}"[:200])
                continue
            closes[sym] = (np.asarray(bars.open_ms, dtype=np.int64) + bars.tf_ms,
                           np.asarray(bars.close, dtype=np.float64))
        # the grid spans the whole window whatever bars arrived: the backtester's window exactly
        clusters = ClusterSchedule(closes, self.threshold, step_ms=self.step_ms, span=(start, day)).at(day)
        if complete:
            self._key, self._clusters = (day, names), clusters
        return clusters
