"""Indicators computed ONCE over a whole `CandleSeries` (TA-Lib on the hot path).

Every array is aligned with the series' bars and causal: the value at bar i uses bars 0..i
only, so a snapshot at time t is an index lookup, and truncating the series after t does not
change any value at or before t. NaN means "not enough history" (the snapshot turns it into
None and a flag). Zero-volume flat bars never divide by zero (guarded divisions give NaN).

Bars are taken as they are: a gap (missing bars) is never forward-filled; the snapshot flags
gaps inside the lookback window instead.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from types import SimpleNamespace

import numpy as np
import talib
from numpy.lib.stride_tricks import as_strided

from quorum.market.data_files import CandleSeries
from quorum.market.regime import classify_regimes

# TA-Lib's Cython functions without talib's pandas/polars wrapper (same results, ~3x less call
# overhead, which dominates on 500-bar series).
_ta = SimpleNamespace(**{
    name: getattr(getattr(talib, name), "__wrapped__", getattr(talib, name))
    for name in ("RSI", "MACD", "BBANDS", "ATR", "EMA", "ADX", "PLUS_DI", "MINUS_DI", "OBV", "SMA",
                 "LINEARREG_SLOPE", "MAX", "MIN")
})



@dataclass(frozen=True)
class IndicatorParams:
    """Periods of every indicator (defaults are the issue's)."""

    rsi: int = 14
    macd_fast: int = 12
    macd_slow: int = 26
    macd_signal: int = 9
    bb_period: int = 20
    bb_dev: float = 2.0
    atr: int = 14
    atr_percentile_window: int = 100
    ema_fast: int = 20
    ema_mid: int = 50
    ema_slow: int = 200
    slope_bars: int = 5
    adx: int = 14
    obv_slope_bars: int = 10
    volume_mean: int = 20
    range_bars: int = 20
    change_hours: int = 24
    recent_closes: int = 12

    def history_bars(self, tf_ms: int) -> int:
        """Closed bars of a `tf_ms` timeframe before every indicator of its view is defined (the
        warm-up a live feed must backfill: on 1m bars the 24 h change alone needs 1,441)."""
        change = max(1, self.change_hours * 3_600_000 // tf_ms) + 1
        return max(change, self.ema_slow + self.slope_bars, self.atr + self.atr_percentile_window,
                   self.macd_slow + self.macd_signal, 2 * self.adx, self.volume_mean + self.obv_slope_bars,
                   self.bb_period, self.range_bars, self.recent_closes)


# Names of the numeric TimeframeView fields, in TimeframeView order (matrix rows).
VIEW_FIELDS: tuple[str, ...] = (
    "close", "change_pct", "rsi", "macd", "macd_signal", "macd_hist", "bb_upper", "bb_middle",
    "bb_lower", "bb_pct_b", "bb_width", "atr", "atr_pct", "atr_pct_percentile", "ema20", "ema50",
    "ema200", "ema20_slope", "ema50_slope", "ema200_slope", "adx", "plus_di", "minus_di",
    "obv_slope", "volume_ratio", "range_high", "range_low",
)


@dataclass(frozen=True, eq=False)
class IndicatorFrame:
    """All indicator arrays of one series (same length as the series; NaN = not enough history).

    `matrix` stacks the `VIEW_FIELDS` rows so that a snapshot reads one column.
    `regime` holds `regime.REGIME_CODES` codes per bar. Units: *_pct and slopes in percent
    (slope = EMA change over `slope_bars` bars), bb_pct_b as a fraction (0 = lower band,
    1 = upper), bb_width = (upper − lower) / middle × 100, atr_pct_percentile in [0, 1]
    (share of the last `atr_percentile_window` ATR% values ≤ the current one), obv_slope =
    linear-regression slope of OBV over `obv_slope_bars` bars divided by the mean bar volume,
    volume_ratio = volume / its `volume_mean`-bar mean, change_pct over `change_hours`.
    """

    series: CandleSeries
    params: IndicatorParams
    close: np.ndarray
    change_pct: np.ndarray
    rsi: np.ndarray
    macd: np.ndarray
    macd_signal: np.ndarray
    macd_hist: np.ndarray
    bb_upper: np.ndarray
    bb_middle: np.ndarray
    bb_lower: np.ndarray
    bb_pct_b: np.ndarray
    bb_width: np.ndarray
    atr: np.ndarray
    atr_pct: np.ndarray
    atr_pct_percentile: np.ndarray
    ema20: np.ndarray
    ema50: np.ndarray
    ema200: np.ndarray
    ema20_slope: np.ndarray
    ema50_slope: np.ndarray
    ema200_slope: np.ndarray
    adx: np.ndarray
    plus_di: np.ndarray
    minus_di: np.ndarray
    obv: np.ndarray
    obv_slope: np.ndarray
    volume_ratio: np.ndarray
    volume_mean: np.ndarray
    range_high: np.ndarray
    range_low: np.ndarray
    regime: np.ndarray
    missing_before: np.ndarray
    matrix: np.ndarray = field(repr=False)

    def __len__(self) -> int:
        return int(self.close.shape[0])

    def arrays(self) -> dict[str, np.ndarray]:
        """name → array for every per-bar array (for the backtester / rules_signals)."""
        return {f.name: getattr(self, f.name) for f in fields(self) if f.name not in ("series", "params", "matrix")}


def _div(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """a / b with NaN wherever b is 0 or not finite (callers run under np.errstate(ignore))."""
    out: np.ndarray = a / b
    out[~np.isfinite(out)] = np.nan
    return out


def _shift_ratio_pct(x: np.ndarray, k: int) -> np.ndarray:
    out = np.empty_like(x)
    out[:k] = np.nan
    if k < len(x):
        out[k:] = _div(x[k:], x[:-k]) * 100.0 - 100.0
    return out


def _windows(x: np.ndarray, n: int) -> np.ndarray:
    """Read-only (len(x) - n + 1, n) view of the rolling windows of a contiguous 1-D array."""
    x = np.ascontiguousarray(x)
    return as_strided(x, shape=(len(x) - n + 1, n), strides=(x.strides[0], x.strides[0]), writeable=False)


def rolling_percentile_rank(x: np.ndarray, window: int) -> np.ndarray:
    """Share of the last `window` values (current included) that are ≤ the current value.
    NaN until a full window of finite values exists. Causal."""
    n = len(x)
    out = np.full(n, np.nan)
    if n < window:
        return out
    x = np.ascontiguousarray(x, dtype=np.float64)
    w = _windows(x, window)
    le = (w <= w[:, -1:]).view(np.uint8).sum(axis=1, dtype=np.int32)
    bad = np.cumsum(~np.isfinite(x), dtype=np.int32)
    bad_in_window = bad[window - 1:] - np.concatenate(([0], bad[: n - window]))
    out[window - 1:] = le / float(window)
    out[window - 1:][bad_in_window > 0] = np.nan
    return out


def compute_indicators(series: CandleSeries, params: IndicatorParams | None = None) -> IndicatorFrame:
    """Compute every indicator over the whole series once (causal arrays, see module doc)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        return _compute(series, params or IndicatorParams())


def _compute(series: CandleSeries, p: IndicatorParams) -> IndicatorFrame:
    h, lo, c, v = series.high, series.low, series.close, series.volume
    n = len(series)
    rsi = _ta.RSI(c, timeperiod=p.rsi)
    macd, macd_sig, macd_hist = _ta.MACD(c, fastperiod=p.macd_fast, slowperiod=p.macd_slow,
                                           signalperiod=p.macd_signal)
    bb_u, bb_m, bb_l = _ta.BBANDS(c, timeperiod=p.bb_period, nbdevup=p.bb_dev, nbdevdn=p.bb_dev, matype=0)
    atr = _ta.ATR(h, lo, c, timeperiod=p.atr)
    atr_pct = _div(atr, c) * 100.0
    ema20 = _ta.EMA(c, timeperiod=p.ema_fast)
    ema50 = _ta.EMA(c, timeperiod=p.ema_mid)
    ema200 = _ta.EMA(c, timeperiod=p.ema_slow)
    adx = _ta.ADX(h, lo, c, timeperiod=p.adx)
    pdi = _ta.PLUS_DI(h, lo, c, timeperiod=p.adx)
    mdi = _ta.MINUS_DI(h, lo, c, timeperiod=p.adx)
    obv = _ta.OBV(c, v)
    vol_mean = _ta.SMA(v, timeperiod=p.volume_mean)
    obv_slope = _div(_ta.LINEARREG_SLOPE(obv, timeperiod=p.obv_slope_bars), vol_mean)
    change_bars = max(1, (p.change_hours * 3_600_000) // series.tf_ms) if n else 1
    atr_pctile = rolling_percentile_rank(atr_pct, p.atr_percentile_window)
    values = {
        "close": c.astype(np.float64, copy=False),
        "change_pct": _shift_ratio_pct(c, int(change_bars)),
        "rsi": rsi, "macd": macd, "macd_signal": macd_sig, "macd_hist": macd_hist,
        "bb_upper": bb_u, "bb_middle": bb_m, "bb_lower": bb_l,
        "bb_pct_b": _div(c - bb_l, bb_u - bb_l),
        "bb_width": _div(bb_u - bb_l, bb_m) * 100.0,
        "atr": atr, "atr_pct": atr_pct, "atr_pct_percentile": atr_pctile,
        "ema20": ema20, "ema50": ema50, "ema200": ema200,
        "ema20_slope": _shift_ratio_pct(ema20, p.slope_bars),
        "ema50_slope": _shift_ratio_pct(ema50, p.slope_bars),
        "ema200_slope": _shift_ratio_pct(ema200, p.slope_bars),
        "adx": adx, "plus_di": pdi, "minus_di": mdi,
        "obv_slope": obv_slope,
        "volume_ratio": _div(v, vol_mean),
        "range_high": _ta.MAX(h, timeperiod=p.range_bars),
        "range_low": _ta.MIN(lo, timeperiod=p.range_bars),
    }
    matrix = np.empty((len(VIEW_FIELDS), n))
    for row, name in enumerate(VIEW_FIELDS):
        matrix[row] = values[name]
    regime = classify_regimes(c, adx, pdi, mdi, ema20, ema50, ema200, atr_pctile)
    return IndicatorFrame(
        series=series, params=p, obv=obv, volume_mean=vol_mean, regime=regime,
        missing_before=series.missing_before(), matrix=matrix, **values,
    )
