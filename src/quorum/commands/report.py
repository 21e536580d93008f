"""`quorum report`: the paper/live record from Postgres, with the backtest's statistics code.

Win rate with n and its 95 % Wilson interval, profit factor, expectancy, drawdown (from the
mark-to-market equity history), and the same figures by symbol, side, model (voter), hour of entry
(UTC), exit reason and day. `--json` prints one JSON document; `--html OUT` writes the backtest's
HTML report for the record, `--csv OUT` the closed trades with every fill, fee and funding payment
(`report_files`). A path that cannot be written is one line, exit 2.
"""

from __future__ import annotations

import asyncio
import json
import math
import sys
from pathlib import Path
from typing import Any

import asyncpg
import typer

from quorum.bootstrap import record_pool
from quorum.commands.report_files import OutputPathError, check_output_path, write_record_csv, write_record_html
from quorum.config import Settings, load_settings
from quorum.domain.models import ClosedTrade
from quorum.domain.statistics import breakdown, compute_stats
from quorum.logging import configure_logging
from quorum.risk.gate import equity_curve, load_equity, record_drawdown
from quorum.store.db import DatabaseUnavailable
from quorum.store.reports import closed_trades
from quorum.store.reports import win_rate_rows as win_rate_rows  # `SELECT * FROM win_rate` (re-exported)


async def build_report(pool: asyncpg.Pool, settings: Settings, mode: str,
                       trades: list[ClosedTrade] | None = None) -> dict[str, Any]:
    """Every figure of the record of `mode` (paper | live | backtest); `trades`: already loaded."""
    trades = await closed_trades(pool, mode) if trades is None else trades
    equity = equity_curve(trades, await load_equity(pool, mode), settings.initial_capital)
    summary = compute_stats(trades, equity, settings.initial_capital,
                            await record_drawdown(pool, mode, trades, settings.initial_capital))
    return {
        "mode": mode,
        "summary": summary,
        "by_symbol": breakdown(trades, "symbol"),
        "by_side": breakdown(trades, "side"),
        "by_model": breakdown(trades, "voter"),
        "by_hour": breakdown(trades, "hour"),
        "by_exit_reason": breakdown(trades, "exit_reason"),
        "by_day": breakdown(trades, "day"),
    }


def _fmt(v: Any, spec: str = ".2f") -> str:
    if v is None:
        return "n/a"
    if isinstance(v, float) and math.isinf(v):
        return "inf"
    return format(v, spec) if isinstance(v, float | int) else str(v)


def _pct(v: float | None) -> str:
    return "n/a" if v is None else f"{v * 100:.1f}%"


def format_report(rep: dict[str, Any]) -> str:
    s = rep["summary"]
    lo, hi = s["win_rate_ci95"]
    lines = [
        f"Record: {rep['mode']}  (all P&L net of fees and funding)",
        f"  trades {s['trades']}  wins {s['wins']}  losses {s['losses']}",
        f"  win rate {_pct(s['win_rate'])} (n={s['trades']}, 95% CI {_pct(lo)}–{_pct(hi)})",
        f"  profit factor {_fmt(s['profit_factor'])}  expectancy {_fmt(s['expectancy_usd'])} USD"
        f" ({_fmt(s['expectancy_r'])} R)",
        f"  avg win {_fmt(s['avg_win_usd'])}  avg loss {_fmt(s['avg_loss_usd'])}  net P&L {_fmt(s['net_pnl'])}",
        f"  max drawdown {_fmt(s['max_drawdown_pct'])}%  return {_fmt(s['total_return_pct'])}%"
        f"  equity {_fmt(s['initial_equity'])} → {_fmt(s['final_equity'])}",
        f"  fees {_fmt(s['fees_paid'])}  funding {_fmt(s['funding_paid'])}  sharpe {_fmt(s['sharpe'])}",
    ]
    for title, key in (("symbol", "by_symbol"), ("side", "by_side"), ("model", "by_model"),
                       ("hour of entry (UTC)", "by_hour"), ("exit reason", "by_exit_reason"), ("day", "by_day")):
        groups = rep[key]
        if not groups:
            continue
        lines.append(f"By {title}:")
        lines.append(f"  {'':<22}{'n':>5}{'win rate':>10}{'95% CI':>16}{'PF':>8}{'expect.':>10}{'net':>11}")
        for name, g in groups.items():
            glo, ghi = g["win_rate_ci95"]
            lines.append(f"  {name[:22]:<22}{g['n']:>5}{_pct(g['win_rate']):>10}"
                         f"{_pct(glo) + '–' + _pct(ghi):>16}{_fmt(g['profit_factor']):>8}"
                         f"{_fmt(g['expectancy']):>10}{_fmt(g['net_pnl']):>11}")
    return "\n".join(lines)


