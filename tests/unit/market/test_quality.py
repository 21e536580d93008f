"""The data-quality detector (`quorum.market.quality`): a 100× spike and a gap flag with file,
time and value; ordinary volatility (synthetic clusters, every real Binance file) does not; the
rule's numbers come from the settings; nothing in the series is changed."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest

from quorum.config import load_settings
from quorum.market.data_files import CandleSeries, load_candles
from quorum.market.quality import (
    DataQualityError,
    QualityRule,
    closed_by,
    detect,
    enforce,
    neighbourhood_median,
    summary_lines,
)
from tests.conftest import BUNDLED_DATA

T0 = 1_735_603_200_000  # 2024-12-31 00:00 UTC
M5 = 300_000


def _walk(seed: int, n: int = 5000, clusters: bool = True) -> CandleSeries:
    """A random walk whose volatility switches between calm and 6× wilder regimes (GARCH-like
    clusters, as crypto has), with wicks proportional to the current volatility."""
    rng = np.random.default_rng(seed)
    vol = np.full(n, 0.001)
    if clusters:
        for start in rng.integers(0, n - 300, size=8):
            vol[start:start + int(rng.integers(50, 300))] = 0.001 * rng.uniform(2, 6)
    ret = rng.standard_t(4, n) * vol / np.sqrt(2)  # fat tails
    c = 100 * np.exp(np.cumsum(ret))
    o = np.r_[100.0, c[:-1]]
    h = np.maximum(o, c) * (1 + rng.random(n) * vol)
    lo = np.minimum(o, c) * (1 - rng.random(n) * vol)
    return CandleSeries.from_arrays("RNDUSDT", "5m", T0 + np.arange(n) * M5, o, h, lo, c, rng.random(n) * 100,
                                    source="rnd.csv")


def _spiked(s: CandleSeries, i: int, factor: float) -> CandleSeries:
    c = s.close.copy()
    h = s.high.copy()
    lo = s.low.copy()
    c[i] *= factor
    h[i] = max(h[i], c[i])
    lo[i] = min(lo[i], c[i])
    return CandleSeries.from_arrays(s.symbol, s.timeframe, s.open_ms, s.open, h, lo, c, s.volume, source=s.source)


@pytest.mark.parametrize("seed", range(6))
def test_ordinary_volatility_clusters_do_not_flag(seed: int) -> None:
    assert detect(_walk(seed)) == []


def test_a_100x_spike_flags_with_file_time_and_value() -> None:
    s = _spiked(_walk(1), 2000, 100.0)
    before = [a.copy() for a in (s.open_ms, s.open, s.high, s.low, s.close, s.volume)]
    flags = detect(s, file="data/RNDUSDT-futures-5m.csv.gz")
    at = int(s.open_ms[2000])
    kinds = {(f.kind, f.time_ms) for f in flags}
    assert {("range_outlier", at), ("move_outlier", at), ("price_outlier", at)} <= kinds
    assert ("move_outlier", at + M5) in kinds  # the move back from the bad close
    assert len(flags) == 4
    price = next(f for f in flags if f.kind == "price_outlier")
    assert price.value == s.close[2000] and price.threshold == 5.0
    assert price.time == "2025-01-06T22:40Z" and price.symbol == "RNDUSDT" and price.timeframe == "5m"
    entry = price.as_dict()
    assert set(entry) >= {"file", "symbol", "timeframe", "kind", "time", "value", "detail"}
    assert entry["file"] == "data/RNDUSDT-futures-5m.csv.gz" and "100× the median close" in entry["detail"]
    assert price.line().startswith("data/RNDUSDT-futures-5m.csv.gz: 2025-01-06T22:40Z price_outlier ")
    after = [s.open_ms, s.open, s.high, s.low, s.close, s.volume]
    assert all(np.array_equal(a, b) for a, b in zip(before, after, strict=True))  # nothing filled or dropped


def test_a_spike_down_and_a_wick_alone_flag_too() -> None:
    down = detect(_spiked(_walk(2), 3000, 0.01))
    assert {f.kind for f in down if f.time_ms == T0 + 3000 * M5} == {"range_outlier", "move_outlier", "price_outlier"}
    s = _walk(3)
    h = s.high.copy()
    h[1234] = s.close[1234] * 100  # a bad high, close untouched: no move, but range and price
    wick = CandleSeries.from_arrays("RNDUSDT", "5m", s.open_ms, s.open, h, s.low, s.close, s.volume)
    assert [f.kind for f in detect(wick)] == ["range_outlier", "price_outlier"]


def test_a_gap_flags_with_its_first_missing_bar_and_count() -> None:
    s = _walk(4, n=600)
    keep = np.r_[0:300, 312:600]  # bars 300..311 missing
    g = CandleSeries.from_arrays("RNDUSDT", "5m", s.open_ms[keep], s.open[keep], s.high[keep], s.low[keep],
                                 s.close[keep], s.volume[keep], source="g.csv")
    flags = detect(g)
    assert [(f.kind, f.time_ms, f.value) for f in flags] == [("gap", T0 + 300 * M5, 12.0)]
    assert flags[0].time == "2025-01-01T01:00Z" and "12 5m bars missing" in flags[0].detail
    assert len(g) == 588  # kept as a gap


def test_flat_halt_bars_and_constant_series_do_not_flag() -> None:
    s = _walk(5)
    o, h, lo, c = (a.copy() for a in (s.open, s.high, s.low, s.close))
    o[1000:1030] = h[1000:1030] = lo[1000:1030] = c[1000:1030] = c[999]  # a halt: zero range, zero move
    flat = CandleSeries.from_arrays("RNDUSDT", "5m", s.open_ms, o, h, lo, c, s.volume)
    assert detect(flat) == []
    n = 50
    const = CandleSeries.from_arrays("X", "5m", T0 + np.arange(n) * M5, [100.0] * n, [101.0] * n, [99.0] * n,
                                     [100.5] * n, [10.0] * n)
    assert detect(const) == []


def test_the_rule_comes_from_the_settings() -> None:
    s = _spiked(_walk(6), 2500, 3.0)  # a 3× close: range and move flag, price only below factor 3
    default = QualityRule.from_settings(load_settings())
    assert default == QualityRule() and default.mode == "flag"
    assert "price_outlier" not in {f.kind for f in detect(s, default)}
    strict = QualityRule.from_settings(load_settings(data_outlier_price_factor=2.5, data_outlier_range_mult=1e6,
                                                     data_outlier_move_mult=1e6, data_quality="refuse"))
    assert [f.kind for f in detect(s, strict)] == ["price_outlier"] and strict.mode == "refuse"
    wide = QualityRule(window=500)
    assert {f.kind for f in detect(s, wide)} == {"range_outlier", "move_outlier"}


def test_refuse_names_the_first_flag_in_one_line() -> None:
    flags = detect(_spiked(_walk(7), 1500, 100.0), file="f.csv.gz")
    enforce(flags, QualityRule())  # flag mode: goes on
    enforce([], QualityRule(mode="refuse"))
    with pytest.raises(DataQualityError) as err:
        enforce(flags, QualityRule(mode="refuse"))
    text = str(err.value)
    assert "\n" not in text and "f.csv.gz: 2025-01-05T05:00Z range_outlier" in text and "3 more flags" in text


def test_closed_by_and_summary_lines() -> None:
    flags = detect(_spiked(_walk(8), 1500, 100.0))
    at = T0 + 1500 * M5
    assert closed_by(flags, at) == [] and len(closed_by(flags, at + M5)) == 3 and closed_by(flags, None) == flags
    lines = summary_lines(flags, 1, limit=2)
    assert lines[0].startswith("data quality: 4 flags in 1 candle file") and lines[-1] == "  … and 2 more"
    assert summary_lines([], 3) == ["data quality: 3 candle files checked, no gaps or outliers"]


def test_neighbourhood_median_ignores_a_run_of_bad_values() -> None:
    x = np.ones(1000)
    x[500:530] = 1e6  # 30 bad values: shorter than two blocks of 21
    assert np.array_equal(neighbourhood_median(x, 100), np.ones(1000))
    assert neighbourhood_median(np.arange(7.0), 100).shape == (7,)
    assert neighbourhood_median(np.zeros(0), 100).shape == (0,)


def test_every_real_binance_file_is_clean_and_fast(shared_data: Path) -> None:
    """The documented result: no flag in any candle file of ../shared/data (the 2025-10-10 cascade,
    the 2020-03-12 crash, the 2023-07-13 XRP ruling and the listing-day placeholder bars included)
    nor in the demo's slice in data/."""
    files = sorted(shared_data.glob("*-futures-*.csv.gz"))
    assert len(files) == 21
    files += sorted(BUNDLED_DATA.glob("*-futures-*.csv.gz"))
    slowest = 0.0
    for p in files:
        s = load_candles(p)
        t0 = time.perf_counter()
        flags = detect(s)
        slowest = max(slowest, time.perf_counter() - t0)
        assert flags == [], [f.line() for f in flags[:5]]
    assert slowest < 1.0  # ~20-40 ms per 120k-bar file on an idle core; generous for a shared CI machine
