"""Candle and funding files: validated loading, discovery and exact resampling.

File format (as in `../shared/data`): `timestamp_ms,open,high,low,close,volume` with the bar's
OPEN time in UTC epoch ms, `.csv` or `.csv.gz`; funding files `timestamp_ms,funding_rate`.
Names: `SYMBOL-futures-TF.csv[.gz]` and `SYMBOL-funding.csv[.gz]`.

Validation errors (`DataFileError`) name the file and the 1-based line number (the header is
line 1). Gaps (missing bars) and outliers are NOT errors: gaps are kept as gaps (never
forward-filled; `CandleSeries.gaps`, `missing_before` for the snapshot's flags), and
`quorum.market.quality` reports both without changing a bar.
"""

from __future__ import annotations

import re
import zlib
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import numpy as np
import pandas as pd

from quorum.config import timeframe_seconds

CANDLE_COLUMNS = ("timestamp_ms", "open", "high", "low", "close", "volume")
FUNDING_COLUMNS = ("timestamp_ms", "funding_rate")
_CANDLE_NAME = re.compile(r"^(?P<symbol>[A-Z0-9]+)-futures-(?P<tf>\d+[mhd])\.csv(\.gz)?$")
_FUNDING_NAME = re.compile(r"^(?P<symbol>[A-Z0-9]+)-funding\.csv(\.gz)?$")


class DataFileError(ValueError):
    """A data file is unusable; the message names the file and (where known) the line."""


@lru_cache(maxsize=64)
def timeframe_ms(tf: str) -> int:
    return timeframe_seconds(tf) * 1000


@dataclass(frozen=True, eq=False)
class CandleSeries:
    """OHLCV bars of one symbol and timeframe as numpy arrays (ascending, unique open times)."""

    symbol: str
    timeframe: str
    open_ms: np.ndarray  # int64, bar OPEN time
    open: np.ndarray
    high: np.ndarray
    low: np.ndarray
    close: np.ndarray
    volume: np.ndarray
    source: str = ""

    def __len__(self) -> int:
        return int(self.open_ms.shape[0])

    @property
    def tf_ms(self) -> int:
        return timeframe_ms(self.timeframe)

    def closed_count(self, time_ms: int) -> int:
        """Number of bars CLOSED at `time_ms` (open_ms + tf_ms <= time_ms)."""
        return int(np.searchsorted(self.open_ms, time_ms - self.tf_ms, side="right"))

    def slice(self, start: int, stop: int) -> CandleSeries:
        return CandleSeries(
            self.symbol, self.timeframe, self.open_ms[start:stop], self.open[start:stop],
            self.high[start:stop], self.low[start:stop], self.close[start:stop],
            self.volume[start:stop], self.source,
        )

    def truncate(self, time_ms: int) -> CandleSeries:
        """Only the bars closed at `time_ms`."""
        return self.slice(0, self.closed_count(time_ms))

    def between(self, start_ms: int, end_ms: int) -> CandleSeries:
        """Bars with start_ms <= open_ms < end_ms."""
        a = int(np.searchsorted(self.open_ms, start_ms, side="left"))
        b = int(np.searchsorted(self.open_ms, end_ms, side="left"))
        return self.slice(a, b)

    def missing_before(self) -> np.ndarray:
        """missing_before[i] = bars missing on the grid between bar 0 and bar i (causal)."""
        if len(self) == 0:
            return np.zeros(0, dtype=np.int64)
        out: np.ndarray = (self.open_ms - self.open_ms[0]) // self.tf_ms - np.arange(len(self), dtype=np.int64)
        return out

    def gaps(self) -> list[tuple[int, int]]:
        """(open_ms after which bars are missing, number missing) for every gap."""
        if len(self) < 2:
            return []
        d = np.diff(self.open_ms) // self.tf_ms - 1
        idx = np.nonzero(d > 0)[0]
        return [(int(self.open_ms[i]), int(d[i])) for i in idx]

    @staticmethod
    def from_arrays(
        symbol: str, timeframe: str, open_ms: np.ndarray | list[int], open_: np.ndarray | list[float],
        high: np.ndarray | list[float], low: np.ndarray | list[float], close: np.ndarray | list[float],
        volume: np.ndarray | list[float], source: str = "<arrays>",
    ) -> CandleSeries:
        """Build and validate a series from arrays (e.g. ccxt OHLCV rows)."""
        o, h, lo, c, v = (np.ascontiguousarray(a, dtype=np.float64) for a in (open_, high, low, close, volume))
        ts = np.ascontiguousarray(open_ms, dtype=np.int64)
        series = CandleSeries(symbol, timeframe, ts, o, h, lo, c, v, source=source)
        _validate_candles(series, source, line_offset=1)
        return series