def format_win_rate_rows(rows: list[dict[str, Any]]) -> str:
    if not rows:
        return "win_rate: (no closed trades)"
    cols = list(rows[0])
    out = ["SELECT * FROM win_rate;", "  " + " | ".join(cols)]
    for r in rows:
        out.append("  " + " | ".join("" if r[c] is None else str(r[c]) for c in cols))
    return "\n".join(out)


def _json_default(v: Any) -> Any:
    if isinstance(v, float) and not math.isfinite(v):
        return None
    return str(v)


def _clean(v: Any) -> Any:
    if isinstance(v, float) and not math.isfinite(v):
        return None
    if isinstance(v, dict):
        return {k: _clean(x) for k, x in v.items()}
    if isinstance(v, list | tuple):
        return [_clean(x) for x in v]
    return v


async def _report(settings: Settings, mode: str, as_json: bool, html: Path | None = None,
                  csv: Path | None = None) -> str:
    async with record_pool(settings) as pool:
        trades = await closed_trades(pool, mode)
        rep = await build_report(pool, settings, mode, trades)
        rows = await win_rate_rows(pool)
        written = []
        if html is not None:
            await write_record_html(pool, mode, rep, trades, settings.initial_capital, html)
            written.append(f"wrote {html} (HTML report, {len(trades)} trades)")
        if csv is not None:
            n = await write_record_csv(pool, mode, csv)
            written.append(f"wrote {csv} ({n} closed trades with their fills and funding payments)")
    if written:
        return "\n".join(written)
    if as_json:
        return json.dumps(_clean({**rep, "win_rate_view": rows}), default=_json_default, indent=2)
    return format_report(rep) + "\n" + format_win_rate_rows(rows)


def register(app: typer.Typer) -> None:
    @app.command("report")
    def report(
        mode: str = typer.Option("paper", help="Which record: paper, live or backtest."),
        as_json: bool = typer.Option(False, "--json", help="Print JSON instead of tables."),
        html: str | None = typer.Option(None, "--html", help="Write the HTML report (as a backtest's) to this file."),
        csv: str | None = typer.Option(None, "--csv", help="Write closed trades with every fill and funding "
                                                           "payment to this CSV file."),
    ) -> None:
        """Print the record's statistics from Postgres (same code as the backtest summary), or
        write them as an HTML report / a CSV of trades, fills and funding."""
        if mode not in ("paper", "live", "backtest"):
            print(f"error: --mode must be paper, live or backtest, not {mode!r}", file=sys.stderr)
            raise typer.Exit(2)
        try:
            html_path = None if html is None else check_output_path(html)
            csv_path = None if csv is None else check_output_path(csv)
        except OutputPathError as exc:
            print(f"error: {exc}", file=sys.stderr)
            raise typer.Exit(2) from None
        settings = load_settings()
        configure_logging(settings)
        try:
            print(asyncio.run(_report(settings, mode, as_json, html_path, csv_path)))
        except OutputPathError as exc:
            print(f"error: {exc}", file=sys.stderr)
            raise typer.Exit(2) from None
        except DatabaseUnavailable as exc:
            print(f"error: {exc}", file=sys.stderr)
            raise typer.Exit(1) from None
