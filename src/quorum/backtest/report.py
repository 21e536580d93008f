"""report.html: equity curve, drawdown, monthly returns, breakdown tables and the trades (plotly).

One generator for a backtest (`quorum backtest --out`) and a paper/live record (`quorum report
--html`). The file is self-contained (plotly's JavaScript is embedded once) so it opens offline.
"""

from __future__ import annotations

import html
import itertools
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import plotly.graph_objects as go
import plotly.io as pio

from quorum.domain.models import ClosedTrade
from quorum.domain.statistics import monthly_returns

_HEADLINE = (
    ("analyst", "Analyst"), ("trades", "Trades"), ("win_rate", "Win rate"),
    ("win_rate_ci95", "Win rate 95 % CI"), ("profit_factor", "Profit factor"),
    ("expectancy_usd", "Expectancy (USDT)"), ("expectancy_r", "Expectancy (R)"),
    ("total_return_pct", "Total return %"), ("max_drawdown_pct", "Max drawdown %"),
    ("sharpe", "Sharpe (daily)"), ("sortino", "Sortino"), ("calmar", "Calmar"),
    ("initial_equity", "Initial equity"), ("final_equity", "Final equity"), ("fees_paid", "Fees"),
    ("funding_paid", "Funding"), ("worst_trade_usd", "Worst trade"), ("bars_processed", "Bars"),
)


def _fmt(v: Any) -> str:
    if v is None:
        return "—"
    if isinstance(v, float):
        return f"{v:,.4f}" if abs(v) < 10 else f"{v:,.2f}"
    if isinstance(v, list | tuple):
        return "[" + ", ".join(_fmt(x) for x in v) + "]"
    return html.escape(str(v))


def _table(title: str, groups: dict[str, dict[str, Any]]) -> str:
    cols = ("n", "wins", "win_rate", "win_rate_ci95", "profit_factor", "expectancy", "expectancy_r", "net_pnl")
    head = "".join(f"<th>{c}</th>" for c in ("group", *cols))
    rows = "".join(
        "<tr><td>" + html.escape(k) + "</td>" + "".join(f"<td>{_fmt(g.get(c))}</td>" for c in cols) + "</tr>"
        for k, g in groups.items()
    )
    return f"<h3>{html.escape(title)}</h3><table><tr>{head}</tr>{rows}</table>"


_TRADE_COLUMNS = ("entry", "exit", "symbol", "side", "quantity", "entry price", "exit price", "leverage", "fees",
                  "funding", "net P&L", "R", "exit reason", "voters")


def _trades_table(trades: Sequence[ClosedTrade]) -> str:
    if not trades:
        return ""
    head = "".join(f"<th>{c}</th>" for c in _TRADE_COLUMNS)
    rows = "".join(
        "<tr>" + "".join(f"<td>{_fmt(v)}</td>" for v in (
            _dt(t.entry_ms).strftime("%Y-%m-%d %H:%M"), _dt(t.exit_ms).strftime("%Y-%m-%d %H:%M"), t.symbol,
            t.side.value, f"{t.quantity:.10g}", t.entry_price, t.exit_price, t.leverage, t.fees, t.funding, t.net_pnl,
            t.r_multiple, t.exit_reason, ", ".join(t.voters))) + "</tr>"
        for t in trades
    )
    return f"<h3>Trades ({len(trades)}, net of fees and funding)</h3><table><tr>{head}</tr>{rows}</table>"


def _dt(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, tz=UTC)


