"""Mark-to-market equity history: drawdown from it and the hourly compaction (pure, no I/O).

A row of the history is a `Segment`: one snapshot (low = high = equity, inner drawdown 0), or
an hour compacted into one row (its last equity, its lowest and highest equity, and the largest
peak-to-trough fall inside it). Drawdown from segments is exact — the same figure as from the
rows they replace: the worst fall is either inside one segment (its `inner_dd_pct`) or from
the highest equity of an earlier segment to the lowest of a later one (a fall from x to y,
(x − y) / x, grows with x and shrinks with y). So compaction never understates drawdown.

    dd = drawdown(segments, start_peak=initial_capital)   # dd.max_pct, dd.current_pct, dd.peak
    hour = merge(segments_of_one_hour)
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

HOUR_MS = 3_600_000
FULL_RESOLUTION_MS = 7 * 86_400_000  # rows younger than this are kept as written


@dataclass(frozen=True, slots=True)
class Segment:
    """One row of the equity history (see the module docstring)."""

    at_ms: int
    equity: float
    low: float
    high: float
    inner_dd_pct: float = 0.0
    samples: int = 1

    @classmethod
    def point(cls, at_ms: int, equity: float) -> Segment:
        return cls(at_ms, equity, equity, equity)


@dataclass(frozen=True, slots=True)
class Drawdown:
    """`max_pct`: the largest fall from a peak (percent of that peak); `current_pct`: from the
    peak to the last equity; `peak`: the highest equity (or the start peak); `equity`: the last
    equity (None without any row); `rows`: how many rows it was measured on."""

    max_pct: float
    current_pct: float
    peak: float | None
    equity: float | None
    rows: int = 0

    def to_dict(self) -> dict[str, float | int | None]:
        return {"max_pct": self.max_pct, "current_pct": self.current_pct, "peak": self.peak,
                "equity": self.equity, "rows": self.rows}


def _fall(peak: float, low: float) -> float:
    return (peak - low) / peak * 100.0 if peak > 0 and low < peak else 0.0


def drawdown(segments: Iterable[Segment], start_peak: float | None = None) -> Drawdown:
    """Drawdown of the history in time order; `start_peak` (e.g. the initial capital) counts as a
    peak before the first row. Non-finite values are skipped."""
    peak = start_peak if start_peak is not None and math.isfinite(start_peak) else -math.inf
    worst = 0.0
    last: float | None = None
    n = 0
    for s in segments:
        if not (math.isfinite(s.low) and math.isfinite(s.high) and math.isfinite(s.equity)):
            continue
        n += 1
        worst = max(worst, s.inner_dd_pct, _fall(peak, s.low))
        peak = max(peak, s.high)
        last = s.equity
    top = peak if math.isfinite(peak) else None
    current = _fall(top, last) if top is not None and last is not None else 0.0
    return Drawdown(worst, current, top, last, n)


def merge(segments: Sequence[Segment]) -> Segment:
    """The segments of one stretch (time order) as one: the last equity and time, the lowest low,
    the highest high, and the worst fall inside the stretch."""
    if not segments:
        raise ValueError("merge needs at least one segment")
    inner = drawdown(segments).max_pct
    return Segment(segments[-1].at_ms, segments[-1].equity, min(s.low for s in segments),
                   max(s.high for s in segments), inner, sum(s.samples for s in segments))


def hour_of(at_ms: int) -> int:
    return at_ms // HOUR_MS * HOUR_MS



def drawdown_series(segments: Iterable[Segment], start_peak: float | None = None) -> list[tuple[int, float]]:
    """(time, −drawdown %) per row for a chart: each row's worst point (its low, or its inner fall)
    against the peak before it, so a compacted hour shows its dip."""
    peak = start_peak if start_peak is not None and math.isfinite(start_peak) else -math.inf
    out = []
    for s in segments:
        if math.isfinite(s.low) and math.isfinite(s.high):
            out.append((s.at_ms, -max(s.inner_dd_pct, _fall(peak, s.low))))
            peak = max(peak, s.high)
    return out
