"""The report's HTML tables: breakdowns, the trades (sortable, scrollable) and the cell formats.

Gains and losses read without colour: signed money and R carry ▲ / ▼ and a sign.
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from typing import Any

from quorum.backtest.report_charts import dt, signed
from quorum.domain.models import ClosedTrade

# Click a header to sort by it (again: reverse). Numbers sort as numbers ("▼ -1,234.5" → −1234.5).
SORT_JS = """<script>
document.querySelectorAll("table.sortable th").forEach(function (th) {
  var col = th.cellIndex;
  th.style.cursor = "pointer"; th.title = "sort";
  th.addEventListener("click", function () {
    var body = th.closest("table").tBodies[0], rows = Array.from(body.rows), asc = th.dataset.asc !== "1";
    th.dataset.asc = asc ? "1" : "0";
    var key = function (r) { var s = r.cells[col].textContent, n = parseFloat(s.replace(/[^0-9.eE+-]/g, ""));
      return /^[\\s▲▼+-]*[0-9.,]+(e[+-]?[0-9]+)?\\s*$/i.test(s) && !isNaN(n) ? n : s; };
    rows.sort(function (a, b) { var x = key(a), y = key(b);
      if (typeof x !== typeof y) { x = String(x); y = String(y); }
      return (x < y ? -1 : x > y ? 1 : 0) * (asc ? 1 : -1); });
    rows.forEach(function (r) { body.appendChild(r); });
  });
});
</script>"""


def fmt(v: Any) -> str:
    if v is None:
        return "—"
    if isinstance(v, float):
        return f"{v:,.4f}" if abs(v) < 10 else f"{v:,.2f}"
    if isinstance(v, list | tuple):
        return "[" + ", ".join(fmt(x) for x in v) + "]"
    return html.escape(str(v))


def money(v: float | None, digits: int = 2) -> str:
    """A signed money / return cell: class g (gain) or l (loss) for the colour, ▲ / ▼ for the rest."""
    if v is None:
        return "<td>—</td>"
    cls = ' class="g"' if round(v, digits) > 0 else ' class="l"' if round(v, digits) < 0 else ""
    return f"<td{cls}>{signed(v, digits)}</td>"


_SIGNED = {"expectancy", "expectancy_r", "net_pnl"}


def breakdown_table(title: str, groups: dict[str, dict[str, Any]]) -> str:
    cols = ("n", "wins", "win_rate", "win_rate_ci95", "profit_factor", "expectancy", "expectancy_r", "net_pnl")
    head = "".join(f"<th>{c}</th>" for c in ("group", *cols))
    rows = "".join(
        "<tr><td>" + html.escape(k) + "</td>"
        + "".join(money(g.get(c), 4 if c == "expectancy_r" else 2) if c in _SIGNED else f"<td>{fmt(g.get(c))}</td>"
                  for c in cols) + "</tr>"
        for k, g in groups.items()
    )
    return f"<h3>{html.escape(title)}</h3><table><tr>{head}</tr>{rows}</table>"


TRADE_COLUMNS = ("#", "entry (UTC)", "exit (UTC)", "symbol", "side", "quantity", "entry price", "exit price",
                 "leverage", "fees", "funding", "net P&amp;L", "R", "exit reason", "voters")


def _trade_row(i: int, t: ClosedTrade) -> str:
    r = t.r_multiple
    cells = (f"<td>{i}</td><td>{dt(t.entry_ms):%Y-%m-%d %H:%M}</td><td>{dt(t.exit_ms):%Y-%m-%d %H:%M}</td>"
             f"<td>{html.escape(t.symbol)}</td><td>{t.side.value}</td><td>{t.quantity:.10g}</td>"
             f"<td>{t.entry_price:.8g}</td><td>{t.exit_price:.8g}</td><td>{t.leverage:.3g}</td>"
             f"<td>{t.fees:.4f}</td><td>{t.funding:.4f}</td>{money(t.net_pnl, 4)}{money(r)}"
             f"<td>{html.escape(t.exit_reason)}</td><td>{html.escape(', '.join(t.voters))}</td>")
    return f"<tr>{cells}</tr>"


def trades_table(trades: Sequence[ClosedTrade]) -> str:
    """Every trade, one row each, oldest first, in a scrolling box; headers sort (SORT_JS)."""
    if not trades:
        return "<h3>Trades (0)</h3><p>No trade was closed.</p>"
    head = "".join(f"<th>{c}</th>" for c in TRADE_COLUMNS)
    rows = "".join(_trade_row(i, t) for i, t in enumerate(trades, 1))
    return (f"<h3>Trades ({len(trades)}, net of fees and funding)</h3>"
            "<p class=\"note\">Click a column header to sort. Fees and funding in USDT (positive = paid).</p>"
            f"<div class=\"scroll\"><table class=\"sortable\" id=\"trades\"><thead><tr>{head}</tr></thead>"
            f"<tbody>{rows}</tbody></table></div>")