def _downsample(points: Sequence[tuple[int, float]], limit: int = 5000) -> list[tuple[int, float]]:
    """At most about `limit` points for a chart, keeping each bucket's lowest and highest point
    (in time order) and the last: a peak or the deepest drawdown is never dropped."""
    n = len(points)
    if n <= limit:
        return list(points)
    per = max(n * 2 // limit, 2)
    keep: set[int] = {n - 1}
    for s in range(0, n, per):
        idx = range(s, min(s + per, n))
        keep.add(min(idx, key=lambda i: points[i][1]))
        keep.add(max(idx, key=lambda i: points[i][1]))
    return [points[i] for i in sorted(keep)]


def render_report(summary: dict[str, Any], equity: Sequence[tuple[int, float]],
                  breakdowns: dict[str, dict[str, dict[str, Any]]], *, title: str | None = None,
                  trades: Sequence[ClosedTrade] = (),
                  drawdown: Sequence[tuple[int, float]] | None = None) -> str:
    """The HTML text of the report. `drawdown`: (time, −percent) points when the caller measured
    them on a fuller history than `equity` (a record's compacted hours); else from `equity`.
    `trades` adds the trades table; `title` replaces the backtest's."""
    pts = _downsample(equity)
    xs = [_dt(t) for t, _ in pts]
    ys = [v for _, v in pts]
    if drawdown is None:  # measured on every point, then thinned (the deepest one kept)
        peaks = itertools.accumulate((v for _, v in equity), max)
        drawdown = [(t, (v / peak - 1.0) * 100.0 if peak > 0 else 0.0)
                    for (t, v), peak in zip(equity, peaks, strict=True)]
    dd_pts = _downsample(drawdown)
    dd_xs, dd = [_dt(t) for t, _ in dd_pts], [v for _, v in dd_pts]
    eq_fig = go.Figure(go.Scatter(x=xs, y=ys, mode="lines", name="equity"))
    eq_fig.update_layout(title="Equity (USDT, marked to market)", height=380, margin={"t": 40})
    dd_fig = go.Figure(go.Scatter(x=dd_xs, y=dd, mode="lines", fill="tozeroy", name="drawdown %"))
    dd_fig.update_layout(title="Drawdown (%)", height=260, margin={"t": 40})
    months = monthly_returns(equity, float(summary.get("initial_equity") or 0.0))
    m_fig = go.Figure(go.Bar(x=list(months), y=list(months.values()),
                             marker_color=["#2a9d8f" if v >= 0 else "#e76f51" for v in months.values()]))
    m_fig.update_layout(title="Monthly returns (%)", height=300, margin={"t": 40})
    figs = [
        pio.to_html(eq_fig, include_plotlyjs=True, full_html=False),
        pio.to_html(dd_fig, include_plotlyjs=False, full_html=False),
        pio.to_html(m_fig, include_plotlyjs=False, full_html=False),
    ]
    headline = "".join(
        f"<tr><th>{label}</th><td>{_fmt(summary.get(key))}</td></tr>" for key, label in _HEADLINE if key in summary
    )
    tables = "".join(
        _table(f"By {key.replace('_', ' ')}", breakdowns.get(key, {}))
        for key in ("symbol", "side", "exit_reason", "voter", "hour", "day") if key in breakdowns
    )
    analyst = html.escape(str(summary.get("analyst", "?")))
    heading = html.escape(title) if title else f"Quorum backtest — analyst: {analyst}"
    note = (
        "Win rates carry their sample size and a 95 % Wilson interval. P&amp;L is net of fees and "
        "funding. Past simulated results are not a forecast."
    )
    return f"""<!doctype html>
<html><head><meta charset="utf-8"><title>{heading}</title>
<style>body{{font-family:sans-serif;margin:24px;max-width:1200px}}table{{border-collapse:collapse;margin:8px 0}}
td,th{{border:1px solid #ccc;padding:3px 8px;text-align:right}}th{{background:#f4f4f4}}</style></head>
<body><h1>{heading}</h1>
<p>{html.escape(str(summary.get('period', '')))} · symbols: {html.escape(', '.join(summary.get('symbols', [])))}</p>
<p><em>{note}</em></p>
<table>{headline}</table>
{''.join(figs)}
{tables}
{_trades_table(trades)}
</body></html>
"""


def write_report(path: Path, summary: dict[str, Any], equity: Sequence[tuple[int, float]],
                 breakdowns: dict[str, dict[str, dict[str, Any]]], **kw: Any) -> None:
    """Write `render_report(...)` (keywords: title, trades, drawdown) to `path`."""
    path.write_text(render_report(summary, equity, breakdowns, **kw), encoding="utf-8")
