"""Build frozen `Snapshot`s from precomputed indicator arrays (causal index lookups).

`SnapshotBuilder` is built once per symbol: each timeframe's series is resampled exactly from
the base series (e.g. 5m) when possible, indicators are computed once over the whole series,
and `snapshot(t)` reads column `closed_count(t) - 1` of each timeframe's matrix. The same code
serves the backtest (whole history) and live (a 499-bar window refreshed each cycle).

`Snapshot.time_ms` is the time the snapshot was asked for (the decision time); every value
in it comes from bars CLOSED at that time (`open_ms + tf_ms <= time_ms`).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import replace
from typing import Any

import numpy as np

from quorum.domain.models import Breadth, Regime, Snapshot, TimeframeView
from quorum.market.data_files import (
    CandleSeries,
    DataSet,
    FundingSeries,
    load_candles,
    load_funding,
    resample,
    timeframe_ms,
)
from quorum.market.indicators import VIEW_FIELDS, IndicatorFrame, IndicatorParams, compute_indicators
from quorum.market.regime import market_breadth, regime_of

__all__ = ["SnapshotBuilder", "build_snapshots", "market_breadth"]

DEFAULT_TIMEFRAMES = ("15m", "1h", "4h")


def _none_if_nan(values: list[float]) -> list[float | None]:
    return [None if v != v or math.isinf(v) else v for v in values]


class SnapshotBuilder:
    """Snapshots of one symbol at any time, from indicators computed once per timeframe.

    Args:
        symbol: e.g. "BTCUSDT".
        series: candle series per timeframe (closed bars). Missing timeframes are resampled
            exactly from `base` (which must divide them).
        timeframes: the timeframes shown in the snapshot, lowest first.
        base: the finest series (e.g. 5m); gives the snapshot's `price` and feeds resampling.
        funding: funding events (replay); the snapshot then carries the last settled rate and
            the next scheduled settlement unless the caller passes them.
        regime_timeframe: which view's regime becomes `Snapshot.regime` (default: the middle
            timeframe, 1h for 15m/1h/4h).
        lookback_bars: window (per timeframe) in which missing bars are flagged as a gap.
        resample_base: build the timeframes from `base` (exact); False = use `series` as given
            and `base` only for the price (live: each timeframe streamed natively).
    """

    def __init__(
        self,
        symbol: str,
        series: Mapping[str, CandleSeries] | None = None,
        timeframes: Sequence[str] = DEFAULT_TIMEFRAMES,
        *,
        base: CandleSeries | None = None,
        funding: FundingSeries | None = None,
        regime_timeframe: str | None = None,
        params: IndicatorParams | None = None,
        lookback_bars: int = 250,
        resample_base: bool = True,
    ) -> None:
        self.symbol = symbol
        self.timeframes = tuple(sorted(timeframes, key=timeframe_ms))
        self.base = base
        self.funding = funding
        self.params = params or IndicatorParams()
        self.lookback_bars = lookback_bars
        self.regime_timeframe = regime_timeframe or self.timeframes[len(self.timeframes) // 2]
        given = dict(series or {})
        self.series: dict[str, CandleSeries] = {}
        for tf in self.timeframes:
            if resample_base and base is not None and timeframe_ms(tf) % base.tf_ms == 0:
                self.series[tf] = resample(base, tf)
            elif tf in given:
                self.series[tf] = given[tf]
            else:
                raise ValueError(f"{symbol}: no {tf} series and no base series that divides it")
        self.frames: dict[str, IndicatorFrame] = {
            tf: compute_indicators(s, self.params) for tf, s in self.series.items()
        }

    @classmethod
    def from_dataset(
        cls, ds: DataSet, timeframes: Sequence[str] = DEFAULT_TIMEFRAMES, base_timeframe: str = "5m",
        **kwargs: Any,
    ) -> SnapshotBuilder:
        """Load a symbol's files (base timeframe + any others needed) and build."""
        base = load_candles(ds.candles[base_timeframe], ds.symbol, base_timeframe) \
            if base_timeframe in ds.candles else None
        others = {
            tf: load_candles(ds.candles[tf], ds.symbol, tf) for tf in timeframes
            if tf in ds.candles and (base is None or timeframe_ms(tf) % base.tf_ms)
        }
        funding = load_funding(ds.funding, ds.symbol) if ds.funding else None
        return cls(ds.symbol, others, timeframes, base=base, funding=funding, **kwargs)

    def frame(self, timeframe: str) -> IndicatorFrame:
        return self.frames[timeframe]

    def first_complete_ms(self) -> int | None:
        """Earliest time at which every timeframe has at least one closed bar."""
        starts = [int(s.open_ms[0]) + s.tf_ms for s in self.series.values() if len(s)]
        return max(starts) if len(starts) == len(self.series) else None

    def last_price(self, time_ms: int) -> float | None:
        """Close of the last bar closed at `time_ms` (base series, else the finest timeframe)."""
        s = self.base if self.base is not None else self.series[self.timeframes[0]]
        i = s.closed_count(time_ms)
        return float(s.close[i - 1]) if i else None

    def _view(self, tf: str, time_ms: int, flags: list[str]) -> TimeframeView | None:
        frame = self.frames[tf]
        s = frame.series
        i = s.closed_count(time_ms)
        if i == 0:
            flags.append(f"no_data:{tf}")
            return None
        j = i - 1
        vals = _none_if_nan(frame.matrix[:, j].tolist())
        kw = dict(zip(VIEW_FIELDS, vals, strict=True))
        missing = [k for k, v in kw.items() if v is None]
        if missing:
            flags.append(f"short_history:{tf}:{','.join(missing)}")
        start = max(0, j - self.lookback_bars)
        gap = int(frame.missing_before[j] - frame.missing_before[start])
        if gap:
            flags.append(f"gap:{tf}:{gap}")
        tfm = s.tf_ms
        stale = (time_ms // tfm * tfm - (int(s.open_ms[j]) + tfm)) // tfm
        if stale > 0:
            flags.append(f"stale:{tf}:{stale}")
        if s.volume[j] == 0:
            flags.append(f"zero_volume:{tf}")
        k = self.params.recent_closes
        return TimeframeView(
            timeframe=tf, bars=i, regime=regime_of(frame.regime[j]),
            recent_closes=tuple(s.close[max(0, i - k):i].tolist()), **kw,  # type: ignore[arg-type]
        )

    def snapshot(
        self,
        time_ms: int,
        funding_rate: float | None = None,
        next_funding_ms: int | None = None,
        breadth: Breadth | None = None,
        open_interest: float | None = None,
        book_imbalance: float | None = None,
    ) -> Snapshot:
        """The snapshot at `time_ms` from bars closed by then (cheap: index lookups)."""
        flags: list[str] = []
        views = [v for tf in self.timeframes if (v := self._view(tf, time_ms, flags)) is not None]
        price = self.last_price(time_ms)
        if price is None:
            price = views[0].close if views else float("nan")
            flags.append("no_price")
        if self.funding is not None and funding_rate is None:
            funding_rate = self.funding.last_rate(time_ms)
            next_funding_ms = self.funding.next_funding_ms(time_ms)
        main = next((v for v in views if v.timeframe == self.regime_timeframe), None)
        return Snapshot(
            symbol=self.symbol, time_ms=int(time_ms), price=price, timeframes=tuple(views),
            regime=main.regime if main else Regime.UNKNOWN,
            funding_rate=funding_rate, next_funding_ms=next_funding_ms, open_interest=open_interest,
            book_imbalance=book_imbalance, breadth=breadth, flags=tuple(flags),
        )

    def sampled(self, timeframe: str, times_ms: np.ndarray | Sequence[int]) -> dict[str, np.ndarray]:
        """The backtest path: every `VIEW_FIELDS` array of `timeframe` sampled at many times at
        once (the last bar closed by each time; NaN where none) plus `regime` codes (-1 where
        none) — exactly the values `snapshot(t).view(timeframe)` shows, for all t in one call."""
        frame = self.frames[timeframe]
        s = frame.series
        t = np.asarray(times_ms, dtype=np.int64)
        idx = np.searchsorted(s.open_ms, t - s.tf_ms, side="right") - 1
        ok = idx >= 0
        safe = np.maximum(idx, 0)
        out: dict[str, np.ndarray] = {}
        if len(s) == 0:
            nan = np.full(t.shape, np.nan)
            out = {name: nan.copy() for name in VIEW_FIELDS}
            out["regime"] = np.full(t.shape, -1, dtype=np.int8)
            return out
        for row, name in enumerate(VIEW_FIELDS):
            vals = frame.matrix[row, safe]
            vals[~ok] = np.nan
            out[name] = vals
        reg = frame.regime[safe].copy()
        reg[~ok] = -1
        out["regime"] = reg
        return out

    def regime_codes(self, timeframe: str | None = None) -> np.ndarray:
        return self.frames[timeframe or self.regime_timeframe].regime


def build_snapshots(
    builders: Iterable[SnapshotBuilder],
    time_ms: int,
    extras: Mapping[str, Mapping[str, Any]] | None = None,
    breadth_timeframe: str | None = None,
) -> dict[str, Snapshot]:
    """Snapshots of many symbols at one time with market breadth attached to each.

    `extras[symbol]` may hold funding_rate, next_funding_ms, open_interest, book_imbalance.
    Breadth uses `breadth_timeframe` (default: each builder's regime timeframe view).
    """
    extras = extras or {}
    snaps = {b.symbol: b.snapshot(time_ms, **dict(extras.get(b.symbol, {}))) for b in builders}
    live = [s for s in snaps.values() if s.timeframes]
    breadth = market_breadth(live, breadth_timeframe or _common_tf(live))
    return {k: replace(s, breadth=breadth) for k, s in snaps.items()}


def _common_tf(snaps: Sequence[Snapshot]) -> str | None:
    """The 1h view when every snapshot has one (24 h change and EMA50 on 1h), else None."""
    if snaps and all(s.view("1h") is not None for s in snaps):
        return "1h"
    return None