@dataclass(frozen=True, eq=False)
class FundingSeries:
    """Funding events: settlement time (ms) and rate (+ = longs pay shorts)."""

    symbol: str
    time_ms: np.ndarray
    rate: np.ndarray
    interval_ms: int = 8 * 3600 * 1000

    def __len__(self) -> int:
        return int(self.time_ms.shape[0])

    def last_rate(self, time_ms: int) -> float | None:
        """Rate of the last funding event settled at or before `time_ms` (causal)."""
        i = int(np.searchsorted(self.time_ms, time_ms, side="right")) - 1
        return None if i < 0 else float(self.rate[i])

    def next_funding_ms(self, time_ms: int) -> int | None:
        """Next settlement strictly after `time_ms`, from the schedule (not from later rows)."""
        i = int(np.searchsorted(self.time_ms, time_ms, side="right")) - 1
        if i < 0:
            return None
        anchor = int(self.time_ms[i])
        return anchor + ((time_ms - anchor) // self.interval_ms + 1) * self.interval_ms


@dataclass
class DataSet:
    """The files of one symbol in a data directory."""

    symbol: str
    candles: dict[str, Path] = field(default_factory=dict)
    funding: Path | None = None


def _line(i: int, offset: int) -> int:
    return int(i) + offset + 1


def _read_csv(path: Path, columns: tuple[str, ...], as_str: bool = False) -> pd.DataFrame:
    try:
        if as_str:
            df = pd.read_csv(path, dtype=str, na_filter=False, engine="c")
        else:
            df = pd.read_csv(path, engine="c")
    except FileNotFoundError:
        raise DataFileError(f"{path}: file not found") from None
    except (OSError, EOFError, zlib.error, UnicodeDecodeError, ValueError) as exc:  # incl. pandas ParserError
        raise DataFileError(f"{path}: unreadable ({type(exc).__name__}: {exc})") from None
    got = tuple(str(c).strip() for c in df.columns)
    if got != columns:
        raise DataFileError(f"{path}: line 1: header {','.join(got)!r}, expected {','.join(columns)!r}")
    df.columns = list(got)
    return df


def _columns(path: Path, columns: tuple[str, ...]) -> list[np.ndarray]:
    """Numeric columns of a CSV (first column int64). Fast path; on any non-number, re-read as
    text to name the offending line."""
    df = _read_csv(path, columns)
    if all(pd.api.types.is_numeric_dtype(df[c]) for c in columns):
        out: list[np.ndarray] = []
        for j, c in enumerate(columns):
            arr = df[c].to_numpy(dtype=np.float64)
            nan = np.isnan(arr)
            if nan.any():
                raise DataFileError(f"{path}: line {_line(int(np.argmax(nan)), 1)}: column {c}: missing or NaN")
            if j == 0:
                frac = arr != np.floor(arr)
                if frac.any():
                    i = int(np.argmax(frac))
                    raise DataFileError(f"{path}: line {_line(i, 1)}: column {c}: not an integer ({arr[i]!r})")
                out.append(arr.astype(np.int64))
            else:
                out.append(arr)
        return out
    df = _read_csv(path, columns, as_str=True)
    return [_numeric(df, c, path, integer=(j == 0)) for j, c in enumerate(columns)]


def _numeric(df: pd.DataFrame, col: str, path: Path, integer: bool = False) -> np.ndarray:
    raw = df[col].astype(str)
    arr = pd.to_numeric(raw, errors="coerce").to_numpy(dtype=np.float64)
    bad = np.isnan(arr)
    if bad.any():
        i = int(np.argmax(bad))
        raise DataFileError(f"{path}: line {_line(i, 1)}: column {col}: not a number ({raw.iloc[i]!r})")
    if integer:
        frac = arr != np.floor(arr)
        if frac.any():
            i = int(np.argmax(frac))
            raise DataFileError(f"{path}: line {_line(i, 1)}: column {col}: not an integer ({raw.iloc[i]!r})")
        return arr.astype(np.int64)
    return arr


def _validate_candles(s: CandleSeries, where: str, line_offset: int) -> None:
    n = len(s)
    for name in ("open", "high", "low", "close", "volume"):
        a = getattr(s, name)
        if a.shape[0] != n:
            raise DataFileError(f"{where}: column {name} has {a.shape[0]} values, expected {n}")
        bad = ~np.isfinite(a)
        if bad.any():
            raise DataFileError(f"{where}: line {_line(int(np.argmax(bad)), line_offset)}: column {name}: NaN/inf")
    for name in ("open", "high", "low", "close"):
        bad = getattr(s, name) <= 0
        if bad.any():
            raise DataFileError(f"{where}: line {_line(int(np.argmax(bad)), line_offset)}: {name} <= 0")
    if (s.volume < 0).any():
        raise DataFileError(f"{where}: line {_line(int(np.argmax(s.volume < 0)), line_offset)}: volume < 0")
    bad = (s.high < np.maximum(s.open, s.close)) | (s.low > np.minimum(s.open, s.close)) | (s.low > s.high)
    if bad.any():
        i = int(np.argmax(bad))
        raise DataFileError(f"{where}: line {_line(i, line_offset)}: high/low do not bound open/close")
    tf = s.tf_ms
    off = s.open_ms % tf
    if (off != 0).any():
        i = int(np.argmax(off != 0))
        raise DataFileError(f"{where}: line {_line(i, line_offset)}: timestamp {int(s.open_ms[i])} is not on the "
                            f"{s.timeframe} grid")
    if n > 1:
        d = np.diff(s.open_ms)
        if (d == 0).any():
            i = int(np.argmax(d == 0)) + 1
            raise DataFileError(f"{where}: line {_line(i, line_offset)}: duplicate timestamp {int(s.open_ms[i])}")
        if (d < 0).any():
            i = int(np.argmax(d < 0)) + 1
            raise DataFileError(f"{where}: line {_line(i, line_offset)}: timestamp {int(s.open_ms[i])} is earlier "
                                "than the previous row (file not sorted)")


def parse_candle_name(path: Path) -> tuple[str, str] | None:
    m = _CANDLE_NAME.match(path.name)
    return (m["symbol"], m["tf"]) if m else None


def load_candles(path: Path | str, symbol: str | None = None, timeframe: str | None = None) -> CandleSeries:
    """Load and validate a candle file. Symbol/timeframe default to those in the file name.

    Raises `DataFileError` naming the file and line for a bad header, a non-number, NaN, a
    non-positive price, high/low not bounding open/close, an off-grid, duplicate or unsorted
    timestamp. Gaps are allowed (see `CandleSeries.gaps`).
    """
    path = Path(path)
    parsed = parse_candle_name(path)
    symbol = symbol or (parsed[0] if parsed else None)
    timeframe = timeframe or (parsed[1] if parsed else None)
    if not symbol or not timeframe:
        raise DataFileError(f"{path}: cannot tell symbol/timeframe from the name (expected SYMBOL-futures-TF.csv.gz)")
    try:
        timeframe_ms(timeframe)
    except ValueError:
        raise DataFileError(f"{path}: unknown timeframe {timeframe!r}") from None
    cols = _columns(path, CANDLE_COLUMNS)
    ts, o, h, lo, c, v = cols
    series = CandleSeries(symbol, timeframe, ts, o, h, lo, c, v, source=str(path))
    _validate_candles(series, str(path), line_offset=1)
    return series


def load_funding(path: Path | str, symbol: str | None = None) -> FundingSeries:
    """Load and validate a funding file (`timestamp_ms,funding_rate`, ascending, unique)."""
    path = Path(path)
    m = _FUNDING_NAME.match(path.name)
    symbol = symbol or (m["symbol"] if m else path.name.split("-")[0])
    ts, rate = _columns(path, FUNDING_COLUMNS)
    if len(ts) > 1:
        d = np.diff(ts)
        if (d <= 0).any():
            i = int(np.argmax(d <= 0)) + 1
            what = "duplicate" if d[i - 1] == 0 else "unsorted"
            raise DataFileError(f"{path}: line {i + 2}: {what} timestamp {int(ts[i])}")
    interval = 8 * 3600 * 1000
    if len(ts) > 2:
        med = int(np.median(np.diff(ts[-50:])))
        if med > 0:
            hour = 3600 * 1000
            interval = max(hour, round(med / hour) * hour)
    return FundingSeries(symbol, ts, rate, interval)


def discover(data_dir: Path | str) -> dict[str, DataSet]:
    """Symbols present in a data directory, with their candle files per timeframe and funding."""
    data_dir = Path(data_dir)
    out: dict[str, DataSet] = {}
    if not data_dir.is_dir():
        return out
    for p in sorted(data_dir.iterdir()):
        c = parse_candle_name(p)
        if c:
            ds = out.setdefault(c[0], DataSet(c[0]))
            if c[1] not in ds.candles or p.name.endswith(".gz"):
                ds.candles[c[1]] = p
            continue
        m = _FUNDING_NAME.match(p.name)
        if m:
            out.setdefault(m["symbol"], DataSet(m["symbol"])).funding = p
    return {k: out[k] for k in sorted(out)}


def resample(series: CandleSeries, timeframe: str) -> CandleSeries:
    """Exact aggregation of a lower timeframe into `timeframe` (epoch-aligned, like Binance).

    Only COMPLETE groups become bars (every constituent bar present), so the still-forming bar
    at the end and any group touched by a gap are left out — the result holds closed bars only
    and a gap in the input stays a gap in the output.
    """
    src, dst = series.tf_ms, timeframe_ms(timeframe)
    if dst == src:
        return series
    if dst % src:
        raise ValueError(f"cannot resample {series.timeframe} into {timeframe}")
    ratio = dst // src
    if len(series) == 0:
        return CandleSeries(series.symbol, timeframe, series.open_ms[:0], *(np.zeros(0),) * 5, source=series.source)
    key = series.open_ms // dst
    starts = np.flatnonzero(np.r_[True, key[1:] != key[:-1]])
    counts = np.diff(np.r_[starts, len(series)])
    ends = starts + counts - 1
    full = counts == ratio
    high = np.maximum.reduceat(series.high, starts)[full]
    low = np.minimum.reduceat(series.low, starts)[full]
    vol = np.add.reduceat(series.volume, starts)[full]
    return CandleSeries(
        series.symbol, timeframe, (key[starts] * dst)[full].astype(np.int64),
        series.open[starts[full]], high, low, series.close[ends[full]], vol,
        source=f"{series.source}→{timeframe}",
    )
