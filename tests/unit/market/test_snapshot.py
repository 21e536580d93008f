"""Snapshots: no lookahead (hash equality on truncated data), flags, rendering, breadth."""

from __future__ import annotations

import json
import re
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from quorum.domain.models import Regime, Snapshot
from quorum.market.data_files import CandleSeries, FundingSeries, discover, load_candles, load_funding
from quorum.market.render import render_prompt_json, render_prompt_text, to_prompt_dict
from quorum.market.snapshot import SnapshotBuilder, build_snapshots, market_breadth

T0 = 1_735_603_200_000
M5 = 300_000


@pytest.fixture(scope="module")
def builders(shared_data: Path) -> dict[str, SnapshotBuilder]:
    return {s: SnapshotBuilder.from_dataset(ds) for s, ds in discover(shared_data).items()}


def _truncated_builder(b: SnapshotBuilder, t: int) -> SnapshotBuilder:
    assert b.base is not None and b.funding is not None
    f = b.funding
    k = int(np.searchsorted(f.time_ms, t, side="right"))
    funding = FundingSeries(f.symbol, f.time_ms[:k].copy(), f.rate[:k].copy(), f.interval_ms)
    base = b.base.truncate(t)
    base = CandleSeries(base.symbol, base.timeframe, *(a.copy() for a in (base.open_ms, base.open, base.high,
                        base.low, base.close, base.volume)))
    return SnapshotBuilder(b.symbol, None, b.timeframes, base=base, funding=funding)


def test_lookahead_truncated_equals_full(builders: dict[str, SnapshotBuilder]) -> None:
    """For random decision times t, a snapshot from data cut at t is identical to the one
    from the full file at t (same hash, same dict)."""
    rng = np.random.default_rng(20251010)
    checked = 0
    for sym, b in builders.items():
        assert b.base is not None
        lo_t = int(b.base.open_ms[0]) + 60 * 86_400_000
        hi_t = int(b.base.open_ms[-1]) - 86_400_000
        for _ in range(2):
            t = int(rng.integers(lo_t, hi_t)) // 900_000 * 900_000 + int(rng.choice([0, 300_000]))
            full = b.snapshot(t)
            cut = _truncated_builder(b, t).snapshot(t)
            assert cut.hash == full.hash, sym
            assert cut == full
            checked += 1
            # and the full-file snapshot changes once later bars are closed (the test can fail)
            assert b.snapshot(t + 3_600_000).hash != full.hash
    assert checked == 12


