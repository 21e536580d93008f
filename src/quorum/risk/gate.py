"""A paper/live record from Postgres (through `quorum.store.reports` and `quorum.store.equity`):
closed trades, equity curve, drawdown, span, open critical alerts.

Feeds `quorum.domain.gate.evaluate_gate` (`quorum readiness`, the live-start check:
`authorize_live_start`) and `quorum report` (through `quorum.domain.statistics`, the backtest's
own statistics code).
"""

from __future__ import annotations

from typing import Any

import asyncpg
import structlog

from quorum.config import Settings
from quorum.domain.gate import GateRecord, GateReport, GateThresholds, evaluate_gate
from quorum.domain.models import ClosedTrade
from quorum.domain.statistics import max_drawdown_pct
from quorum.store.equity import EquityRepository, drawdown_since
from quorum.store.positions import dt_to_ms
from quorum.store.reports import closed_trades, open_critical_alert_kinds, record_span
from quorum.store.state import OverrideRepository

log = structlog.get_logger(__name__)


def thresholds_from(settings: Settings) -> GateThresholds:
    return GateThresholds(
        min_days=float(settings.gate_min_days),
        min_trades=settings.gate_min_trades,
        min_profit_factor=settings.gate_min_profit_factor,
        max_drawdown_pct=settings.gate_max_drawdown_pct,
    )


async def record_drawdown(pool: asyncpg.Pool, mode: str, trades: list[ClosedTrade], initial_equity: float) -> float:
    """Max drawdown (percent) of the record: from the mark-to-market equity history, unrealised
    P&L included (the initial equity counts as the first peak); a record without any history
    falls back to the realised curve of its closed trades."""
    dd = await drawdown_since(pool, mode, start_peak=initial_equity)
    if dd.rows:
        return dd.max_pct
    return max_drawdown_pct([initial_equity] + [v for _, v in equity_curve(trades, [], initial_equity)])


async def load_equity(pool: asyncpg.Pool, mode: str) -> list[tuple[int, float]]:
    """The recorded equity history of `mode` as (time ms, equity), oldest first."""
    return [(dt_to_ms(at), equity) for at, equity in await EquityRepository(pool, mode).series()]


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


async def load_gate_record(pool: asyncpg.Pool, settings: Settings, mode: str = "paper") -> GateRecord:
    trades = await closed_trades(pool, mode)
    mdd = await record_drawdown(pool, mode, trades, settings.initial_capital)
    first, last = await record_span(pool, mode)
    alerts = await open_critical_alert_kinds(pool)
    return GateRecord(
        started_ms=first, now_ms=last if last is not None else 0,
        net_pnls=tuple(t.net_pnl for t in trades), max_drawdown_pct=mdd,
        open_critical_alerts=len(alerts), critical_alert_kinds=tuple(sorted(set(alerts))),
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


class GateRefused(Exception):
    """Live trading refused: the gate failed and no override was given."""


async def authorize_live_start(pool: asyncpg.Pool, settings: Settings, *, override: bool,
                               who: str | None, why: str | None) -> tuple[GateReport, dict[str, Any] | None]:
    """Gate check for TRADING_MODE=live. Returns (report, override record or None); raises
    `GateRefused` naming the failing criteria when the gate fails without a complete override."""
    report = await check_gate(pool, settings, "paper")
    if report.passed:
        return report, None
    if not override:
        failing = ", ".join(c.name for c in report.failures)
        raise GateRefused(
            f"TRADING_MODE=live refuses to start: the go-live gate fails ({failing}).\n{format_gate(report)}\n"
            "Keep paper trading, or start with --override-gate --who NAME --why TEXT (recorded).")
    if not (who and who.strip()) or not (why and why.strip()):
        raise GateRefused("--override-gate needs both --who NAME and --why TEXT (they are recorded)")
    oid = await OverrideRepository(pool).record(who.strip(), why.strip(), report.to_dict())
    row = await OverrideRepository(pool).brief(oid)
    assert row is not None
    record = {"id": row["id"], "who": row["who"], "why": row["why"], "at": row["at"].isoformat(),
              "failing": [c.name for c in report.failures]}
    log.warning("gate.override", who=record["who"], failing=record["failing"])
    return report, record
