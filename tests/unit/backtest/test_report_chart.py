"""report.html thins a long equity history for its charts, but never drops a peak or the
deepest drawdown: the old thinning kept every k-th point, so a one-bar dip between two kept
points vanished from the drawdown chart while the summary still reported it."""

from __future__ import annotations

import json
import re

from quorum.backtest.report import render_report

T0 = 1_735_689_600_000


def _series(n: int, dip_at: int) -> list[tuple[int, float]]:
    return [(T0 + i * 300_000, 500.0 if i == dip_at else 1_000.0 + (i % 7)) for i in range(n)]


def _plot_ys(html: str) -> list[list[float]]:
    """The y arrays of the report's plotly figures, in order (equity, drawdown, monthly)."""
    out = []
    for blob in re.findall(r'Plotly\.newPlot\(\s*"[^"]+",\s*(\[.*?\]),\s*\{', html, re.S):
        out.extend(trace["y"] for trace in json.loads(blob) if "y" in trace)
    return out


def test_a_one_bar_dip_survives_thinning() -> None:
    equity = _series(120_000, dip_at=54_321)
    html = render_report({"initial_equity": 1_000.0, "analyst": "rules"}, equity, {})
    eq_ys, dd_ys = _plot_ys(html)[:2]
    assert len(eq_ys) <= 6_000 and len(dd_ys) <= 6_000  # thinned
    assert min(eq_ys) == 500.0  # the dip is drawn
    assert min(dd_ys) < -49.0  # and so is the drawdown it caused (−50 % from the 1,006 peak)
