"""When the breakers stopped new entries during a backtest, told plainly.

- `halts(events, start, end)`: one entry per trip of a breaker that blocks entries on every
  symbol (drawdown, daily_loss, loss_streak): breaker, symbol (None: all symbols), from, to (None:
  until the end of the run), reason, simulated_reset. A timed trip ends at its end time (when
  entries are allowed again); a drawdown trip ends only with a reset — in a backtest, only a
  simulated operator reset (`--breaker-reset-after`). Per-symbol cool-downs are not halts (they
  are counted in `breaker_trip_counts`).
- `active_fraction`: the share of [effective start, end) in which no such breaker blocked new
  entries (overlapping halts count once).
- `max_drawdown_between_resets`: the drawdown with its peak re-based at each simulated reset,
  as an operator's reset re-bases the breaker's peak.
- `statement`: the sentence the summary line and the report start with.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from quorum.backtest.fast import SIMULATED_OPERATOR
from quorum.domain.statistics import max_drawdown_pct


def _iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def halts(events: Sequence[dict[str, Any]], start_ms: int, end_ms: int) -> list[dict[str, Any]]:
    """The global halts of a run from its breaker events (see the module docstring)."""
    out: list[dict[str, Any]] = []
    open_: dict[str, dict[str, Any]] = {}
    for e in events:
        if e.get("symbol") is not None:
            continue
        if e["event"] == "trip":
            h = {"breaker": e["breaker"], "symbol": None, "from_ms": int(e["at_ms"]), "to_ms": e.get("until_ms"),
                 "reason": e["reason"], "simulated_reset": False}
            out.append(h)
            if h["to_ms"] is None:
                open_[e["breaker"]] = h
        elif e["event"] == "reset" and e["breaker"] in open_:
            h = open_.pop(e["breaker"])
            h["to_ms"] = int(e["at_ms"])
            h["simulated_reset"] = e.get("actor") == SIMULATED_OPERATOR
    for h in out:
        h["from_ms"] = max(h["from_ms"], start_ms)
        if h["to_ms"] is not None and h["to_ms"] >= end_ms:
            h["to_ms"] = None  # still blocking at the end of the run
        h["from"] = _iso(h["from_ms"])
        h["to"] = None if h["to_ms"] is None else _iso(h["to_ms"])
    return sorted(out, key=lambda h: h["from_ms"])


def active_fraction(hs: Sequence[dict[str, Any]], start_ms: int, end_ms: int) -> float:
    """Share of [start, end) in which no global breaker blocked new entries."""
    span = end_ms - start_ms
    if span <= 0:
        return 1.0
    blocked, cur_a, cur_b = 0, None, None
    for a, b in sorted((max(h["from_ms"], start_ms), end_ms if h["to_ms"] is None else min(h["to_ms"], end_ms))
                       for h in hs):
        if b <= a:
            continue
        if cur_b is None or a > cur_b:
            if cur_a is not None and cur_b is not None:
                blocked += cur_b - cur_a
            cur_a, cur_b = a, b
        else:
            cur_b = max(cur_b, b)
    if cur_a is not None and cur_b is not None:
        blocked += cur_b - cur_a
    return 1.0 - blocked / span


def max_drawdown_between_resets(equity: Sequence[tuple[int, float]], initial: float, resets: Sequence[int]) -> float:
    """The largest drawdown (percent) with the peak re-based at each reset time (the first
    segment starts from the initial equity, like `max_drawdown_pct` over the whole run)."""
    worst, seg, bounds, i = 0.0, [initial], sorted(set(resets)), 0
    for t, v in equity:
        while i < len(bounds) and t >= bounds[i]:
            worst, seg, i = max(worst, max_drawdown_pct(seg)), [], i + 1
        seg.append(v)
    return max(worst, max_drawdown_pct(seg)) if seg else worst


def statement(hs: Sequence[dict[str, Any]], fraction: float, start_ms: int, end_ms: int,
              resets: dict[str, Any] | None = None) -> str | None:
    """'HALTED: drawdown breaker stopped new entries 2025-01-21 → end (95 % of the period); ...'
    (None when nothing halted entries)."""
    if not hs:
        return None
    parts = []
    lasting = next((h for h in hs if h["to_ms"] is None and h["breaker"] == "drawdown"), None) or \
        next((h for h in hs if h["to_ms"] is None), None)
    if lasting is not None:
        share = (end_ms - lasting["from_ms"]) / max(1, end_ms - start_ms) * 100.0
        parts.append(f"HALTED: {lasting['breaker'].replace('_', ' ')} breaker stopped new entries "
                     f"{lasting['from'][:10]} → end ({share:.0f} % of the period)")
    counts: dict[str, int] = {}
    for h in hs:
        counts[h["breaker"]] = counts.get(h["breaker"], 0) + 1
    listed = ", ".join(f"{k} {n}" for k, n in sorted(counts.items(), key=lambda kv: -kv[1]))
    label = f" with simulated operator resets after {resets['after']} ({resets['count']} resets)" if resets else ""
    parts.append(f"new entries allowed {fraction * 100:.1f} % of the period{label} (halts: {listed})")
    return "; ".join(parts)


__all__ = ["active_fraction", "halts", "max_drawdown_between_resets", "statement"]
