"""The go-live gate (pure): does a paper record earn real money?

Criteria, each reported with its value, threshold and pass/fail:

1. `days`: at least `min_days` of paper trading (first record event → now).
2. `trades`: at least `min_trades` closed trades.
3. `win_rate_lower_bound`: the lower end of the 95 % Wilson interval of the win rate is at or
   above the break-even win rate implied by the record itself: with average win W and average
   loss L (both net of fees and funding, L as a positive number) a strategy breaks even at
   win rate L / (W + L). A record with no losses breaks even at 0, one with no wins at 1.
4. `profit_factor`: gross wins / gross losses ≥ `min_profit_factor` (no losses and at least one
   win counts as infinite).
5. `max_drawdown`: the record's max drawdown (percent of the equity peak) below the limit.
6. `critical_alerts`: no unresolved critical alert.

Everything fails on an empty record. The gate never rounds a failing value into a pass.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from quorum.domain.statistics import wilson_interval

DAY_MS = 86_400_000


@dataclass(frozen=True)
class GateThresholds:
    min_days: float = 28.0
    min_trades: int = 100
    min_profit_factor: float = 1.1
    max_drawdown_pct: float = 20.0


@dataclass(frozen=True)
class GateRecord:
    """What the gate looks at. `net_pnls` are closed trades' net P&L (fees and funding in)."""

    started_ms: int | None
    now_ms: int
    net_pnls: tuple[float, ...]
    max_drawdown_pct: float
    open_critical_alerts: int = 0
    critical_alert_kinds: tuple[str, ...] = field(default_factory=tuple)


@dataclass(frozen=True)
class GateCriterion:
    name: str
    value: float | int | None
    threshold: float | int | None
    comparison: str  # ">=", "<", "=="
    passed: bool
    detail: str


@dataclass(frozen=True)
class GateReport:
    passed: bool
    criteria: tuple[GateCriterion, ...]

    @property
    def failures(self) -> tuple[GateCriterion, ...]:
        return tuple(c for c in self.criteria if not c.passed)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (infinite values as null with the reason in `detail`)."""

        def clean(v: Any) -> Any:
            return None if isinstance(v, float) and not math.isfinite(v) else v

        return {
            "passed": self.passed,
            "criteria": [{k: clean(v) for k, v in asdict(c).items()} for c in self.criteria],
        }


def break_even_win_rate(net_pnls: Sequence[float]) -> float | None:
    """L / (W + L) from the average win W and average loss L (positive); None without trades."""
    wins = [p for p in net_pnls if p > 0]
    losses = [-p for p in net_pnls if p <= 0]
    if not net_pnls:
        return None
    if not losses:
        return 0.0
    if not wins:
        return 1.0
    avg_win = sum(wins) / len(wins)
    avg_loss = sum(losses) / len(losses)
    if avg_win + avg_loss == 0:
        return 1.0
    return avg_loss / (avg_win + avg_loss)


def _profit_factor(net_pnls: Sequence[float]) -> float | None:
    gross_win = sum(p for p in net_pnls if p > 0)
    gross_loss = -sum(p for p in net_pnls if p < 0)
    if gross_loss == 0:
        return math.inf if gross_win > 0 else None
    return gross_win / gross_loss


def evaluate_gate(record: GateRecord, thresholds: GateThresholds) -> GateReport:
    """Evaluate every criterion; the gate passes only when all pass."""
    criteria: list[GateCriterion] = []
    pnls = record.net_pnls
    n = len(pnls)

    days = 0.0 if record.started_ms is None else max(0.0, (record.now_ms - record.started_ms) / DAY_MS)
    criteria.append(GateCriterion(
        "days", round(days, 2), thresholds.min_days, ">=", days >= thresholds.min_days,
        "no paper record yet" if record.started_ms is None
        else f"{days:.1f} days of paper trading (need {thresholds.min_days:g})",
    ))
    criteria.append(GateCriterion(
        "trades", n, thresholds.min_trades, ">=", n >= thresholds.min_trades and n > 0,
        f"{n} closed trades (need {thresholds.min_trades})",
    ))

    wins = sum(1 for p in pnls if p > 0)
    low, high = wilson_interval(wins, n)
    be = break_even_win_rate(pnls)
    wr_ok = n > 0 and be is not None and low >= be
    criteria.append(GateCriterion(
        "win_rate_lower_bound", round(low, 4) if n else None, None if be is None else round(be, 4), ">=", wr_ok,
        "no closed trades" if n == 0 else
        f"win rate {wins}/{n} = {wins / n:.1%}, 95% interval [{low:.1%}, {high:.1%}]; "
        f"break-even win rate from avg win/loss after fees = {be:.1%}",
    ))

    pf = _profit_factor(pnls)
    pf_ok = pf is not None and pf >= thresholds.min_profit_factor
    pf_detail = ("no closed trades" if n == 0 else "no winning or losing trades" if pf is None
                 else "no losing trades" if math.isinf(pf) else f"profit factor {pf:.2f}")
    criteria.append(GateCriterion(
        "profit_factor", None if pf is None else (pf if math.isinf(pf) else round(pf, 4)),
        thresholds.min_profit_factor, ">=", pf_ok, pf_detail,
    ))

    dd = record.max_drawdown_pct
    dd_ok = n > 0 and dd < thresholds.max_drawdown_pct
    criteria.append(GateCriterion(
        "max_drawdown_pct", round(dd, 4), thresholds.max_drawdown_pct, "<", dd_ok,
        f"max drawdown {dd:.2f}% (limit {thresholds.max_drawdown_pct:g}%)"
        + ("" if n else "; no closed trades"),
    ))

    alerts = record.open_critical_alerts
    kinds = ", ".join(record.critical_alert_kinds)
    criteria.append(GateCriterion(
        "critical_alerts", alerts, 0, "==", alerts == 0,
        "no open critical alert" if alerts == 0 else f"{alerts} open critical alert(s): {kinds}",
    ))
    return GateReport(passed=all(c.passed for c in criteria), criteria=tuple(criteria))
