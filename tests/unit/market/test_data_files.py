"""Validated loading, discovery and exact resampling of candle/funding files."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pytest

from quorum.market.data_files import (
    CandleSeries,
    DataFileError,
    discover,
    load_candles,
    load_funding,
    resample,
)

HEADER = "timestamp_ms,open,high,low,close,volume\n"
T0 = 1_735_603_200_000  # on every grid up to 1d
M5 = 300_000


def _write(tmp: Path, rows: list[str], name: str = "TESTUSDT-futures-5m.csv", gz: bool = False) -> Path:
    text = HEADER + "".join(r + "\n" for r in rows)
    p = tmp / (name + (".gz" if gz else ""))
    if gz:
        with gzip.open(p, "wt") as f:
            f.write(text)
    else:
        p.write_text(text)
    return p


def _row(i: int, c: float = 100.0, v: float = 1.0, t: int | None = None) -> str:
    ts = T0 + i * M5 if t is None else t
    return f"{ts},{c},{c + 1},{c - 1},{c},{v}"


def test_loads_gz_and_infers_symbol_and_timeframe(tmp_path: Path) -> None:
    p = _write(tmp_path, [_row(i, 100 + i) for i in range(5)], gz=True)
    s = load_candles(p)
    assert (s.symbol, s.timeframe, len(s)) == ("TESTUSDT", "5m", 5)
    assert s.open_ms.dtype == np.int64 and s.close[-1] == 104.0


@pytest.mark.parametrize(
    ("rows", "fragment"),
    [
        ([_row(0), "x,1,2,0.5,1,1"], "line 3: column timestamp_ms: not a number"),
        ([_row(0), _row(1), f"{T0 + 2 * M5},1,2,0.5,,1"], "line 4: column close"),
        ([_row(0), f"{T0 + M5},1,2,0.5,nan,1"], "line 3: column close"),
        ([_row(0), _row(1), _row(1)], "line 4: duplicate timestamp"),
        ([_row(0), _row(2), _row(1)], "line 4: timestamp"),
        ([_row(0), f"{T0 + M5},100,99,98,100,1"], "line 3: high/low do not bound"),
        ([_row(0), f"{T0 + M5 + 7},100,101,99,100,1"], "line 3: timestamp"),
        ([_row(0), f"{T0 + M5},100,101,99,100,-1"], "line 3: volume < 0"),
        ([_row(0), f"{T0 + M5},0,0,0,0,0"], "line 3: open <= 0"),
    ],
)
def test_bad_rows_name_file_and_line(tmp_path: Path, rows: list[str], fragment: str) -> None:
    p = _write(tmp_path, rows)
    with pytest.raises(DataFileError) as exc:
        load_candles(p)
    assert str(p) in str(exc.value)
    assert fragment in str(exc.value)


def test_bad_header_and_corrupt_gzip(tmp_path: Path) -> None:
    p = tmp_path / "TESTUSDT-futures-5m.csv"
    p.write_text("time,o,h,l,c,v\n1,1,1,1,1,1\n")
    with pytest.raises(DataFileError, match="line 1: header"):
        load_candles(p)
    bad = tmp_path / "TESTUSDT-futures-1h.csv.gz"
    bad.write_bytes(b"\x1f\x8b\x08\x00garbage-not-gzip")
    with pytest.raises(DataFileError, match=str(bad)):
        load_candles(bad)


def test_gaps_are_kept_not_filled(tmp_path: Path) -> None:
    p = _write(tmp_path, [_row(0), _row(1), _row(5), _row(6)])
    s = load_candles(p)
    assert len(s) == 4
    assert s.gaps() == [(T0 + M5, 3)]
    assert s.missing_before().tolist() == [0, 0, 3, 3]


def test_zero_volume_flat_bars_load(tmp_path: Path) -> None:
    p = _write(tmp_path, [_row(0), f"{T0 + M5},100,100,100,100,0"])
    assert load_candles(p).volume[-1] == 0.0


def test_funding_and_schedule(tmp_path: Path) -> None:
    h8 = 8 * 3600 * 1000
    p = tmp_path / "TESTUSDT-funding.csv.gz"
    with gzip.open(p, "wt") as f:
        f.write("timestamp_ms,funding_rate\n" + "".join(f"{T0 + i * h8},{0.0001 * (i + 1)}\n" for i in range(4)))
    fs = load_funding(p)
    assert fs.interval_ms == h8
    assert fs.last_rate(T0 - 1) is None
    assert fs.last_rate(T0 + h8) == pytest.approx(0.0002)
    assert fs.last_rate(T0 + h8 + 5) == pytest.approx(0.0002)
    # the next settlement comes from the schedule, also beyond the file's end
    assert fs.next_funding_ms(T0 + h8) == T0 + 2 * h8
    assert fs.next_funding_ms(T0 + 10 * h8 + 1) == T0 + 11 * h8
    dup = tmp_path / "DUPUSDT-funding.csv"
    dup.write_text(f"timestamp_ms,funding_rate\n{T0},0.1\n{T0},0.2\n")
    with pytest.raises(DataFileError, match="line 3: duplicate"):
        load_funding(dup)


def test_resample_exact_and_closed_only() -> None:
    n = 30  # 2.5 hours of 5m bars: the last half hour is incomplete
    rng = np.random.default_rng(1)
    c = 100 + rng.standard_normal(n).cumsum()
    o = np.r_[100.0, c[:-1]]
    h = np.maximum(o, c) + 0.5
    lo = np.minimum(o, c) - 0.5
    v = rng.random(n)
    s = CandleSeries.from_arrays("X", "5m", T0 + np.arange(n) * M5, o, h, lo, c, v)
    r = resample(s, "1h")
    assert len(r) == 2
    assert r.open_ms.tolist() == [T0, T0 + 12 * M5]
    assert r.open[1] == o[12] and r.close[1] == c[23]
    assert r.high[0] == h[:12].max() and r.low[0] == lo[:12].min()
    assert r.volume[0] == pytest.approx(v[:12].sum(), rel=1e-12)
    # a gap inside an hour removes that hour (never a partial bar)
    keep = np.r_[0:5, 6:n]
    g = CandleSeries.from_arrays("X", "5m", s.open_ms[keep], o[keep], h[keep], lo[keep], c[keep], v[keep])
    assert resample(g, "1h").open_ms.tolist() == [T0 + 12 * M5]


def test_resample_matches_exchange_files(shared_data: Path) -> None:
    """Resampled 5m equals Binance's own 1h bars (the files hold a handful of source
    differences in high/low/volume; open and close agree everywhere)."""
    for sym in ("BTCUSDT", "DOGEUSDT"):
        five = load_candles(shared_data / f"{sym}-futures-5m.csv.gz")
        real = load_candles(shared_data / f"{sym}-futures-1h.csv.gz")
        mine = resample(five, "1h")
        common, ia, ib = np.intersect1d(mine.open_ms, real.open_ms, return_indices=True)
        assert len(common) > 9000
        assert np.array_equal(mine.open[ia], real.open[ib])
        assert np.array_equal(mine.close[ia], real.close[ib])
        for f in ("high", "low", "volume"):
            diff = ~np.isclose(getattr(mine, f)[ia], getattr(real, f)[ib], rtol=1e-9)
            assert diff.sum() <= 5, (sym, f, int(diff.sum()))


def test_discover_shared_data(shared_data: Path) -> None:
    ds = discover(shared_data)
    assert sorted(ds) == ["BNBUSDT", "BTCUSDT", "DOGEUSDT", "ETHUSDT", "SOLUSDT", "XRPUSDT"]
    assert set(ds["BTCUSDT"].candles) == {"5m", "15m", "1h", "4h"}
    assert set(ds["BNBUSDT"].candles) == {"5m", "1h"}
    assert all(d.funding is not None for d in ds.values())
