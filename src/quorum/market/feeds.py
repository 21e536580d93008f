"""The `MarketData` port and its replay adapter.

Both adapters (`ReplayMarketData` here, `quorum.market.live.LiveMarketData`) answer the same
questions at a time t given by the engine's clock, from CLOSED bars only:

- `universe()` — the symbols to scan now;
- `snapshots(t, symbols)` — `Snapshot` per symbol with market breadth attached;
- `closed_bars(symbol, timeframe, start_ms, end_ms)` — bars closed by the clock's now;
- `last_price(symbol)` — close of the last closed execution bar.

Asking for anything beyond the clock's now raises `LookaheadError` (replay) — a bar is never
served early.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Protocol, runtime_checkable

from quorum.config import Settings
from quorum.domain.models import Snapshot
from quorum.market.data_files import CandleSeries, discover
from quorum.market.snapshot import DEFAULT_TIMEFRAMES, SnapshotBuilder, build_snapshots
from quorum.market.universe import replay_universe


class LookaheadError(RuntimeError):
    """Something asked for data from after the clock's current time."""


class NowClock(Protocol):
    def now_ms(self) -> int: ...


@runtime_checkable
class MarketData(Protocol):
    """Market data at the engine clock's time (see module doc); the engine's market port."""

    @property
    def rest_host(self) -> str | None:
        """Where live data comes from (None: files)."""

    @property
    def streams_any_symbol(self) -> bool:
        """Live data can serve a symbol it was not started with (an adopted position's)."""

    async def start(self, symbols: Sequence[str] | None = None) -> None:
        """Live data: backfill and open the streams (files: nothing to do)."""

    async def universe(self) -> list[str]: ...

    async def snapshots(self, time_ms: int, symbols: Sequence[str] | None = None) -> dict[str, Snapshot]: ...

    async def closed_bars(
        self, symbol: str, timeframe: str, start_ms: int, end_ms: int | None = None
    ) -> CandleSeries: ...

    async def last_price(self, symbol: str) -> float | None: ...

    async def bars_after(self, symbol: str, timeframe: str, after_ms: int, until_ms: int) -> CandleSeries: ...

    async def close(self) -> None: ...


class ReplayMarketData:
    """Candle/funding files served through a simulated clock, bar by bar, never a bar early.

    Indicators are computed once per symbol and timeframe when the adapter is built; each
    `snapshots(t)` is index lookups. `builder(symbol)` exposes the arrays to the backtester.
    """

    rest_host: str | None = None
    streams_any_symbol = False

    def __init__(
        self,
        data_dir: Path | str,
        clock: NowClock,
        *,
        timeframes: Sequence[str] = DEFAULT_TIMEFRAMES,
        base_timeframe: str = "5m",
        symbols: Sequence[str] = (),
        blocked: Sequence[str] = (),
        builders: Mapping[str, SnapshotBuilder] | None = None,
    ) -> None:
        self.clock = clock
        self.base_timeframe = base_timeframe
        self.timeframes = tuple(timeframes)
        if builders is not None:
            self.builders = dict(builders)
        else:
            sets = discover(data_dir)
            names = replay_universe(data_dir, symbols, blocked)
            self.builders = {
                s: SnapshotBuilder.from_dataset(sets[s], self.timeframes, base_timeframe) for s in names
            }
        if not self.builders:
            raise ValueError(f"no candle files for the requested symbols in {data_dir}")

    @classmethod
    def from_settings(cls, settings: Settings, clock: NowClock, data_dir: Path | str | None = None) -> ReplayMarketData:
        """DATA_DIR, TIMEFRAMES, EXECUTION_TIMEFRAME (base), SYMBOLS, BLOCKED_SYMBOLS."""
        return cls(data_dir if data_dir is not None else settings.data_dir, clock, timeframes=settings.timeframes,
                   base_timeframe=settings.execution_timeframe, symbols=settings.symbols,
                   blocked=settings.blocked_symbols)

    def builder(self, symbol: str) -> SnapshotBuilder:
        return self.builders[symbol]

    def _check(self, time_ms: int) -> None:
        now = self.clock.now_ms()
        if time_ms > now:
            raise LookaheadError(f"asked for data at {time_ms} but the clock is at {now}")

    async def start(self, symbols: Sequence[str] | None = None) -> None:
        return None  # the files are loaded when the adapter is built

    async def universe(self) -> list[str]:
        """Symbols that have at least one closed base bar at the clock's now."""
        now = self.clock.now_ms()
        return [s for s, b in self.builders.items() if b.last_price(now) is not None]

    async def snapshots(self, time_ms: int, symbols: Sequence[str] | None = None) -> dict[str, Snapshot]:
        self._check(time_ms)
        names = list(symbols) if symbols is not None else list(self.builders)
        chosen = [self.builders[s] for s in names if s in self.builders and self.builders[s].last_price(time_ms)]
        return build_snapshots(chosen, time_ms)

    async def closed_bars(
        self, symbol: str, timeframe: str, start_ms: int, end_ms: int | None = None
    ) -> CandleSeries:
        now = self.clock.now_ms()
        if end_ms is not None and end_ms > now:
            self._check(end_ms)
        b = self.builders[symbol]
        series = b.base if (b.base is not None and timeframe == b.base.timeframe) else b.series[timeframe]
        closed = series.truncate(now)
        return closed.between(start_ms, end_ms if end_ms is not None else now)

    async def last_price(self, symbol: str) -> float | None:
        b = self.builders.get(symbol)
        return None if b is None else b.last_price(self.clock.now_ms())

    async def bars_after(self, symbol: str, timeframe: str, after_ms: int, until_ms: int) -> CandleSeries:
        """Closed bars whose close lies in (after_ms, until_ms], oldest first."""
        series = await self.closed_bars(symbol, timeframe, after_ms, min(until_ms, self.clock.now_ms()))
        tf = series.tf_ms
        return series.between(after_ms, until_ms - tf + 1)

    async def close(self) -> None:
        return None
