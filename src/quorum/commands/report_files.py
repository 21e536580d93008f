"""`quorum report --html OUT` and `--csv OUT`: the paper/live record as files.

- HTML: the backtest's report generator (`quorum.backtest.report`) on the record — the
  mark-to-market equity history, its drawdown (compacted hours show their lows), the headline
  figures, the monthly returns, the tables by symbol, side, model, hour, day and exit reason, and
  the trades (a sortable table). No price charts: the record holds no candles (the page says so).
- CSV: every closed trade followed by each of its fills and funding payments, one row each
  (`row` = trade | fill | funding). A trade row's `fee` and `funding` are the sums of its fill
  and funding rows; its `net_pnl` = `gross_pnl` − fees − funding.
"""

from __future__ import annotations

import csv
from datetime import UTC
from pathlib import Path
from typing import Any

import asyncpg

from quorum.backtest.outputs import iso
from quorum.backtest.report import write_report
from quorum.domain.equity import drawdown_series
from quorum.domain.models import ClosedTrade
from quorum.risk.gate import equity_curve
from quorum.store.equity import EquityRepository
from quorum.store.reports import closed_trade_fills, closed_trade_funding, closed_trade_rows

CSV_COLUMNS = (
    "row", "position_id", "symbol", "side", "time", "time_ms", "purpose", "price", "quantity", "fee", "funding",
    "funding_rate", "liquidity", "client_order_id", "trade_id", "entry_time", "entry_price", "exit_price",
    "leverage", "gross_pnl", "net_pnl", "exit_reason", "decision_id",
)


class OutputPathError(Exception):
    """OUT cannot be written (one line, safe to print)."""


def check_output_path(out: str) -> Path:
    """The path to write, or `OutputPathError` naming what is wrong (before any work is done)."""
    path = Path(out).expanduser()
    if not out.strip():
        raise OutputPathError("the output path is empty")
    if path.is_dir():
        raise OutputPathError(f"{out} is a directory; give a file name")
    if not path.parent.is_dir():
        raise OutputPathError(f"cannot write {out}: directory {path.parent} does not exist")
    return path


def _write(path: Path, write: Any) -> None:
    try:
        write()
    except OSError as exc:
        raise OutputPathError(f"cannot write {path}: {exc.strerror or exc}") from None


def _iso(dt: Any) -> str:
    return "" if dt is None else dt.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _ms(dt: Any) -> str:
    return "" if dt is None else str(int(dt.timestamp() * 1000))


def _num(v: Any) -> str:
    return "" if v is None else repr(float(v))  # stored numerics hold floats: print them as the float


async def record_rows(pool: asyncpg.Pool, mode: str) -> list[dict[str, str]]:
    """The CSV rows of the record (see the module docstring), trades oldest first."""
    trades = await closed_trade_rows(pool, mode)
    fills = await closed_trade_fills(pool, mode)
    funding = await closed_trade_funding(pool, mode)
    by_pos: dict[str, list[dict[str, str]]] = {}
    for f in fills:
        by_pos.setdefault(f["position_id"], []).append({
            "row": "fill", "position_id": f["position_id"], "symbol": f["symbol"], "side": f["side"],
            "time": _iso(f["at"]), "time_ms": _ms(f["at"]), "purpose": f["purpose"], "price": _num(f["price"]),
            "quantity": _num(f["quantity"]), "fee": _num(f["fee"]), "liquidity": f["liquidity"],
            "client_order_id": f["client_order_id"], "trade_id": f["trade_id"]})
    for p in funding:
        by_pos.setdefault(p["position_id"], []).append({
            "row": "funding", "position_id": p["position_id"], "symbol": p["symbol"], "time": _iso(p["at"]),
            "time_ms": _ms(p["at"]), "price": _num(p["mark_price"]), "quantity": _num(p["quantity"]),
            "funding": _num(p["amount"]), "funding_rate": _num(p["rate"])})
    out: list[dict[str, str]] = []
    for t in trades:
        out.append({
            "row": "trade", "position_id": t["position_id"], "symbol": t["symbol"], "side": t["side"],
            "time": _iso(t["closed_at"]), "time_ms": _ms(t["closed_at"]), "quantity": _num(t["quantity"]),
            "fee": _num(t["fees"]), "funding": _num(t["funding"]), "entry_time": _iso(t["opened_at"]),
            "entry_price": _num(t["entry_price"]), "exit_price": _num(t["exit_price"]),
            "leverage": _num(t["leverage"]), "gross_pnl": _num(t["gross_pnl"]), "net_pnl": _num(t["net_pnl"]),
            "exit_reason": t["exit_reason"] or "", "decision_id": t["decision_id"] or ""})
        out.extend(sorted(by_pos.get(t["position_id"], []), key=lambda r: (r["time_ms"], r["row"])))
    return out


async def write_record_csv(pool: asyncpg.Pool, mode: str, path: Path) -> int:
    """Write the CSV; returns the number of closed trades in it."""
    rows = await record_rows(pool, mode)

    def write() -> None:
        with path.open("w", newline="", encoding="utf-8") as fh:
            w = csv.DictWriter(fh, fieldnames=CSV_COLUMNS, restval="")
            w.writeheader()
            w.writerows(rows)

    _write(path, write)
    return sum(1 for r in rows if r["row"] == "trade")


async def write_record_html(pool: asyncpg.Pool, mode: str, report: dict[str, Any], trades: list[ClosedTrade],
                            initial_equity: float, path: Path) -> None:
    """Write the HTML report of the record (`report` as `build_report` returns it)."""
    segments = await EquityRepository(pool, mode).segments()
    equity = [(s.at_ms, s.equity) for s in segments] or equity_curve(trades, [], initial_equity)
    summary = dict(report["summary"])
    first = min([s.at_ms for s in segments] + [t.entry_ms for t in trades], default=None)
    last = max([s.at_ms for s in segments] + [t.exit_ms for t in trades], default=None)
    if first is not None and last is not None:
        summary["period"] = f"{iso(first)} → {iso(last)} ({len(segments)} equity rows)"
        summary["start_ms"], summary["end_ms"] = first, last  # the monthly chart's span
    summary["symbols"] = sorted({t.symbol for t in trades})
    breakdowns = {"symbol": report["by_symbol"], "side": report["by_side"], "voter": report["by_model"],
                  "hour": report["by_hour"], "day": report["by_day"], "exit_reason": report["by_exit_reason"]}
    _write(path, lambda: write_report(
        path, summary, equity, breakdowns, title=f"Quorum {mode} record", trades=trades,
        drawdown=drawdown_series(segments, initial_equity) if segments else None,
        no_prices_reason=f"the {mode} record does not store candles (a `quorum backtest` report has them)"))
