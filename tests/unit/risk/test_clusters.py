"""Correlation clusters from recent returns (per UTC day, no lookahead) and the Kelly record."""

from __future__ import annotations

import math

import numpy as np
import pytest

from quorum.domain.clusters import (
    CLUSTER_MIN_RETURNS,
    DAY_MS,
    HOUR_MS,
    ClusterSchedule,
    pairwise_correlation,
)
from quorum.domain.exposure import ExposurePolicy, ExposureState, OpenExposure, exposure_check
from quorum.domain.models import Side
from quorum.domain.risk import TrackRecord
from quorum.domain.sizing import kelly_risk_fraction

DAY0 = 20_000 * DAY_MS  # a UTC midnight
HOURS = 40 * 24  # 40 days of hourly closes before DAY0 + 10 days after


def hourly(returns: np.ndarray, start_ms: int = DAY0 - 40 * DAY_MS) -> tuple[np.ndarray, np.ndarray]:
    """(close times, closes) of a series of hourly log returns, starting at 100."""
    closes = 100.0 * np.exp(np.concatenate([[0.0], np.cumsum(returns)]))
    times = start_ms + HOUR_MS * np.arange(len(closes), dtype=np.int64)
    return times, closes


def five_minute(returns: np.ndarray, start_ms: int = DAY0 - 40 * DAY_MS) -> tuple[np.ndarray, np.ndarray]:
    """The same path as 5m closes (the hour's close is its last 5m close; in between, noise)."""
    t, c = hourly(returns, start_ms)
    t5 = start_ms + 300_000 * np.arange(12 * (len(t) - 1) + 1, dtype=np.int64)
    c5 = np.repeat(c[1:], 12) * (1 + 0.01 * np.sin(np.arange(12 * (len(t) - 1))))
    c5[11::12] = c[1:]  # the close at each whole hour is exact
    return t5, np.concatenate([[c[0]], c5])[: len(t5)]


def series(seed: int = 1) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    n = 50 * 24
    market = rng.normal(scale=0.01, size=n)
    return {
        "BTCUSDT": market + rng.normal(scale=0.002, size=n),
        "ETHUSDT": market + rng.normal(scale=0.003, size=n),
        "DOGEUSDT": rng.normal(scale=0.01, size=n),  # independent
    }


def test_correlated_pair_is_a_cluster_uncorrelated_is_not() -> None:
    sched = ClusterSchedule({s: hourly(r) for s, r in series().items()}, 0.8)
    assert sched.at(DAY0 + 5 * HOUR_MS) == (frozenset({"BTCUSDT", "ETHUSDT"}),)
    assert ClusterSchedule({s: hourly(r) for s, r in series().items()}, 0.995).at(DAY0) == ()


def test_transitive_merge_and_threshold_edges() -> None:
    rng = np.random.default_rng(3)
    n = 50 * 24
    a = rng.normal(size=n)
    b = a + rng.normal(scale=0.6, size=n)  # corr(a, b) ≈ 0.86
    c = b + rng.normal(scale=0.6, size=n)  # corr(b, c) ≈ 0.9, corr(a, c) ≈ 0.75
    sched = ClusterSchedule({"A": hourly(a * 0.01), "B": hourly(b * 0.01), "C": hourly(c * 0.01)}, 0.8)
    window = sched.day_returns(DAY0)
    corr = pairwise_correlation(window, CLUSTER_MIN_RETURNS)
    assert corr[0, 2] < 0.8 <= min(corr[0, 1], corr[1, 2])  # A and C only linked through B
    assert sched.at(DAY0) == (frozenset({"A", "B", "C"}),)


def test_pairwise_correlation_equals_numpy_and_ignores_gaps_pairwise() -> None:
    rng = np.random.default_rng(5)
    x = rng.normal(size=(3, 500))
    x[1] += x[0]
    want = np.asarray(np.corrcoef(x))
    got = pairwise_correlation(x, 3)
    assert np.allclose(got, want, atol=1e-12)
    gaps = x.copy()
    gaps[2, 100:200] = np.nan  # symbol 2 lacks data there: only its own pairs lose those columns
    got = pairwise_correlation(gaps, 3)
    assert got[0, 1] == pytest.approx(want[0, 1], abs=1e-12)
    kept = np.delete(x[[0, 2]], range(100, 200), axis=1)
    assert got[0, 2] == pytest.approx(float(np.asarray(np.corrcoef(kept))[0, 1]), abs=1e-12)
    flat = np.vstack([x[0], np.full(500, 0.01)])  # constant returns: no correlation, never linked
    assert math.isnan(pairwise_correlation(flat, 3)[0, 1])


