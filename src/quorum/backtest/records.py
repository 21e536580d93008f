"""What the fast backtester keeps per open position and returns per run."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from quorum.backtest.venue import BacktestVenue
from quorum.domain.models import ClosedTrade, PositionState
from quorum.domain.rules import RULES_VOTER


@dataclass
class Book:
    """An open position as the engine tracks it, with its cost accumulators."""

    state: PositionState
    symbol_idx: int
    processed: int  # last execution bar index stepped (or the bar before the entry)
    fees: float
    risk_usd: float
    exits: list[tuple[float, float]] = field(default_factory=list)  # (qty, price)
    funding_from: int = 0  # index into venue.funding_payments where this position's began
    voters: tuple[str, ...] = (RULES_VOTER,)
    version: int = 0
    event_bar: int = -1  # the bar of the scheduled event (other scheduled bars only settle funding)


@dataclass
class RunResult:
    trades: list[ClosedTrade]
    decisions: list[dict[str, Any]]
    fills: list[Any]
    venue: BacktestVenue
    breaker_events: list[dict[str, Any]]
    segments: list[tuple[str, int, float, float, int, int]]  # symbol, sign, qty, entry, from, to
    bars_processed: int
    events: int


