"""Correlation clusters of symbols from recent returns (pure).

Symbols whose hourly log returns over the last `CLUSTER_LOOKBACK_DAYS` (30) days correlate at
≥ CORRELATION_THRESHOLD are linked, transitively; the exposure rules then allow at most
MAX_POSITIONS_PER_CLUSTER same-direction positions per cluster.

The clusters of a UTC day D are computed once, from the closes at the whole hours in
[D − 30 days, D] (720 returns, every one of them known at D's first instant), and serve every
decision of that day — so a decision never sees a price from after its own time. A pair needs
`CLUSTER_MIN_RETURNS` (48) returns where both symbols have a close to be linked; a missing close
removes the two returns around it for that symbol only.

The backtester (`ClusterSchedule` over the whole run) and the engine (one over the day's window,
`quorum.engine.clusters`) compute the same window with the same arithmetic.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import numpy as np
import numpy.typing as npt

HOUR_MS = 3_600_000
DAY_MS = 86_400_000
CLUSTER_LOOKBACK_DAYS = 30
CLUSTER_MIN_RETURNS = 48

Clusters = tuple[frozenset[str], ...]
Closes = tuple[npt.NDArray[np.int64], npt.NDArray[np.float64]]  # (close times ms, close prices)


def union_clusters(symbols: Iterable[str], links: Iterable[tuple[str, str]]) -> Clusters:
    """Merge linked pairs transitively (union-find); clusters of ≥ 2 symbols, sorted by their
    first symbol."""
    parent = {s: s for s in symbols}

    def find(x: str) -> str:
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    for a, b in links:
        ra, rb = find(a), find(b)
        if ra != rb:
            parent[max(ra, rb)] = min(ra, rb)
    groups: dict[str, set[str]] = {}
    for s in sorted(parent):
        groups.setdefault(find(s), set()).add(s)
    return tuple(frozenset(g) for _, g in sorted(groups.items()) if len(g) > 1)


def pairwise_correlation(returns: npt.NDArray[np.float64], min_count: int) -> npt.NDArray[np.float64]:
    """Correlation matrix of the rows of `returns` (symbols × times), each pair over the columns
    where both are finite (pairwise-complete); NaN where fewer than `min_count` such columns or a
    zero variance."""
    ok = np.isfinite(returns)
    m = ok.astype(np.float64)
    x = np.where(ok, returns, 0.0)
    n = m @ m.T
    with np.errstate(invalid="ignore", divide="ignore"):
        sx = (x @ m.T) / n  # [a, b]: mean of a over the columns both hold
        sxx = ((x * x) @ m.T) / n
        sxy = (x @ x.T) / n
        cov = sxy - sx * sx.T
        var_a = sxx - sx * sx
        var_b = var_a.T
        corr = cov / np.sqrt(var_a * var_b)
    # a variance that is zero but for rounding (a constant series) has no correlation
    flat = ~(var_a > 1e-10 * sxx)
    bad = (n < min_count) | flat | flat.T | ~np.isfinite(corr)
    corr[bad] = np.nan
    return np.asarray(corr, dtype=np.float64)


def clusters_of(symbols: list[str], returns: npt.NDArray[np.float64], threshold: float,
                min_count: int = CLUSTER_MIN_RETURNS) -> Clusters:
    """Clusters of `symbols` (rows of `returns`) linked at correlation ≥ threshold."""
    if len(symbols) < 2:
        return ()
    corr = pairwise_correlation(returns, min_count)
    ia, ib = np.nonzero(np.triu(corr >= threshold, k=1))
    return union_clusters(symbols, [(symbols[a], symbols[b]) for a, b in zip(ia.tolist(), ib.tolist(), strict=True)])


def correlation_clusters(returns: Mapping[str, npt.NDArray[np.float64]], threshold: float,
                         min_count: int = 3) -> Clusters:
    """Group symbols whose return series (aligned at their ends; NaNs dropped pairwise) correlate
    at ≥ threshold; linked pairs are merged transitively. Singletons are omitted."""
    symbols = sorted(returns)
    if len(symbols) < 2:
        return ()
    n = max(len(returns[s]) for s in symbols)
    mat = np.full((len(symbols), n), np.nan)
    for i, s in enumerate(symbols):
        r = np.asarray(returns[s], dtype=np.float64)
        if len(r):
            mat[i, n - len(r):] = r
    return clusters_of(symbols, mat, threshold, min_count)


def hour_grid_returns(closes: Mapping[str, Closes], start_ms: int, end_ms: int,
                      step_ms: int = HOUR_MS) -> tuple[list[str], int, npt.NDArray[np.float64]]:
    """(symbols, first grid time, returns): the log returns between consecutive closes on the grid
    of whole `step_ms` from start_ms to end_ms (both rounded onto the grid); return j ends at
    first + (j + 1) × step. Closes off the grid are ignored; a missing close makes NaNs."""
    symbols = sorted(closes)
    g0 = -(-start_ms // step_ms) * step_ms
    g1 = end_ms // step_ms * step_ms
    n = max(0, (g1 - g0) // step_ms + 1)
    logc = np.full((len(symbols), n), np.nan)
    for i, s in enumerate(symbols):
        t, c = closes[s]
        t = np.asarray(t, dtype=np.int64)
        sel = (t % step_ms == 0) & (t >= g0) & (t <= g1)
        c_sel = np.asarray(c, dtype=np.float64)[sel]
        good = np.isfinite(c_sel) & (c_sel > 0)
        logc[i, ((t[sel] - g0) // step_ms)[good]] = np.log(c_sel[good])
    rets = np.diff(logc, axis=1) if n > 1 else np.zeros((len(symbols), 0))
    return symbols, g0, rets


class ClusterSchedule:
    """The clusters of each UTC day (see the module docstring), computed on first use per day.

    `closes` holds each symbol's close times and prices (any timeframe dividing `step_ms`, e.g.
    the 5m execution series or 1h bars); only closes on the hour grid are used."""

    def __init__(self, closes: Mapping[str, Closes], threshold: float, *, step_ms: int = HOUR_MS,
                 lookback_days: int = CLUSTER_LOOKBACK_DAYS, min_count: int = CLUSTER_MIN_RETURNS,
                 span: tuple[int, int] | None = None) -> None:
        """`span` (start, end ms) fixes the grid; by default it covers every close given."""
        self.threshold = threshold
        self.step_ms = step_ms
        self.window = lookback_days * DAY_MS // step_ms
        self.min_count = min_count
        firsts = [int(t[0]) for t, _ in closes.values() if len(t)]
        lasts = [int(t[-1]) for t, _ in closes.values() if len(t)]
        if span is None and firsts:
            span = (min(firsts), max(lasts))
        if span is not None:
            self.symbols, self.g0, self.returns = hour_grid_returns(closes, span[0], span[1], step_ms)
        else:
            self.symbols, self.g0, self.returns = sorted(closes), 0, np.zeros((len(closes), 0))
        self._days: dict[int, Clusters] = {}

    def day_returns(self, day_ms: int) -> npt.NDArray[np.float64]:
        """The returns of the window that ends at `day_ms` (symbols × window, NaN-padded)."""
        end = (day_ms - self.g0) // self.step_ms  # returns ending at or before day_ms
        start = end - self.window
        if 0 <= start and end <= self.returns.shape[1]:
            return self.returns[:, start:end]
        out = np.full((len(self.symbols), self.window), np.nan)
        a, b = max(start, 0), min(end, self.returns.shape[1])
        if b > a:
            out[:, a - start:b - start] = self.returns[:, a:b]
        return out

    def at(self, time_ms: int) -> Clusters:
        """The clusters in force at `time_ms` (those of its UTC day)."""
        day = time_ms // DAY_MS * DAY_MS
        got = self._days.get(day)
        if got is None:
            got = self._days[day] = clusters_of(self.symbols, self.day_returns(day), self.threshold, self.min_count)
        return got


def clusters_can_bind(open_positions: int, max_per_cluster: int) -> bool:
    """A cluster can only be full with at least MAX_POSITIONS_PER_CLUSTER positions open: below
    that the engine and the backtester skip computing the clusters (same verdicts)."""
    return open_positions >= max_per_cluster


def cluster_name(cluster: Iterable[str]) -> str:
    """A cluster as it appears in a rejection reason: its symbols, sorted, joined by '+'."""
    return "+".join(sorted(cluster))