def test_window_is_the_last_30_days_before_the_day_only() -> None:
    """A day's clusters read closes up to its first instant (00:00 UTC) and nothing later: the
    same day with everything after that instant replaced gives the same clusters."""
    base = series()
    sched = ClusterSchedule({s: hourly(r) for s, r in base.items()}, 0.8)
    cut = 40 * 24  # return index ending at DAY0
    altered = dict(base)
    altered["ETHUSDT"] = base["ETHUSDT"].copy()
    altered["ETHUSDT"][cut:] = -base["BTCUSDT"][cut:]  # from DAY0 on, ETH moves against BTC
    changed = ClusterSchedule({s: hourly(r) for s, r in altered.items()}, 0.8)
    for t in (DAY0, DAY0 + 23 * HOUR_MS + 59 * 60_000):
        assert changed.at(t) == sched.at(t) == (frozenset({"BTCUSDT", "ETHUSDT"}),)
    assert np.array_equal(changed.day_returns(DAY0), sched.day_returns(DAY0), equal_nan=True)
    # ... and 30 days later the window is all after the change: no cluster any more
    assert changed.at(DAY0 + 30 * DAY_MS) == ()
    # the window holds exactly the 720 hourly returns of [DAY0 − 30 d, DAY0]
    w = sched.day_returns(DAY0)
    assert w.shape == (3, 720)
    assert np.allclose(w[sched.symbols.index("BTCUSDT")], base["BTCUSDT"][cut - 720:cut])


def test_five_minute_closes_give_the_hourly_clusters() -> None:
    """The backtester feeds 5m execution closes, the engine 1h bars: same returns, same clusters."""
    base = series(9)
    h = ClusterSchedule({s: hourly(r) for s, r in base.items()}, 0.8)
    m = ClusterSchedule({s: five_minute(r) for s, r in base.items()}, 0.8, step_ms=HOUR_MS)
    for d in range(0, 10):
        t = DAY0 + d * DAY_MS
        assert np.allclose(h.day_returns(t), m.day_returns(t), equal_nan=True, atol=1e-12)
        assert h.at(t) == m.at(t)


def test_too_little_history_links_nothing() -> None:
    base = series()
    start = DAY0 - (CLUSTER_MIN_RETURNS - 1) * HOUR_MS  # 47 returns before DAY0
    short = {s: hourly(r[: CLUSTER_MIN_RETURNS + 100], start) for s, r in base.items()}
    assert ClusterSchedule(short, 0.5).at(DAY0) == ()
    assert ClusterSchedule(short, 0.5).at(DAY0 + DAY_MS) == (frozenset({"BTCUSDT", "ETHUSDT"}),)


def test_cluster_rejection_names_the_cluster() -> None:
    pol = ExposurePolicy(max_positions_per_cluster=1, max_concurrent_positions=5, capital_per_position=10)
    state = ExposureState(open_positions=(OpenExposure("BTCUSDT", Side.LONG, 100.0),),
                          clusters=(frozenset({"ETHUSDT", "BTCUSDT"}),))
    reasons, _ = exposure_check("ETHUSDT", Side.LONG, 1000.0, DAY0, state, pol)
    assert reasons == ("correlation_cluster_full:BTCUSDT+ETHUSDT",)
    assert exposure_check("ETHUSDT", Side.SHORT, 1000.0, DAY0, state, pol)[0] == ()  # other direction
    assert exposure_check("DOGEUSDT", Side.LONG, 1000.0, DAY0, state, pol)[0] == ()  # outside the cluster


def test_track_record_from_totals() -> None:
    r = TrackRecord.from_totals(10, 4, 40.0, 30.0)  # avg win 10, avg loss 5
    assert (r.trades, r.win_rate, r.payoff) == (10, 0.4, 2.0)
    assert kelly_risk_fraction(r.win_rate, r.payoff, 0.5) == pytest.approx(0.5 * (0.4 - 0.6 / 2.0))
    no_win = TrackRecord.from_totals(30, 0, 0.0, 12.0)
    assert no_win.win_rate == 0.0 and (kelly_risk_fraction(no_win.win_rate, no_win.payoff, 0.5) or 0) < 0
    no_loss = TrackRecord.from_totals(30, 30, 50.0, 0.0)
    assert no_loss.payoff == math.inf and kelly_risk_fraction(no_loss.win_rate, no_loss.payoff, 0.25) == 0.25
    assert TrackRecord.from_totals(0, 0, 0.0, 0.0).trades == 0
