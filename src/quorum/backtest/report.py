"""report.html: what stopped trading, then the headline figures, equity, drawdown, monthly returns,
a price chart per traded symbol with its entries and exits, the breakdown tables and every trade.

One generator for a backtest (`quorum backtest --out`) and a paper/live record (`quorum report
--html`). The file is self-contained (plotly's JavaScript is embedded once, the table sorting is a
few lines inline) so it opens offline. Sections: `report_sections` (contamination, halts, warm-up,
data-quality flags), `report_charts`, `report_tables`.
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import plotly.io as pio

from quorum.backtest.report_charts import Prices, equity_figures, month_bars, monthly_figure, price_figures
from quorum.backtest.report_sections import (
    contaminated_banner,
    data_flags_section,
    halt_spans,
    halts_section,
    period_bounds,
    period_section,
    to_ms,
)
from quorum.backtest.report_tables import SORT_JS, breakdown_table, fmt, trades_table
from quorum.domain.models import ClosedTrade

_HEADLINE = (
    ("analyst", "Analyst"), ("trades", "Trades"), ("win_rate", "Win rate"),
    ("win_rate_ci95", "Win rate 95 % CI"), ("profit_factor", "Profit factor"),
    ("expectancy_usd", "Expectancy (USDT)"), ("expectancy_r", "Expectancy (R)"),
    ("total_return_pct", "Total return %"), ("max_drawdown_pct", "Max drawdown %"),
    ("sharpe", "Sharpe (daily)"), ("sortino", "Sortino"), ("calmar", "Calmar"),
    ("initial_equity", "Initial equity"), ("final_equity", "Final equity"), ("fees_paid", "Fees"),
    ("funding_paid", "Funding"), ("worst_trade_usd", "Worst trade"), ("bars_processed", "Bars"),
)
_SIGNED = {"expectancy_usd", "expectancy_r", "total_return_pct", "worst_trade_usd"}
NO_PRICES = "no price history was given (a paper or live record does not store candles)"

_STYLE = """body{font-family:sans-serif;margin:24px;max-width:1200px}table{border-collapse:collapse;margin:8px 0}
td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}th{background:#f4f4f4}
td.g{color:#1a7a6e}td.l{color:#c0392b}.note{color:#555;font-size:90%}
.scroll{max-height:600px;overflow:auto;border:1px solid #ddd}.scroll th{position:sticky;top:0}
#trades td,#trades th{white-space:nowrap}
.banner{background:#c0392b;color:#fff;padding:10px 16px;margin:8px 0;font-size:110%}
#halts{background:#fff4e5;border-left:6px solid #e67e22;padding:4px 16px;margin:8px 0}
#data-flags h2,#halts h2{font-size:120%}"""


def _headline(summary: dict[str, Any]) -> str:
    rows = []
    for key, label in _HEADLINE:
        if key not in summary:
            continue
        v = summary[key]
        if key in _SIGNED and isinstance(v, int | float):
            cell = ("▲ +" if v > 0 else "▼ " if v < 0 else "") + fmt(float(v))
        else:
            cell = fmt(v)
        rows.append(f"<tr><th>{label}</th><td>{cell}</td></tr>")
    return f"<table>{''.join(rows)}</table>"


def _prices_part(prices: Prices | None, trades: Sequence[ClosedTrade], why_absent: str) -> str:
    if prices is None:
        return f"<h2>Prices</h2><p>Price charts are not part of this report: {html.escape(why_absent)}.</p>"
    figs, missing = price_figures(prices, trades)
    untraded = sorted(set(prices) - {t.symbol for t in trades})
    notes = []
    if missing:
        notes.append(f"no prices for {', '.join(missing)}")
    if untraded:
        notes.append(f"no trade on {', '.join(untraded)}, so no chart")
    intro = ("<h2>Prices and trades</h2><p class=\"note\">Close prices, thinned for the page (each "
             "stretch keeps its lowest and highest close); ▲ long / ▼ short entries, ● exit with a gain, "
             "✕ exit with a loss. Hover a marker for its details; drag to zoom.</p>")
    tail = f"<p class=\"note\">{html.escape('; '.join(notes))}.</p>" if notes else ""
    return intro + "".join(pio.to_html(f, include_plotlyjs=False, full_html=False) for f in figs) + tail


def render_report(summary: dict[str, Any], equity: Sequence[tuple[int, float]],
                  breakdowns: dict[str, dict[str, dict[str, Any]]], *, title: str | None = None,
                  trades: Sequence[ClosedTrade] = (),
                  drawdown: Sequence[tuple[int, float]] | None = None,
                  prices: Prices | None = None, no_prices_reason: str = NO_PRICES) -> str:
    """The HTML text of the report. `drawdown`: (time, −percent) points when the caller measured
    them on a fuller history than `equity` (a record's compacted hours); else from `equity`.
    `trades` adds the trades table and the chart markers; `prices` ({symbol: (bar close times ms,
    closes)}) the price charts — without it the page says why (`no_prices_reason`); `title`
    replaces the backtest's."""
    start, end = period_bounds(summary, equity)
    eq_fig, dd_fig = equity_figures(equity, drawdown, halt_spans(summary, end))
    bars = month_bars(equity, float(summary.get("initial_equity") or 0.0),
                      to_ms(summary.get("start_ms")), to_ms(summary.get("end_ms")), trades)
    figs = [
        pio.to_html(eq_fig, include_plotlyjs=True, full_html=False),
        pio.to_html(dd_fig, include_plotlyjs=False, full_html=False),
        pio.to_html(monthly_figure(bars), include_plotlyjs=False, full_html=False),
    ]
    tables = "".join(
        breakdown_table(f"By {key.replace('_', ' ')}", breakdowns.get(key, {}))
        for key in ("symbol", "side", "exit_reason", "voter", "hour", "day") if key in breakdowns
    )
    analyst = html.escape(str(summary.get("analyst", "?")))
    heading = html.escape(title) if title else f"Quorum backtest — analyst: {analyst}"
    note = (
        "Win rates carry their sample size and a 95 % Wilson interval. P&amp;L is net of fees and "
        "funding; ▲ marks a gain, ▼ a loss. Times are UTC. Past simulated results are not a forecast."
    )
    top = (contaminated_banner(summary.get("contaminated")) + halts_section(summary, start, end)
           + period_section(summary) + data_flags_section(summary.get("data_flags")))
    return f"""<!doctype html>
<html><head><meta charset="utf-8"><title>{heading}</title>
<style>{_STYLE}</style></head>
<body><h1>{heading}</h1>
<p>{html.escape(str(summary.get('period', '')))} · symbols: {html.escape(', '.join(summary.get('symbols', [])))}</p>
{top}
<p><em>{note}</em></p>
{_headline(summary)}
{''.join(figs)}
{_prices_part(prices, trades, no_prices_reason)}
{tables}
{trades_table(trades)}
{SORT_JS}
</body></html>
"""


def write_report(path: Path, summary: dict[str, Any], equity: Sequence[tuple[int, float]],
                 breakdowns: dict[str, dict[str, dict[str, Any]]], **kw: Any) -> None:
    """Write `render_report(...)` (keywords: title, trades, drawdown, prices, no_prices_reason) to `path`."""
    path.write_text(render_report(summary, equity, breakdowns, **kw), encoding="utf-8")
