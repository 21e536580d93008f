"""Backtest output files: summary.json, trades.csv, equity.csv (report.html is in `report`).

Numbers are written as computed (no rounding that could break the accounting identity); None
becomes JSON null / an empty CSV cell.
"""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from quorum.domain.models import ClosedTrade

TRADE_COLUMNS = (
    "symbol", "side", "entry_time", "exit_time", "entry_ms", "exit_ms", "entry_price", "exit_price",
    "quantity", "leverage", "fees", "funding", "gross_pnl", "net_pnl", "r_multiple", "risk_usd",
    "exit_reason", "decision_id", "voters",
)


def iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _clean(obj: Any) -> Any:
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {str(k): _clean(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_clean(v) for v in obj]
    return obj


def write_summary(path: Path, summary: dict[str, Any]) -> None:
    path.write_text(json.dumps(_clean(summary), indent=2, sort_keys=False) + "\n", encoding="utf-8")


def trade_row(t: ClosedTrade) -> dict[str, Any]:
    r = t.r_multiple
    return {
        "symbol": t.symbol, "side": t.side.value, "entry_time": iso(t.entry_ms), "exit_time": iso(t.exit_ms),
        "entry_ms": t.entry_ms, "exit_ms": t.exit_ms, "entry_price": repr(t.entry_price),
        "exit_price": repr(t.exit_price), "quantity": repr(t.quantity), "leverage": repr(t.leverage),
        "fees": repr(t.fees), "funding": repr(t.funding), "gross_pnl": repr(t.gross_pnl),
        "net_pnl": repr(t.net_pnl), "r_multiple": "" if r is None else repr(r),
        "risk_usd": "" if t.risk_usd is None else repr(t.risk_usd), "exit_reason": t.exit_reason,
        "decision_id": t.decision_id or "", "voters": "|".join(t.voters),
    }


def write_trades(path: Path, trades: Sequence[ClosedTrade]) -> None:
    with path.open("w", newline="", encoding="utf-8") as fh:
        w = csv.DictWriter(fh, fieldnames=TRADE_COLUMNS)
        w.writeheader()
        for t in trades:
            w.writerow(trade_row(t))


def write_equity(path: Path, equity: Sequence[tuple[int, float]]) -> None:
    """equity.csv: time (ISO, UTC), time_ms, equity — a row per bar, so the times are formatted
    in one vectorised call (the rows are what `csv.writer` would write: CRLF, nothing quoted)."""
    import numpy as np  # not at the top: `quorum report` imports this module, and --help must stay light

    stamps = np.datetime_as_string(np.fromiter((t for t, _ in equity), dtype=np.int64, count=len(equity))
                                   .astype("datetime64[ms]"), unit="s")
    with path.open("w", newline="", encoding="utf-8") as fh:
        fh.write("time,time_ms,equity\r\n")
        fh.writelines(f"{s}Z,{t},{v!r}\r\n" for s, (t, v) in zip(stamps, equity, strict=True))


def read_trades(path: Path) -> list[dict[str, str]]:
    """trades.csv rows as dicts (for tests and `quorum report`)."""
    with path.open(newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))