def test_lookahead_with_native_timeframe_files(shared_data: Path) -> None:
    """Without a base series (native 1h/4h files) the same invariance holds."""
    series = {tf: load_candles(shared_data / f"SOLUSDT-futures-{tf}.csv.gz") for tf in ("1h", "4h")}
    full = SnapshotBuilder("SOLUSDT", series, ("1h", "4h"))
    for t in (1_750_000_000_000 // 3_600_000 * 3_600_000, 1_760_131_200_000):
        cut = SnapshotBuilder("SOLUSDT", {tf: s.truncate(t) for tf, s in series.items()}, ("1h", "4h"))
        assert cut.snapshot(t).hash == full.snapshot(t).hash


def test_values_come_from_closed_bars_only(builders: dict[str, SnapshotBuilder]) -> None:
    b = builders["BTCUSDT"]
    assert b.base is not None
    t = int(b.base.open_ms[20_000]) // 14_400_000 * 14_400_000 + 600_000  # 10 min into a 4h bar
    s = b.snapshot(t)
    v4 = s.view("4h")
    v15 = s.view("15m")
    assert v4 is not None and v15 is not None
    last4 = b.series["4h"].open_ms[v4.bars - 1]
    assert last4 + 14_400_000 <= t < last4 + 2 * 14_400_000
    i = b.base.closed_count(t)
    assert s.price == b.base.close[i - 1]
    assert int(b.base.open_ms[i - 1]) + M5 == t
    assert v15.close == b.base.close[b.base.closed_count(t // 900_000 * 900_000) - 1]


def test_short_history_flags_and_no_crash() -> None:
    n = 60  # 5 hours of 5m bars: 4h EMA200 impossible
    c = 100 + np.sin(np.arange(n) / 3)
    o = np.r_[c[0], c[:-1]]
    base = CandleSeries.from_arrays("NEWUSDT", "5m", T0 + np.arange(n) * M5, o, np.maximum(o, c) + 0.1,
                                    np.minimum(o, c) - 0.1, c, np.ones(n))
    b = SnapshotBuilder("NEWUSDT", None, base=base)
    s = b.snapshot(T0 + n * M5)
    v4 = s.view("4h")
    assert v4 is not None and v4.ema200 is None and v4.rsi is None and v4.bars == 1
    assert any(f.startswith("short_history:4h:") and "ema200" in f for f in s.flags)
    assert s.regime is Regime.UNKNOWN
    early = b.snapshot(T0 + 10 * M5)
    assert "no_data:1h" in early.flags and "no_data:4h" in early.flags
    assert [v.timeframe for v in early.timeframes] == ["15m"]
    render_prompt_text(early)  # renders with missing values
    assert b.snapshot(T0).flags[-1] == "no_price"


def test_gap_and_stale_flags() -> None:
    n = 400
    keep = np.r_[0:300, 306:n]  # 6 missing 5m bars = 2 missing 15m bars
    c = 100 + np.cumsum(np.sin(np.arange(n)))[keep]
    o = np.r_[c[0], c[:-1]]
    base = CandleSeries.from_arrays("GAPUSDT", "5m", T0 + keep * M5, o, np.maximum(o, c) + 0.1,
                                    np.minimum(o, c) - 0.1, c, np.ones(len(keep)))
    b = SnapshotBuilder("GAPUSDT", None, ("15m", "1h"), base=base)
    end = T0 + n * M5
    s = b.snapshot(end)
    assert "gap:15m:2" in s.flags and "gap:1h:1" in s.flags
    late = b.snapshot(end + 3_600_000)
    assert "stale:15m:4" in late.flags
    # the gap is not forward-filled: the 15m series simply lacks those bars
    assert len(b.series["15m"]) == n // 3 - 2


def test_zero_volume_flag(builders: dict[str, SnapshotBuilder]) -> None:
    n = 600
    c = 100 + np.sin(np.arange(n) / 7)
    c[-3:] = c[-4]  # a halted 15m bar: flat, no volume
    o = np.r_[c[0], c[:-1]]
    v = np.ones(n)
    v[-3:] = 0.0
    hi, lo = np.maximum(o, c) + 0.1, np.minimum(o, c) - 0.1
    hi[-3:] = lo[-3:] = c[-3:]
    base = CandleSeries.from_arrays("HALTUSDT", "5m", T0 + np.arange(n) * M5, o, hi, lo, c, v)
    s = SnapshotBuilder("HALTUSDT", None, ("15m", "1h"), base=base).snapshot(T0 + n * M5)
    assert "zero_volume:15m" in s.flags
    v15 = s.view("15m")
    assert v15 is not None and v15.volume_ratio == 0.0 and v15.bb_pct_b is not None
    # the real halts in the shared files snapshot without errors or infinities
    eth = builders["ETHUSDT"]
    assert eth.base is not None
    i = int(np.flatnonzero(eth.base.volume == 0)[0])
    snap = eth.snapshot(int(eth.base.open_ms[i]) + M5)
    assert all(np.isfinite(x) for view in snap.timeframes for x in (view.close, view.atr or 0.0, view.rsi or 0.0))


def test_funding_in_snapshot(builders: dict[str, SnapshotBuilder]) -> None:
    b = builders["BTCUSDT"]
    t = 1_750_000_000_000 // 900_000 * 900_000
    s = b.snapshot(t)
    assert b.funding is not None
    assert s.funding_rate == b.funding.last_rate(t)
    assert s.next_funding_ms is not None and 0 < s.next_funding_ms - t <= 8 * 3_600_000
    given = b.snapshot(t, funding_rate=0.0005, next_funding_ms=t + 60_000, open_interest=5.0, book_imbalance=0.1)
    assert (given.funding_rate, given.open_interest, given.book_imbalance) == (0.0005, 5.0, 0.1)


def test_render_is_date_free_ordered_and_deterministic(builders: dict[str, SnapshotBuilder]) -> None:
    b = builders["XRPUSDT"]
    t = 1_760_131_200_000  # 2025-10-10 21:20 UTC, inside the cascade
    snaps = build_snapshots(builders.values(), t)
    s = snaps["XRPUSDT"]
    text = render_prompt_text(s)
    js = render_prompt_json(s)
    assert text == render_prompt_text(snaps["XRPUSDT"]) and js == render_prompt_json(s)
    for forbidden in ("2025", "10-10", str(t), str(t // 1000), "UTC"):
        assert forbidden not in text and forbidden not in js
    assert re.search(r"closes \(oldest -> newest\)", text)
    d = to_prompt_dict(s)
    v15 = s.view("15m")
    assert v15 is not None
    assert d["timeframes"][0]["recent_closes_oldest_to_newest"][-1] == pytest.approx(v15.close, rel=1e-5)
    assert [v["timeframe"] for v in d["timeframes"]] == ["15m", "1h", "4h"]
    assert d["next_funding_in_minutes"] == (s.next_funding_ms - t) // 60_000  # type: ignore[operator]
    assert json.loads(js) == json.loads(json.dumps(d, sort_keys=True))
    assert "market_breadth" in d and d["market_breadth"]["symbols"] == len(builders)
    assert b.snapshot(t).hash != s.hash  # breadth is part of the content


def test_market_breadth() -> None:
    def snap(sym: str, close: float, ema50: float | None, chg: float | None) -> Snapshot:
        from quorum.domain.models import TimeframeView
        from quorum.market.indicators import VIEW_FIELDS
        kw: dict[str, object] = dict.fromkeys(VIEW_FIELDS)
        kw.update(close=close, ema50=ema50, change_pct=chg)
        v = TimeframeView("1h", 300, regime=Regime.RANGING, **kw)  # type: ignore[arg-type]
        return Snapshot(sym, T0, close, (v,), Regime.RANGING)

    br = market_breadth([snap("A", 10, 9, 2.0), snap("B", 10, 11, -4.0), snap("C", 10, None, None)], "1h")
    assert br.symbols == 3 and br.share_above_ema50 == 0.5 and br.avg_change_24h_pct == -1.0
    assert market_breadth([]).share_above_ema50 == 0.0


def test_snapshot_is_frozen_and_hash_stable(builders: dict[str, SnapshotBuilder]) -> None:
    s = builders["BNBUSDT"].snapshot(1_750_000_000_000 // 900_000 * 900_000)
    assert s.hash == replace(s).hash
    with pytest.raises(AttributeError):
        s.price = 1.0  # type: ignore[misc]


def test_load_funding_of_builder(shared_data: Path) -> None:
    f = load_funding(shared_data / "BTCUSDT-funding.csv.gz")
    assert f.interval_ms == 8 * 3_600_000 and len(f) > 7000


def test_sampled_equals_snapshot_views(builders: dict[str, SnapshotBuilder]) -> None:
    """The vectorised backtest path gives exactly the values the snapshots show."""
    b = builders["SOLUSDT"]
    assert b.base is not None
    first = int(b.base.open_ms[0])
    times = np.array([first + 600_000, first + 50 * 86_400_000, first + 123 * 86_400_000 + 4_500_000,
                      first + 300 * 86_400_000 + 900_000], dtype=np.int64)
    from quorum.market.indicators import VIEW_FIELDS
    from quorum.market.regime import CODE

    for tf in b.timeframes:
        arrays = b.sampled(tf, times)
        for k, t in enumerate(times.tolist()):
            view = b.snapshot(t).view(tf)
            if view is None:
                assert np.isnan(arrays["close"][k]) and arrays["regime"][k] == -1
                continue
            for name in VIEW_FIELDS:
                got, want = arrays[name][k], getattr(view, name)
                assert (want is None and np.isnan(got)) or got == want, (tf, name)
            assert arrays["regime"][k] == CODE[view.regime]


def test_cascade_is_volatile(builders: dict[str, SnapshotBuilder]) -> None:
    """2025-10-10 21:30 UTC, just after the liquidation cascade: every symbol reads volatile."""
    t = 1_760_131_800_000
    for sym in ("XRPUSDT", "DOGEUSDT", "BTCUSDT"):
        s = builders[sym].snapshot(t)
        v15 = s.view("15m")
        assert v15 is not None and v15.regime is Regime.VOLATILE and v15.atr_pct_percentile == 1.0
        assert v15.change_pct is not None and v15.change_pct < -5
        assert s.regime is Regime.VOLATILE
    before = builders["XRPUSDT"].snapshot(t - 86_400_000)
    assert before.regime is not Regime.VOLATILE  # the day before was not
