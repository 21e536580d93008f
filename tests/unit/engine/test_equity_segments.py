"""Drawdown on a compacted equity history equals drawdown on the points it replaced, for any
grouping of the points into stretches (the retention's promise)."""

from __future__ import annotations

import random

from quorum.domain.equity import Segment, drawdown, merge
from quorum.domain.statistics import max_drawdown_pct


def test_merged_stretches_give_the_drawdown_of_their_points() -> None:
    rng = random.Random(3)
    for _ in range(300):
        values = [1000.0]
        for _ in range(rng.randint(1, 60)):
            values.append(max(1.0, values[-1] * (1 + rng.gauss(0, 0.03))))
        points = [Segment.point(i, v) for i, v in enumerate(values)]
        cuts = sorted(rng.sample(range(1, len(points)), k=min(len(points) - 1, rng.randint(0, 8))))
        stretches = [points[a:b] for a, b in zip([0, *cuts], [*cuts, len(points)], strict=True)]
        merged = [merge(s) for s in stretches]
        start = rng.choice([None, 1000.0, 1200.0])
        exact = drawdown(points, start)
        assert abs(drawdown(merged, start).max_pct - exact.max_pct) < 1e-9
        assert abs(exact.max_pct - max_drawdown_pct(([start] if start else []) + values)) < 1e-9
        # merging merged stretches again changes nothing
        assert abs(drawdown([merge(merged)], start).max_pct - exact.max_pct) < 1e-9
        assert drawdown(merged, start).current_pct == exact.current_pct


def test_a_dip_inside_an_hour_survives_it() -> None:
    hour = merge([Segment.point(0, 1000.0), Segment.point(1, 850.0), Segment.point(2, 1000.0)])
    assert (hour.low, hour.high, hour.equity, hour.samples) == (850.0, 1000.0, 1000.0, 3)
    assert abs(drawdown([hour]).max_pct - 15.0) < 1e-12 and drawdown([hour]).current_pct == 0.0
