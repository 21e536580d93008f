"""Data quality of candle series: gaps and outliers, flagged (never filled, never dropped).

The rule (documented in README.md, "Data quality"; every number is a setting):

- **gap** — bars missing on the timeframe grid (value: how many; time: the first missing bar).
- **range_outlier** — a bar whose range (high − low) exceeds `range_mult` × the reference range.
- **move_outlier** — a bar whose close-to-close move |close / previous close − 1| exceeds
  `move_mult` × the reference move (a bad close usually flags the bar after it too: the move
  back is as large).
- **price_outlier** — a bar whose high is above `price_factor` × the reference close, or whose
  low is below the reference close / `price_factor`.

A bar's reference value (range, move or close) is the median of its neighbourhood of about
`window` bars: the series is cut into blocks of `window // 5` bars (made odd: 21 for 100), each
block is summarised by its median, and the reference is the median of the five block medians
centred on the bar's block. A median of medians ignores any single bar and any run of bad bars
shorter than about two blocks, and costs about a millisecond on a 100k-bar series. The reference
range and move are never taken below one basis point (of the reference close; of a move), so a
run of flat halt bars (zero range) does not make the next ordinary bar an outlier.

The defaults (window 100, range ×200, move ×300, price ×5) flag none of the real Binance files
in `../shared/data`, whose largest ratios are range ×110 and move ×119 (XRP 1h, 2023-07-13, the
day of the Ripple ruling) and price ×2.95 (DOGE 4h, the 2025-10-10 liquidation cascade); a 100×
price spike is thousands of times over the range and move limits and 20 times over the price
limit. (The block grid shifts the neighbourhood by up to a block, so a bar's ratio depends a
little on where the series starts: the defaults leave about 2× room.)

With `mode="refuse"` the caller stops on the first flag (`enforce`); with `mode="flag"` it
reports every flag and goes on with the bars exactly as they are.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from quorum.market.data_files import CandleSeries, DataSet, load_candles, timeframe_ms

if TYPE_CHECKING:
    from quorum.config import Settings

KINDS = ("gap", "range_outlier", "move_outlier", "price_outlier")
_BLOCKS = 5  # block medians per reference
_FLOOR = 1e-4  # one basis point: the smallest reference range (of the close) and move


class DataQualityError(ValueError):
    """DATA_QUALITY=refuse and the data has a flag; the message is one line naming it."""


@dataclass(frozen=True)
class QualityRule:
    """The outlier rule's numbers and what to do with a flag (see the module doc)."""

    window: int = 100
    range_mult: float = 200.0
    move_mult: float = 300.0
    price_factor: float = 5.0
    mode: str = "flag"  # "flag" | "refuse"

    @classmethod
    def from_settings(cls, settings: Settings) -> QualityRule:
        """DATA_OUTLIER_WINDOW, DATA_OUTLIER_RANGE_MULT, DATA_OUTLIER_MOVE_MULT,
        DATA_OUTLIER_PRICE_FACTOR, DATA_QUALITY."""
        return cls(settings.data_outlier_window, settings.data_outlier_range_mult, settings.data_outlier_move_mult,
                   settings.data_outlier_price_factor, settings.data_quality)


@dataclass(frozen=True)
class DataFlag:
    """One finding: what, where (file, symbol, timeframe, bar open time), the value and its limit."""

    kind: str
    file: str
    symbol: str
    timeframe: str
    time_ms: int
    value: float
    threshold: float
    detail: str

    @property
    def time(self) -> str:
        return iso_minute(self.time_ms)

    def as_dict(self) -> dict[str, Any]:
        """The entry of summary.json's `data_flags` list."""
        return {"file": self.file, "symbol": self.symbol, "timeframe": self.timeframe, "kind": self.kind,
                "time": self.time, "value": self.value, "threshold": self.threshold, "detail": self.detail}

    def line(self) -> str:
        return f"{self.file}: {self.time} {self.kind} {_num(self.value)} ({self.detail})"


