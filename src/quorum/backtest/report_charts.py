"""The report's plotly charts: equity, drawdown, monthly returns, and a price chart per traded
symbol with its entries and exits.

Long series are thinned for the page, never by dropping an extreme: each bucket of consecutive
points keeps its lowest and highest (in time order). Times go to plotly as epoch milliseconds on
date axes (UTC); numpy arrays are written by plotly as compact base64 typed arrays.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import plotly.graph_objects as go

from quorum.domain.models import ClosedTrade
from quorum.domain.statistics import monthly_returns

GAIN, LOSS = "#2a9d8f", "#e76f51"
PRICE_BUCKETS = 2000  # per symbol: at most 2 × this many price points (≈ 64 KB of the page)
# (bar close times in epoch ms, close prices), one pair per symbol; arrays or sequences
Prices = Mapping[str, tuple[Any, Any]]


def dt(ms: float) -> datetime:
    return datetime.fromtimestamp(ms / 1000, tz=UTC)


def signed(v: float, digits: int = 2, unit: str = "") -> str:
    """`▲ +1.23` / `▼ -1.23` / `0.00`: a gain or a loss reads without its colour."""
    text = f"{abs(v):,.{digits}f}{unit}"
    if round(v, digits) > 0:
        return f"▲ +{text}"
    if round(v, digits) < 0:
        return f"▼ -{text}"
    return text


def downsample(points: Sequence[tuple[int, float]], limit: int = 5000) -> list[tuple[int, float]]:
    """At most about `limit` points for a chart, keeping each bucket's lowest and highest point
    (in time order), the first and the last: a peak or the deepest drawdown is never dropped."""
    if len(points) <= limit:
        return list(points)
    keep = minmax_indices([v for _, v in points], limit // 2)
    return [points[i] for i in keep.tolist()]


def minmax_indices(values: Any, buckets: int) -> Any:
    """Vectorised `downsample` for numpy arrays: the sorted indices of each of `buckets` runs'
    lowest and highest value, plus the first and the last index."""
    import numpy as np  # not at the top: `quorum report --help` imports this module

    v = np.asarray(values, dtype=np.float64)
    n = len(v)
    if n <= 2 * buckets:
        return np.arange(n)
    per = -(-n // buckets)
    full = n // per
    runs = v[: full * per].reshape(full, per)
    base = np.arange(full) * per
    parts = [base + runs.argmin(axis=1), base + runs.argmax(axis=1), np.array([0, n - 1])]
    if full * per < n:
        tail = v[full * per:]
        parts.append(np.array([full * per + int(tail.argmin()), full * per + int(tail.argmax())]))
    return np.unique(np.concatenate(parts))


def _date_layout(fig: go.Figure, title: str, height: int) -> None:
    fig.update_layout(title=title, height=height, margin={"t": 40, "b": 30})
    fig.update_xaxes(type="date")


def equity_figures(equity: Sequence[tuple[int, float]], drawdown: Sequence[tuple[int, float]] | None,
                   halts: Sequence[tuple[float, float]] = ()) -> tuple[go.Figure, go.Figure]:
    """Equity and drawdown (%) charts. `drawdown`: (time, −percent) points measured on a fuller
    history than `equity`; else from `equity` (each point, then thinned). `halts`: (from, to)
    ms spans shaded on both (entries halted for every symbol)."""
    pts = downsample(equity)
    if drawdown is None:  # measured on every point, then thinned (the deepest one kept)
        import numpy as np

        v = np.array([v for _, v in equity], dtype=np.float64)
        peak = np.maximum.accumulate(v) if len(v) else v
        with np.errstate(divide="ignore", invalid="ignore"):
            dd = np.where(peak > 0, (v / peak - 1.0) * 100.0, 0.0)
        drawdown = list(zip((t for t, _ in equity), dd.tolist(), strict=True))
    dd_pts = downsample(drawdown)
    eq_fig = go.Figure(go.Scatter(x=[t for t, _ in pts], y=[v for _, v in pts], mode="lines", name="equity"))
    _date_layout(eq_fig, "Equity (USDT, marked to market)", 380)
    dd_fig = go.Figure(go.Scatter(x=[t for t, _ in dd_pts], y=[v for _, v in dd_pts], mode="lines",
                                  fill="tozeroy", name="drawdown %"))
    _date_layout(dd_fig, "Drawdown (%)", 260)
    # shapes as plain dicts in one assignment: `add_vrect` validates the whole list at every call
    shapes = [{"type": "rect", "xref": "x", "yref": "paper", "x0": a, "x1": b, "y0": 0, "y1": 1,
               "fillcolor": "#999", "opacity": 0.15, "line": {"width": 0}} for a, b in halts[:50]]
    if shapes:
        eq_fig.update_layout(shapes=shapes, title="Equity (USDT, marked to market; grey: new entries halted)")
        dd_fig.update_layout(shapes=shapes)
    return eq_fig, dd_fig


def _month_bounds(key: str) -> tuple[int, int]:
    y, m = int(key[:4]), int(key[5:7])
    start = datetime(y, m, 1, tzinfo=UTC)
    end = datetime(y + m // 12, m % 12 + 1, 1, tzinfo=UTC)
    return int(start.timestamp() * 1000), int(end.timestamp() * 1000)


def month_bars(equity: Sequence[tuple[int, float]], initial: float, start_ms: int | None = None,
               end_ms: int | None = None, trades: Sequence[ClosedTrade] = ()) -> list[dict[str, Any]]:
    """One bar per month holding equity: month ('YYYY-MM'), its return %, the span it covers — the
    calendar month cut to the record [start_ms, end_ms] (default: the first and last point) — and
    the number of trades closed in it."""
    if not equity:
        return []
    closed: dict[str, int] = {}
    for x in trades:  # an exit at 00:00 on the 1st closes the previous month, as equity does
        key = f"{dt(x.exit_ms - 1):%Y-%m}"
        closed[key] = closed.get(key, 0) + 1
    times = [t for t, _ in equity]
    lo = min(times) if start_ms is None else min(start_ms, min(times))
    hi = max(times) if end_ms is None else max(end_ms, max(times))
    out: list[dict[str, Any]] = []
    prev_key = ""
    for key, pct in monthly_returns(equity, initial).items():
        m0, m1 = _month_bounds(key)
        a, b = max(m0, lo), min(m1, hi)
        gap = bool(prev_key) and _month_bounds(prev_key)[1] != m0
        out.append({"month": key, "return_pct": pct, "from_ms": a, "to_ms": max(a, b),
                    "partial": a > m0 or b < m1, "after_gap": prev_key if gap else None,
                    "trades": closed.get(key, 0)})
        prev_key = key
    return out


def monthly_figure(bars: Sequence[dict[str, Any]]) -> go.Figure:
    """Monthly returns: each bar drawn inside the span of its month that the record covers (the
    axis runs from the record's start to its end: no month outside it)."""
    xs = [(b["from_ms"] + b["to_ms"]) / 2 for b in bars]
    widths = [max(b["to_ms"] - b["from_ms"], 1) * 0.92 for b in bars]
    hover = []
    for b in bars:
        note = ""
        if b["partial"]:
            days = (b["to_ms"] - b["from_ms"]) / 86_400_000
            note = (f" ({dt(b['from_ms']):%d %b %H:%M} → {dt(b['to_ms']):%d %b %H:%M} UTC: "
                    f"{days:.1f} days in the record)")
        if b["after_gap"]:
            note += f" — measured from the {b['after_gap']} close: no equity history in between"
        n = b.get("trades", 0)
        note += f"; {n} trade{'s' if n != 1 else ''} closed"
        hover.append(f"{b['month']}: {signed(b['return_pct'], unit=' %')}{note}")
    fig = go.Figure(go.Bar(
        x=xs, y=[b["return_pct"] for b in bars], width=widths, customdata=hover,
        hovertemplate="%{customdata}<extra></extra>", text=[signed(b["return_pct"]) for b in bars],
        textposition="outside", cliponaxis=False,
        marker_color=[GAIN if b["return_pct"] >= 0 else LOSS for b in bars]))
    _date_layout(fig, "Monthly returns (%, UTC calendar months; a partial month is drawn partial)", 320)
    if bars:
        fig.update_xaxes(range=[bars[0]["from_ms"], bars[-1]["to_ms"]])
    if len(bars) >= 3:  # a label per month, centred on it (a shorter record keeps plotly's ticks)
        fig.update_xaxes(tickformat="%b %Y", ticklabelmode="period", dtick="M1" if len(bars) <= 18 else "M3")
    return fig


def _trade_hover(t: ClosedTrade, what: str) -> str:
    r = "" if t.r_multiple is None else f", R {t.r_multiple:+.2f}"
    when, price = (t.entry_ms, t.entry_price) if what == "entry" else (t.exit_ms, t.exit_price)
    return (f"{t.side.value.upper()} {what} {dt(when):%Y-%m-%d %H:%M} at {price:.8g}<br>"
            f"{t.exit_reason}: {signed(t.net_pnl, unit=' USDT')}{r}")


def price_figure(symbol: str, times_ms: Any, closes: Any, trades: Sequence[ClosedTrade]) -> go.Figure:
    """The close price (thinned per bucket, its lows and highs kept) with the symbol's trades:
    ▲ long / ▼ short entries, exits as ● (gain) or ✕ (loss), each joined to its entry (solid:
    gain, dotted: loss); the hover says side, time, price, exit reason and net P&L."""
    import numpy as np

    t = np.asarray(times_ms, dtype=np.float64)
    c = np.asarray(closes, dtype=np.float64)
    keep = minmax_indices(c, PRICE_BUCKETS)
    fig = go.Figure(go.Scatter(x=t[keep], y=c[keep], mode="lines", name="close", line={"color": "#888", "width": 1},
                               hovertemplate="%{x|%Y-%m-%d %H:%M} close %{y}<extra></extra>"))
    for won, dash, color in ((True, "solid", GAIN), (False, "dot", LOSS)):
        mine = [x for x in trades if (x.net_pnl > 0) == won]
        if mine:
            fig.add_trace(go.Scatter(
                x=np.array([v for x in mine for v in (x.entry_ms, x.exit_ms, np.nan)]),
                y=np.array([v for x in mine for v in (x.entry_price, x.exit_price, np.nan)]),
                mode="lines", line={"color": color, "width": 1, "dash": dash}, hoverinfo="skip",
                name="winning trade" if won else "losing trade"))
    markers = (
        ("long entry", "triangle-up", "#1f5fbf", [x for x in trades if x.side.value == "long"], "entry"),
        ("short entry", "triangle-down", "#8e44ad", [x for x in trades if x.side.value == "short"], "entry"),
        ("exit, gain", "circle", GAIN, [x for x in trades if x.net_pnl > 0], "exit"),
        ("exit, loss", "x", LOSS, [x for x in trades if x.net_pnl <= 0], "exit"),
    )
    for name, symbol_, color, group, what in markers:
        if not group:
            continue
        fig.add_trace(go.Scatter(
            x=np.array([float(x.entry_ms if what == "entry" else x.exit_ms) for x in group]),
            y=np.array([x.entry_price if what == "entry" else x.exit_price for x in group]),
            mode="markers", name=name, marker={"symbol": symbol_, "size": 9, "color": color},
            hovertext=[_trade_hover(x, what) for x in group], hoverinfo="text"))
    _date_layout(fig, f"{symbol}: price and trades ({len(trades)})", 380)
    fig.update_layout(legend={"orientation": "h", "y": -0.12})
    return fig


def price_figures(prices: Prices, trades: Sequence[ClosedTrade]) -> tuple[list[go.Figure], list[str]]:
    """A price chart per traded symbol that has prices; and the symbols traded without prices."""
    by_symbol: dict[str, list[ClosedTrade]] = {}
    for t in trades:
        by_symbol.setdefault(t.symbol, []).append(t)
    figs = [price_figure(s, *prices[s], by_symbol[s]) for s in sorted(by_symbol) if s in prices]
    return figs, sorted(s for s in by_symbol if s not in prices)
