"""Indicators agree with TA-Lib / pandas-ta references, are causal and survive flat bars."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pandas_ta_classic as ta
import pytest
import talib

from quorum.domain.models import Regime
from quorum.market.data_files import CandleSeries, load_candles, resample
from quorum.market.indicators import compute_indicators, rolling_percentile_rank
from quorum.market.regime import CODE

T0 = 1_735_603_200_000


def _same(a: np.ndarray, b: np.ndarray, tol: float = 1e-9) -> None:
    assert a.shape == b.shape
    assert np.array_equal(np.isnan(a), np.isnan(b))
    m = ~np.isnan(a)
    scale = np.maximum(1.0, np.abs(b[m]))
    assert np.all(np.abs(a[m] - b[m]) <= tol * scale)


@pytest.fixture(scope="module")
def eth_1h(shared_data: Path) -> CandleSeries:
    return resample(load_candles(shared_data / "ETHUSDT-futures-5m.csv.gz"), "1h")


def test_agrees_with_talib_reference(eth_1h: CandleSeries) -> None:
    s = eth_1h
    f = compute_indicators(s)
    h, lo, c, v = s.high, s.low, s.close, s.volume
    _same(f.rsi, talib.RSI(c, 14))
    m, sig, hist = talib.MACD(c, 12, 26, 9)
    _same(f.macd, m)
    _same(f.macd_signal, sig)
    _same(f.macd_hist, hist)
    u, mid, low = talib.BBANDS(c, 20, 2.0, 2.0)
    _same(f.bb_middle, mid)
    _same(f.bb_upper, u)
    _same(f.bb_lower, low)
    _same(f.atr, talib.ATR(h, lo, c, 14))
    _same(f.atr_pct, talib.ATR(h, lo, c, 14) / c * 100)
    for n, arr in ((20, f.ema20), (50, f.ema50), (200, f.ema200)):
        _same(arr, talib.EMA(c, n))
    _same(f.adx, talib.ADX(h, lo, c, 14))
    _same(f.plus_di, talib.PLUS_DI(h, lo, c, 14))
    _same(f.minus_di, talib.MINUS_DI(h, lo, c, 14))
    _same(f.obv, talib.OBV(c, v))
    ema20 = talib.EMA(c, 20)
    _same(f.ema20_slope[5:], (ema20[5:] / ema20[:-5] - 1) * 100)


def test_bollinger_derivatives_agree_with_pandas_ta(eth_1h: CandleSeries) -> None:
    s = eth_1h
    f = compute_indicators(s)
    bb = ta.bbands(pd.Series(s.close), length=20, std=2.0)
    _same(f.bb_pct_b, bb["BBP_20_2.0"].to_numpy())
    _same(f.bb_width, bb["BBB_20_2.0"].to_numpy())
    vol = pd.Series(s.volume)
    _same(f.volume_ratio, (vol / vol.rolling(20).mean()).to_numpy())
    _same(f.range_high, pd.Series(s.high).rolling(20).max().to_numpy())
    _same(f.range_low, pd.Series(s.low).rolling(20).min().to_numpy())
    _same(f.change_pct, (pd.Series(s.close).pct_change(24) * 100).to_numpy())


def test_percentile_rank_reference() -> None:
    rng = np.random.default_rng(3)
    x = rng.random(300)
    x[:10] = np.nan
    got = rolling_percentile_rank(x, 50)
    for i in range(300):
        w = x[max(0, i - 49): i + 1]
        want = np.nan if i < 49 or np.isnan(w).any() else float((w <= x[i]).mean())
        assert (np.isnan(got[i]) and np.isnan(want)) or got[i] == want


def test_causal_prefix_invariance(eth_1h: CandleSeries) -> None:
    full = compute_indicators(eth_1h)
    for cut in (30, 250, 4321):
        part = compute_indicators(eth_1h.slice(0, cut))
        np.testing.assert_array_equal(part.matrix, full.matrix[:, :cut])
        np.testing.assert_array_equal(part.regime, full.regime[:cut])


def test_zero_volume_flat_bars_do_not_divide_by_zero() -> None:
    n = 300
    c = np.full(n, 100.0)
    s = CandleSeries.from_arrays("FLAT", "15m", T0 + np.arange(n) * 900_000, c, c, c, c, np.zeros(n))
    with np.errstate(all="raise"):
        f = compute_indicators(s)
    assert np.isnan(f.bb_pct_b[-1]) and np.isnan(f.volume_ratio[-1]) and np.isnan(f.obv_slope[-1])
    assert f.atr[-1] == 0.0 and f.bb_width[-1] == 0.0
    assert np.isfinite(f.matrix[np.isfinite(f.matrix)]).all()


def test_real_zero_volume_bars(shared_data: Path) -> None:
    s = load_candles(shared_data / "BTCUSDT-futures-5m.csv.gz")
    zero = np.flatnonzero(s.volume == 0)
    assert len(zero) > 0
    f = compute_indicators(s.slice(0, int(zero[-1]) + 1))
    assert not np.isinf(f.matrix).any()


def test_regime_classification_on_trends() -> None:
    n = 400
    up = 100 * np.exp(np.linspace(0, 0.6, n))
    rng = np.random.default_rng(7)
    noise = 1 + 0.0005 * rng.standard_normal(n)
    c = up * noise
    o = np.r_[c[0], c[:-1]]
    s = CandleSeries.from_arrays("UP", "1h", T0 + np.arange(n) * 3_600_000, o, np.maximum(o, c) * 1.001,
                                 np.minimum(o, c) * 0.999, c, np.ones(n))
    f = compute_indicators(s)
    assert f.regime[-1] in (CODE[Regime.TRENDING_UP], CODE[Regime.VOLATILE])
    assert (f.regime[-100:] == CODE[Regime.TRENDING_UP]).mean() > 0.5
    d = CandleSeries.from_arrays("DN", "1h", s.open_ms, 1e4 / o, 1e4 / np.minimum(o, c) / 0.999,
                                 1e4 / np.maximum(o, c) / 1.001, 1e4 / c, np.ones(n))
    fd = compute_indicators(d)
    assert (fd.regime[-100:] == CODE[Regime.TRENDING_DOWN]).mean() > 0.5
    assert fd.regime[0] == CODE[Regime.UNKNOWN]