def iso_minute(ms: int) -> str:
    """Epoch ms → '2025-10-10T21:15Z' (UTC)."""
    return datetime.fromtimestamp(ms / 1000, tz=UTC).strftime("%Y-%m-%dT%H:%MZ")


def _num(x: float) -> str:
    return f"{x:.10g}"


def neighbourhood_median(x: np.ndarray, window: int) -> np.ndarray:
    """Per element: the median of the `_BLOCKS` block medians centred on the element's block
    (blocks of `window // _BLOCKS` elements, made odd so a median is one element); the edge
    blocks are repeated at the ends."""
    n = int(x.shape[0])
    if n == 0:
        return np.zeros(0)
    b = max(1, window // _BLOCKS) | 1
    full = n // b
    meds = np.partition(x[: full * b].reshape(full, b), b // 2, axis=1)[:, b // 2]
    if full * b < n:
        meds = np.r_[meds, np.median(x[full * b:])]
    k = _BLOCKS // 2
    windows = np.lib.stride_tricks.sliding_window_view(np.pad(meds, k, mode="edge"), _BLOCKS)
    ref = np.partition(windows, k, axis=1)[:, k]
    out: np.ndarray = np.repeat(ref, b)[:n]
    return out


def detect(series: CandleSeries, rule: QualityRule | None = None, file: str | None = None) -> list[DataFlag]:
    """Every gap and outlier in `series`, oldest first. Pure: the series is not changed."""
    rule = rule or QualityRule()
    where = file if file is not None else series.source
    flags: list[DataFlag] = []
    n = len(series)
    tf = series.tf_ms

    def add(kind: str, t: int, value: float, threshold: float, detail: str) -> None:
        flags.append(DataFlag(kind, where, series.symbol, series.timeframe, t, value, threshold, detail))

    for after_ms, missing in series.gaps():
        add("gap", after_ms + tf, float(missing), 0.0,
            f"{missing} {series.timeframe} bar{'s' if missing > 1 else ''} missing: "
            f"{iso_minute(after_ms + tf)} → {iso_minute(after_ms + missing * tf)}; nothing filled")
    if n >= 2:
        close, high, low = series.close, series.high, series.low
        ref_close = neighbourhood_median(close, rule.window)
        rng = high - low
        ref_rng = np.maximum(neighbourhood_median(rng, rule.window), _FLOOR * ref_close)
        move = np.zeros(n)
        move[1:] = np.abs(close[1:] / close[:-1] - 1.0)
        ref_move = np.maximum(neighbourhood_median(move, rule.window), _FLOOR)
        for i in np.flatnonzero(rng > rule.range_mult * ref_rng).tolist():
            add("range_outlier", int(series.open_ms[i]), float(rng[i]), rule.range_mult,
                f"range {_num(rng[i])} = {rng[i] / ref_rng[i]:.0f}× the median range {_num(ref_rng[i])} "
                f"around it (limit {rule.range_mult:g}×)")
        for i in np.flatnonzero(move > rule.move_mult * ref_move).tolist():
            add("move_outlier", int(series.open_ms[i]), float(close[i]), rule.move_mult,
                f"close {_num(close[i])} after {_num(close[i - 1])}: move {move[i] * 100:.4g} % = "
                f"{move[i] / ref_move[i]:.0f}× the median move {ref_move[i] * 100:.3g} % (limit {rule.move_mult:g}×)")
        f = rule.price_factor
        hi = high > f * ref_close
        lo = low < ref_close / f
        for i in np.flatnonzero(hi | lo).tolist():
            price = float(high[i]) if hi[i] else float(low[i])
            add("price_outlier", int(series.open_ms[i]), price, f,
                f"{'high' if hi[i] else 'low'} {_num(price)} = {price / ref_close[i]:.3g}× the median close "
                f"{_num(ref_close[i])} around it (limit {'' if hi[i] else '1/'}{f:g}×)")
    flags.sort(key=lambda fl: (fl.time_ms, KINDS.index(fl.kind)))
    return flags


def closed_by(flags: Iterable[DataFlag], until_ms: int | None) -> list[DataFlag]:
    """The flags on bars closed by `until_ms` (bar open + timeframe <= until); None keeps all."""
    if until_ms is None:
        return list(flags)
    return [f for f in flags if f.time_ms + timeframe_ms(f.timeframe) <= until_ms]


def enforce(flags: Sequence[DataFlag], rule: QualityRule) -> None:
    """DATA_QUALITY=refuse: raise `DataQualityError` naming the first flag (file, time, value)."""
    if rule.mode != "refuse" or not flags:
        return
    more = f"; {len(flags) - 1} more flag{'s' if len(flags) > 2 else ''}" if len(flags) > 1 else ""
    raise DataQualityError(f"data quality: {flags[0].line()}{more}; DATA_QUALITY=refuse stops here "
                           "(fix the file, or set DATA_QUALITY=flag to report and go on)")


def summary_lines(flags: Sequence[DataFlag], files: int, limit: int = 20) -> list[str]:
    """Printable report: a count line, then one line per flag up to `limit`, then how many more."""
    if not flags:
        return [f"data quality: {files} candle file{'s' if files != 1 else ''} checked, no gaps or outliers"]
    out = [f"data quality: {len(flags)} flag{'s' if len(flags) != 1 else ''} in {files} candle "
           f"file{'s' if files != 1 else ''} (bars kept as they are; DATA_QUALITY=refuse stops instead)"]
    out += [f"  {f.line()}" for f in flags[:limit]]
    if len(flags) > limit:
        out.append(f"  … and {len(flags) - limit} more")
    return out


def replay_files(sets: dict[str, DataSet], symbols: Sequence[str], timeframes: Sequence[str],
                 base_timeframe: str) -> list[tuple[str, str, Path]]:
    """(symbol, timeframe, path) of the candle files a replay of `symbols` reads: the base
    timeframe's file and those of the timeframes it cannot be resampled into."""
    out: list[tuple[str, str, Path]] = []
    for sym in symbols:
        ds = sets.get(sym)
        if ds is None:
            continue
        if base_timeframe in ds.candles:
            out.append((sym, base_timeframe, ds.candles[base_timeframe]))
        for tf in timeframes:
            divides = base_timeframe in ds.candles and timeframe_ms(tf) % timeframe_ms(base_timeframe) == 0
            if tf in ds.candles and tf != base_timeframe and not divides:
                out.append((sym, tf, ds.candles[tf]))
    return out


def file_series(candidates: Iterable[CandleSeries | None]) -> list[CandleSeries]:
    """The series among `candidates` read from a file as they are, each once (a series resampled
    from another, whose source is `path→tf`, is derived: its bars' flags are its source's)."""
    seen: dict[str, CandleSeries] = {}
    for s in candidates:
        if s is not None and s.source not in seen and Path(s.source).is_file():
            seen[s.source] = s
    return list(seen.values())


def check_files(files: Sequence[tuple[str, str, Path]], rule: QualityRule | None = None) -> list[DataFlag]:
    """Load each file (raises `DataFileError` for an unusable one) and detect; flags of all files."""
    flags: list[DataFlag] = []
    for sym, tf, path in files:
        flags += detect(load_candles(path, sym, tf), rule, file=str(path))
    return flags


def check_replay(data_dir: Path | str, symbols: Sequence[str], timeframes: Sequence[str], base_timeframe: str,
                 rule: QualityRule | None = None) -> tuple[list[DataFlag], int]:
    """Flags of the candle files a replay of `symbols` from `data_dir` reads, and how many files
    that is (a symbol without files is left to the replay to report)."""
    from quorum.market.data_files import discover

    files = replay_files(discover(data_dir), symbols, timeframes, base_timeframe)
    return check_files(files, rule), len(files)
