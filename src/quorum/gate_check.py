"""Reads a paper/live record from Postgres: closed trades, equity curve, open critical alerts.

Feeds `quorum.domain.gate.evaluate_gate` (`quorum readiness`, the live-start check) and
`quorum report` (through `quorum.domain.statistics`, the backtest's own statistics code).
"""

from __future__ import annotations

from typing import Any

import asyncpg

from quorum.config import Settings
from quorum.domain.gate import GateRecord, GateReport, GateThresholds, evaluate_gate
from quorum.domain.models import ClosedTrade, Side
from quorum.domain.statistics import max_drawdown_pct
from quorum.store.equity import drawdown_since
from quorum.store.positions import dt_to_ms


def thresholds_from(settings: Settings) -> GateThresholds:
    return GateThresholds(
        min_days=float(settings.gate_min_days),
        min_trades=settings.gate_min_trades,
        min_profit_factor=settings.gate_min_profit_factor,
        max_drawdown_pct=settings.gate_max_drawdown_pct,
    )


async def load_trades(pool: asyncpg.Pool, mode: str) -> list[ClosedTrade]:
    """Closed positions of `mode` as `ClosedTrade`s (net of fees and funding), oldest first,
    each with the voters whose vote backed it (view `trade_voters`)."""
    rows = await pool.fetch(
        """SELECT ct.*, coalesce(array_agg(tv.voter ORDER BY tv.voter)
                  FILTER (WHERE tv.voter IS NOT NULL), '{}') AS voters
           FROM closed_trades ct LEFT JOIN trade_voters tv ON tv.position_id = ct.position_id
           WHERE ct.mode = $1
           GROUP BY ct.position_id, ct.mode, ct.symbol, ct.side, ct.opened_at, ct.closed_at,
                    ct.entry_price, ct.exit_price, ct.quantity, ct.leverage, ct.fees, ct.funding,
                    ct.gross_pnl, ct.net_pnl, ct.exit_reason, ct.risk_usd, ct.decision_id,
                    ct.is_win, ct.day
           ORDER BY ct.closed_at, ct.position_id""",
        mode,
    )
    return [
        ClosedTrade(
            symbol=r["symbol"], side=Side(r["side"]),
            entry_ms=dt_to_ms(r["opened_at"]), exit_ms=dt_to_ms(r["closed_at"]),
            entry_price=float(r["entry_price"]), exit_price=float(r["exit_price"] or 0.0),
            quantity=float(r["quantity"]), leverage=float(r["leverage"]),
            fees=float(r["fees"]), funding=float(r["funding"]),
            gross_pnl=float(r["gross_pnl"] or 0.0), net_pnl=float(r["net_pnl"]),
            exit_reason=r["exit_reason"] or "", risk_usd=None if r["risk_usd"] is None else float(r["risk_usd"]),
            decision_id=r["decision_id"], voters=tuple(r["voters"]),
        )
        for r in rows
    ]


async def record_drawdown(pool: asyncpg.Pool, mode: str, trades: list[ClosedTrade], initial_equity: float) -> float:
    """Max drawdown (percent) of the record: from the mark-to-market equity history, unrealised
    P&L included (the initial equity counts as the first peak); a record without any history
    falls back to the realised curve of its closed trades."""
    dd = await drawdown_since(pool, mode, start_peak=initial_equity)
    if dd.rows:
        return dd.max_pct
    return max_drawdown_pct([initial_equity] + [v for _, v in equity_curve(trades, [], initial_equity)])


async def load_equity(pool: asyncpg.Pool, mode: str) -> list[tuple[int, float]]:
    rows = await pool.fetch("SELECT at, equity FROM equity_snapshots WHERE mode = $1 ORDER BY at, id", mode)
    return [(dt_to_ms(r["at"]), float(r["equity"])) for r in rows]


def equity_curve(trades: list[ClosedTrade], equity: list[tuple[int, float]],
                 initial_equity: float) -> list[tuple[int, float]]:
    """The recorded equity snapshots, or (without any) the realised curve from closed trades."""
    if equity:
        return equity
    curve, value = [], initial_equity
    for t in trades:
        value += t.net_pnl
        curve.append((t.exit_ms, value))
    return curve


async def record_span(pool: asyncpg.Pool, mode: str) -> tuple[int | None, int | None]:
    """First and last event time of the record (positions, equity snapshots, decisions), in
    record time — so a replayed paper session counts its simulated span, a wall-clock one its
    real span."""
    row = await pool.fetchrow(
        """SELECT least((SELECT min(opened_at) FROM positions WHERE mode = $1),
                        (SELECT min(at) FROM equity_snapshots WHERE mode = $1),
                        (SELECT min(at) FROM decisions WHERE mode = $1)) AS first,
                  greatest((SELECT max(coalesce(closed_at, opened_at)) FROM positions WHERE mode = $1),
                           (SELECT max(at) FROM equity_snapshots WHERE mode = $1),
                           (SELECT max(at) FROM decisions WHERE mode = $1)) AS last""",
        mode,
    )
    if row is None or row["first"] is None:
        return None, None
    return dt_to_ms(row["first"]), dt_to_ms(row["last"])


async def load_gate_record(pool: asyncpg.Pool, settings: Settings, mode: str = "paper") -> GateRecord:
    trades = await load_trades(pool, mode)
    mdd = await record_drawdown(pool, mode, trades, settings.initial_capital)
    first, last = await record_span(pool, mode)
    alerts = await pool.fetch(
        "SELECT kind FROM alerts WHERE severity = 'critical' AND resolved_at IS NULL AND mode <> 'backtest' ORDER BY id"
    )
    return GateRecord(
        started_ms=first, now_ms=last if last is not None else 0,
        net_pnls=tuple(t.net_pnl for t in trades), max_drawdown_pct=mdd,
        open_critical_alerts=len(alerts), critical_alert_kinds=tuple(sorted({a["kind"] for a in alerts})),
    )


async def check_gate(pool: asyncpg.Pool, settings: Settings, mode: str = "paper") -> GateReport:
    """Evaluate the go-live gate on the `mode` record (paper by default)."""
    return evaluate_gate(await load_gate_record(pool, settings, mode), thresholds_from(settings))


def format_gate(report: GateReport) -> str:
    """Human-readable lines: one per criterion with value, threshold and PASS/FAIL."""
    lines = []
    for c in report.criteria:
        value = "n/a" if c.value is None else (f"{c.value:g}" if isinstance(c.value, float) else str(c.value))
        thr = "n/a" if c.threshold is None else (f"{c.threshold:g}" if isinstance(c.threshold, float)
                                                 else str(c.threshold))
        lines.append(f"{'PASS' if c.passed else 'FAIL'}  {c.name:<22} {value:>10} {c.comparison} {thr:<8} {c.detail}")
    lines.append("go-live gate: " + ("PASSED" if report.passed else
                                     "FAILED (" + ", ".join(c.name for c in report.failures) + ")"))
    return "\n".join(lines)


def gate_summary(report: GateReport) -> dict[str, Any]:
    return report.to_dict()
