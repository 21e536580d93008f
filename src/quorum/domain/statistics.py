"""Honest trading statistics from closed trades and an equity curve (pure, no I/O).

Used by the backtester's `summary.json` and by `quorum report` for a paper/live record, so both
print the same figures computed the same way:

- every win rate comes with its sample size and a 95 % Wilson score interval;
- P&L figures are net of fees and funding (`ClosedTrade.net_pnl`);
- Sharpe, Sortino and Calmar come from DAILY equity returns (last equity value of each UTC
  day), annualised with 365 days (crypto trades every day).

Undefined figures (profit factor with no losses, Sharpe with fewer than two days, ...) are
`None`, never a made-up number; JSON writers print them as null.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

from quorum.domain.models import ClosedTrade

DAY_MS = 86_400_000
TRADING_DAYS_PER_YEAR = 365.0
BREAKDOWN_KEYS = ("symbol", "side", "hour", "exit_reason", "voter")
# Every key `breakdown` accepts. "day" (UTC date of the exit) is left out of BREAKDOWN_KEYS, which
# lists the backtest summary's tables: a long backtest would get one row per day there.
GROUP_KEYS = (*BREAKDOWN_KEYS, "day")


def wilson_interval(wins: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """Wilson score interval for a binomial proportion; (0.0, 1.0) when n == 0."""
    if n < 0 or wins < 0 or wins > n:
        raise ValueError(f"wilson_interval needs 0 <= wins <= n, got wins={wins}, n={n}")
    if n == 0:
        return (0.0, 1.0)
    p = wins / n
    z2 = z * z
    denom = 1.0 + z2 / n
    centre = (p + z2 / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n)) / denom
    low = 0.0 if wins == 0 else max(0.0, centre - half)
    high = 1.0 if wins == n else min(1.0, centre + half)
    return (min(low, p), max(high, p))


def _profit_factor(pnls: Sequence[float]) -> float | None:
    gross_win = sum(p for p in pnls if p > 0)
    gross_loss = -sum(p for p in pnls if p < 0)
    if gross_loss == 0:
        return None
    return gross_win / gross_loss


def _trade_figures(trades: Sequence[ClosedTrade]) -> dict[str, Any]:
    pnls = [t.net_pnl for t in trades]
    n = len(pnls)
    wins = sum(1 for p in pnls if p > 0)
    losses = sum(1 for p in pnls if p < 0)
    win_pnls = [p for p in pnls if p > 0]
    loss_pnls = [p for p in pnls if p < 0]
    rs = [r for r in (t.r_multiple for t in trades) if r is not None]
    low, high = wilson_interval(wins, n)
    return {
        "trades": n,
        "wins": wins,
        "losses": losses,
        "win_rate": wins / n if n else None,
        "win_rate_ci95": [low, high],
        "profit_factor": _profit_factor(pnls),
        "expectancy_usd": sum(pnls) / n if n else None,
        "expectancy_r": sum(rs) / len(rs) if rs else None,
        "avg_win_usd": sum(win_pnls) / len(win_pnls) if win_pnls else None,
        "avg_loss_usd": sum(loss_pnls) / len(loss_pnls) if loss_pnls else None,
        "net_pnl": sum(pnls),
    }


def daily_equity(equity: Sequence[tuple[int, float]], initial_equity: float) -> list[tuple[int, float]]:
    """Last equity value of each UTC day (day start ms, equity), preceded by the initial equity
    on the day before the first point, so the first day's return is measured from the start."""
    if not equity:
        return []
    points = sorted(equity, key=lambda p: p[0])
    out: list[tuple[int, float]] = [((points[0][0] // DAY_MS - 1) * DAY_MS, initial_equity)]
    for t, v in points:
        day = (t // DAY_MS) * DAY_MS
        if out and out[-1][0] == day:
            out[-1] = (day, v)
        else:
            out.append((day, v))
    return out


def _daily_returns(daily: Sequence[tuple[int, float]]) -> list[float]:
    rets: list[float] = []
    for (_, prev), (_, cur) in itertools.pairwise(daily):
        rets.append(cur / prev - 1.0 if prev > 0 else 0.0)
    return rets


def max_drawdown_pct(values: Sequence[float]) -> float:
    """Largest peak-to-trough fall in percent of the peak (0.0 for an empty or rising curve)."""
    peak = -math.inf
    worst = 0.0
    for v in values:
        peak = max(peak, v)
        if peak > 0:
            worst = max(worst, (peak - v) / peak * 100.0)
    return worst


def _risk_ratios(
    equity: Sequence[tuple[int, float]], initial_equity: float, final_equity: float, mdd_pct: float
) -> dict[str, float | None]:
    daily = daily_equity(equity, initial_equity)
    rets = _daily_returns(daily)
    sharpe = sortino = calmar = None
    if len(rets) >= 2:
        mean = sum(rets) / len(rets)
        var = sum((r - mean) ** 2 for r in rets) / (len(rets) - 1)
        sd = math.sqrt(var)
        if sd > 0:
            sharpe = mean / sd * math.sqrt(TRADING_DAYS_PER_YEAR)
        downside = [min(r, 0.0) for r in rets]
        dd = math.sqrt(sum(d * d for d in downside) / len(rets))
        if dd > 0:
            sortino = mean / dd * math.sqrt(TRADING_DAYS_PER_YEAR)
    if len(rets) >= 1 and mdd_pct > 0 and initial_equity > 0 and final_equity > 0:
        years = len(rets) / TRADING_DAYS_PER_YEAR
        cagr = (final_equity / initial_equity) ** (1.0 / years) - 1.0
        calmar = cagr / (mdd_pct / 100.0)
    return {"sharpe": sharpe, "sortino": sortino, "calmar": calmar, "days": float(len(rets))}


def compute_stats(
    trades: Sequence[ClosedTrade], equity: Sequence[tuple[int, float]], initial_equity: float,
    max_drawdown: float | None = None,
) -> dict[str, Any]:
    """Every summary figure that comes from trades and the equity curve.

    `equity` is a sequence of (time_ms, equity) points (any frequency; mark-to-market or
    realised). `final_equity` is the last equity point, or initial + Σ net P&L when there is no
    curve. Keys: trades, wins, losses, win_rate, win_rate_ci95, profit_factor, expectancy_usd,
    expectancy_r, avg_win_usd, avg_loss_usd, max_drawdown_pct, sharpe, sortino, calmar,
    total_return_pct, initial_equity, final_equity, fees_paid, funding_paid, net_pnl,
    worst_trade_usd, best_trade_usd, days. `max_drawdown` (percent): the drawdown measured on a
    fuller history than `equity` (a paper record's compacted hours keep their lows and highs).
    """
    out = _trade_figures(trades)
    points = sorted(equity, key=lambda p: p[0])
    final = points[-1][1] if points else initial_equity + out["net_pnl"]
    mdd = max_drawdown if max_drawdown is not None else max_drawdown_pct([initial_equity] + [v for _, v in points])
    out.update(_risk_ratios(points, initial_equity, final, mdd))
    out.update(
        {
            "max_drawdown_pct": mdd,
            "total_return_pct": (final / initial_equity - 1.0) * 100.0 if initial_equity > 0 else None,
            "initial_equity": initial_equity,
            "final_equity": final,
            "fees_paid": sum(t.fees for t in trades),
            "funding_paid": sum(t.funding for t in trades),
            "worst_trade_usd": min((t.net_pnl for t in trades), default=None),
            "best_trade_usd": max((t.net_pnl for t in trades), default=None),
        }
    )
    return out


def _hour(t: ClosedTrade) -> list[str]:
    return [f"{datetime.fromtimestamp(t.entry_ms / 1000, tz=UTC).hour:02d}"]


def _day(t: ClosedTrade) -> list[str]:
    return [datetime.fromtimestamp(t.exit_ms / 1000, tz=UTC).strftime("%Y-%m-%d")]


_KEYS: dict[str, Callable[[ClosedTrade], list[str]]] = {
    "symbol": lambda t: [t.symbol],
    "side": lambda t: [str(t.side.value)],
    "hour": _hour,
    "exit_reason": lambda t: [t.exit_reason],
    "voter": lambda t: list(t.voters) if t.voters else ["(none)"],
    "day": _day,
}


def breakdown(trades: Sequence[ClosedTrade], key: str) -> dict[str, dict[str, Any]]:
    """Group trades by `key` (symbol, side, hour of entry UTC, exit_reason, voter, day = UTC date
    of the exit as "YYYY-MM-DD") and give each group n, wins, losses, win_rate, win_rate_ci95,
    profit_factor, expectancy (USD), expectancy_r and net_pnl. A trade counts once for every
    voter that backed it."""
    if key not in _KEYS:
        raise ValueError(f"unknown breakdown key {key!r}; allowed: {', '.join(GROUP_KEYS)}")
    groups: dict[str, list[ClosedTrade]] = {}
    for t in trades:
        for g in _KEYS[key](t):
            groups.setdefault(g, []).append(t)
    out: dict[str, dict[str, Any]] = {}
    for g in sorted(groups):
        f = _trade_figures(groups[g])
        out[g] = {
            "n": f["trades"],
            "wins": f["wins"],
            "losses": f["losses"],
            "win_rate": f["win_rate"],
            "win_rate_ci95": f["win_rate_ci95"],
            "profit_factor": f["profit_factor"],
            "expectancy": f["expectancy_usd"],
            "expectancy_r": f["expectancy_r"],
            "net_pnl": f["net_pnl"],
        }
    return out


def all_breakdowns(trades: Sequence[ClosedTrade]) -> dict[str, dict[str, dict[str, Any]]]:
    """`breakdown` for every key in BREAKDOWN_KEYS."""
    return {k: breakdown(trades, k) for k in BREAKDOWN_KEYS}


def monthly_returns(equity: Sequence[tuple[int, float]], initial_equity: float) -> dict[str, float]:
    """Return in percent per calendar month ('YYYY-MM', UTC), from month-end equity values; the
    first month's from `initial_equity`. Only months holding an equity point appear.

    A point is the equity at its instant, the end of what came before it: one stamped exactly at
    00:00 on the 1st (a bar closing at midnight) closes the previous month, so a record ending at
    a month boundary gets no extra month."""
    out: dict[str, float] = {}
    prev = initial_equity
    last: dict[str, float] = {}
    key, month_end = "", -1  # the month of the points being read, and its last instant + 1 ms
    for t, v in sorted(equity, key=lambda p: p[0]):
        if t > month_end or t <= month_end - 31 * 86_400_000:  # a point in another month: find which
            d = datetime.fromtimestamp((t - 1) / 1000, tz=UTC)
            key = f"{d.year:04d}-{d.month:02d}"
            nxt = datetime(d.year + d.month // 12, d.month % 12 + 1, 1, tzinfo=UTC)
            month_end = int(nxt.timestamp() * 1000)
        last[key] = v
    for month in sorted(last):
        v = last[month]
        out[month] = (v / prev - 1.0) * 100.0 if prev > 0 else 0.0
        prev = v
    return out
