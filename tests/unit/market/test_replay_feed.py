"""ReplayMarketData serves closed bars through a simulated clock, never a bar early."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from quorum.market.data_files import CandleSeries
from quorum.market.feeds import LookaheadError, MarketData, ReplayMarketData
from quorum.market.snapshot import SnapshotBuilder

T0 = 1_735_603_200_000
M5 = 300_000


class StepClock:
    def __init__(self, t: int) -> None:
        self.t = t

    def now_ms(self) -> int:
        return self.t


def _builder(sym: str, n: int, start: int = T0) -> SnapshotBuilder:
    c = 100 + np.cumsum(np.sin(np.arange(n) / 5))
    o = np.r_[c[0], c[:-1]]
    base = CandleSeries.from_arrays(sym, "5m", start + np.arange(n) * M5, o, np.maximum(o, c) + 0.1,
                                    np.minimum(o, c) - 0.1, c, np.ones(n))
    return SnapshotBuilder(sym, None, base=base)


async def test_bar_by_bar_never_early() -> None:
    clock = StepClock(T0 + 100 * M5)
    feed = ReplayMarketData("unused", clock, builders={"AUSDT": _builder("AUSDT", 2000)})
    assert isinstance(feed, MarketData)
    b = feed.builder("AUSDT")
    assert b.base is not None
    for step in range(5):
        now = T0 + (100 + step) * M5 + (7_000 if step % 2 else 0)  # on and between bar closes
        clock.t = now
        bars = await feed.closed_bars("AUSDT", "5m", T0)
        assert int(bars.open_ms[-1]) + M5 <= now < int(bars.open_ms[-1]) + 2 * M5
        assert await feed.last_price("AUSDT") == bars.close[-1]
        h = await feed.closed_bars("AUSDT", "1h", T0)
        assert int(h.open_ms[-1]) + 3_600_000 <= now
    with pytest.raises(LookaheadError):
        await feed.snapshots(clock.t + M5)
    with pytest.raises(LookaheadError):
        await feed.closed_bars("AUSDT", "5m", T0, clock.t + 2 * M5)


async def test_snapshots_universe_and_breadth() -> None:
    clock = StepClock(T0 + 300 * M5)
    late = _builder("BUSDT", 500, start=T0 + 200 * M5)
    feed = ReplayMarketData("unused", clock, builders={"AUSDT": _builder("AUSDT", 1000), "BUSDT": late})
    snaps = await feed.snapshots(clock.t)
    assert set(snaps) == {"AUSDT", "BUSDT"}
    assert all(s.breadth is not None and s.breadth.symbols == 2 for s in snaps.values())
    clock.t = T0 + 100 * M5  # BUSDT has no bars yet
    assert await feed.universe() == ["AUSDT"]
    assert set(await feed.snapshots(clock.t)) == {"AUSDT"}


async def test_from_data_dir(shared_data: Path) -> None:
    clock = StepClock(1_750_000_000_000 // M5 * M5)
    feed = ReplayMarketData(shared_data, clock, symbols=["BTCUSDT", "XRPUSDT"])
    snaps = await feed.snapshots(clock.t)
    assert set(snaps) == {"BTCUSDT", "XRPUSDT"}
    assert snaps["BTCUSDT"].funding_rate is not None
    from quorum.config import Settings

    st = Settings(_env_file=None, symbols="ETHUSDT", data_dir=shared_data)  # type: ignore[call-arg]
    assert list(ReplayMarketData.from_settings(st, clock).builders) == ["ETHUSDT"]
    with pytest.raises(ValueError, match="no candle files"):
        ReplayMarketData(shared_data, clock, symbols=["NOPEUSDT"])
