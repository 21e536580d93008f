"""Portfolio exposure limits and anti-churn rules (pure).

- max concurrent positions: one per CAPITAL_PER_POSITION of equity (at least one), capped by
  MAX_CONCURRENT_POSITIONS;
- one open position per symbol; blocked symbols;
- total notional cap (MAX_TOTAL_NOTIONAL_PCT of equity) — the new trade may be resized to fit;
- correlation clusters (`quorum.domain.clusters`: hourly returns of the last 30 days, per UTC
  day): symbols whose return correlation ≥ CORRELATION_THRESHOLD are linked (transitively); at
  most MAX_POSITIONS_PER_CLUSTER same-direction positions per cluster (reason
  `correlation_cluster_full:A+B`, naming the cluster);
- anti-churn: re-entry cool-down after closing a symbol, MAX_OPENS_PER_HOUR (the minimum hold
  time lives in `exits.consensus_close`, as it never applies to stops).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from quorum.domain.clusters import cluster_name, correlation_clusters
from quorum.domain.models import Side

HOUR_MS = 3_600_000
__all__ = ["ExposurePolicy", "ExposureState", "OpenExposure", "correlation_clusters", "exposure_check",
           "max_positions"]


@dataclass(frozen=True, slots=True)
class ExposurePolicy:
    max_concurrent_positions: int = 5
    capital_per_position: float = 100.0
    max_total_notional_pct: float = 400.0
    correlation_threshold: float = 0.8
    max_positions_per_cluster: int = 2
    reentry_cooldown_ms: int = 30 * 60_000
    max_opens_per_hour: int = 4
    blocked_symbols: frozenset[str] = frozenset()

    @classmethod
    def from_settings(cls, settings: Any) -> ExposurePolicy:
        return cls(
            max_concurrent_positions=int(settings.max_concurrent_positions),
            capital_per_position=float(settings.capital_per_position),
            max_total_notional_pct=float(settings.max_total_notional_pct),
            correlation_threshold=float(settings.correlation_threshold),
            max_positions_per_cluster=int(settings.max_positions_per_cluster),
            reentry_cooldown_ms=int(settings.reentry_cooldown_minutes) * 60_000,
            max_opens_per_hour=int(settings.max_opens_per_hour),
            blocked_symbols=frozenset(s.upper() for s in settings.blocked_symbols),
        )


@dataclass(frozen=True, slots=True)
class OpenExposure:
    symbol: str
    side: Side
    notional: float


@dataclass(frozen=True, slots=True)
class ExposureState:
    """What the exposure rules need to know about the account right now."""

    open_positions: tuple[OpenExposure, ...] = ()
    recent_open_ms: tuple[int, ...] = ()  # open times of positions opened recently (≥ last hour)
    last_exit_ms: Mapping[str, int] = field(default_factory=dict)  # symbol → last close time
    clusters: tuple[frozenset[str], ...] = ()  # correlation clusters in force (`domain.clusters`)


def max_positions(equity: float, policy: ExposurePolicy) -> int:
    """One position per CAPITAL_PER_POSITION of equity (≥ 1), capped by the configured maximum."""
    if not math.isfinite(equity) or equity <= 0:
        return 0
    by_capital = int(equity // policy.capital_per_position) if policy.capital_per_position > 0 else 1
    return max(1, min(policy.max_concurrent_positions, by_capital))


def exposure_check(symbol: str, side: Side, equity: float, now_ms: int, state: ExposureState,
                   policy: ExposurePolicy) -> tuple[tuple[str, ...], float]:
    """(blocking reason codes, notional still allowed for a new position under the total cap)."""
    reasons: list[str] = []
    sym = symbol.upper()
    open_positions = state.open_positions
    if sym in policy.blocked_symbols:
        reasons.append("symbol_blocked")
    if sym in [p.symbol for p in open_positions]:
        reasons.append("position_already_open")
    if len(open_positions) >= max_positions(equity, policy):
        reasons.append("max_concurrent_positions")
    last_exit = state.last_exit_ms.get(sym)
    if last_exit is not None and now_ms - last_exit < policy.reentry_cooldown_ms:
        reasons.append("reentry_cooldown")
    if len([t for t in state.recent_open_ms if now_ms - HOUR_MS < t <= now_ms]) >= policy.max_opens_per_hour:
        reasons.append("max_opens_per_hour")
    for cluster in state.clusters:
        if sym in cluster:
            same = sum(1 for p in open_positions if p.symbol in cluster and p.side is side)
            if same >= policy.max_positions_per_cluster:
                reasons.append("correlation_cluster_full:" + cluster_name(cluster))
    used = sum([abs(p.notional) for p in open_positions])
    room = max(0.0, equity * policy.max_total_notional_pct / 100.0 - used) if equity > 0 else 0.0
    return tuple(reasons), room

