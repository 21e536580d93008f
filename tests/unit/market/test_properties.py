"""Property tests: exact resampling and no lookahead on random series with gaps and flat bars."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from quorum.market.data_files import CandleSeries, resample
from quorum.market.snapshot import SnapshotBuilder

T0 = 1_735_603_200_000
M5 = 300_000


def _random_series(seed: int, n: int, gaps: int, flats: int) -> CandleSeries:
    rng = np.random.default_rng(seed)
    steps = np.ones(n, dtype=np.int64)
    steps[rng.integers(1, n, size=gaps)] += rng.integers(1, 20, size=gaps)
    ts = T0 + np.cumsum(steps) * M5
    c = 50 * np.exp(np.cumsum(rng.standard_normal(n) * 0.004))
    o = np.r_[c[0], c[:-1]]
    h = np.maximum(o, c) * (1 + rng.random(n) * 0.003)
    lo = np.minimum(o, c) * (1 - rng.random(n) * 0.003)
    v = rng.random(n) * 100
    idx = rng.integers(1, n, size=flats)
    o[idx] = h[idx] = lo[idx] = c[idx] = c[idx - 1]
    v[idx] = 0.0
    return CandleSeries.from_arrays("RNDUSDT", "5m", ts, o, h, lo, c, v)


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 10_000), gaps=st.integers(0, 6), flats=st.integers(0, 30))
def test_resample_matches_naive(seed: int, gaps: int, flats: int) -> None:
    s = _random_series(seed, 700, gaps, flats)
    r = resample(s, "1h")
    groups: dict[int, list[int]] = {}
    for i, t in enumerate(s.open_ms.tolist()):
        groups.setdefault(t // 3_600_000, []).append(i)
    full = [(k, ix) for k, ix in sorted(groups.items()) if len(ix) == 12]
    assert r.open_ms.tolist() == [k * 3_600_000 for k, _ in full]
    for j, (_, ix) in enumerate(full):
        assert r.open[j] == s.open[ix[0]] and r.close[j] == s.close[ix[-1]]
        assert r.high[j] == s.high[ix].max() and r.low[j] == s.low[ix].min()
        assert np.isclose(r.volume[j], s.volume[ix].sum(), rtol=1e-12)


@settings(max_examples=15, deadline=None)
@given(seed=st.integers(0, 10_000), gaps=st.integers(0, 4), flats=st.integers(0, 40),
       cut=st.floats(0.3, 1.0))
def test_no_lookahead_property(seed: int, gaps: int, flats: int, cut: float) -> None:
    s = _random_series(seed, 3000, gaps, flats)
    t = int(s.open_ms[int(cut * (len(s) - 1))]) // 900_000 * 900_000
    full = SnapshotBuilder("RNDUSDT", None, base=s).snapshot(t)
    part = SnapshotBuilder("RNDUSDT", None, base=s.truncate(t)).snapshot(t)
    assert part.hash == full.hash
    if gaps and any("gap:" in f for f in full.flags):
        assert all(v.close > 0 for v in full.timeframes)


def test_scan_cli_prints_snapshots(shared_data: object, monkeypatch: object) -> None:
    from quorum.cli import app

    res = CliRunner().invoke(app, ["scan", "--data-dir", str(shared_data), "--symbols", "BTCUSDT,XRPUSDT",
                                   "--at", "2025-10-10T21:30"])
    assert res.exit_code == 0, res.output
    assert res.output.count("# ") == 2 and "SYMBOL XRPUSDT" in res.output and "[4h]" in res.output
    assert "2025" not in res.output.split("\n", 1)[1]
    bad = CliRunner().invoke(app, ["scan", "--data-dir", str(shared_data), "--symbols", "NOPEUSDT"])
    assert bad.exit_code == 2 and "no candle files" in bad.output  # bad input
