"""Rules of the trading loop shared by the event-driven `Engine` and the fast backtester, so both
make the same decision from the same facts.

The order of things at every execution-bar close T (bar k closed, bar k+1 opens at T):

A. the venue sees bar k (paper: funding due by its open, then stop / take-profit /
   liquidation triggers on its range — `PaperExchange.on_bar`);
B. the venue's price becomes bar k+1's OPEN (the price at time T — known at T, no lookahead);
C. every open position is synced with the venue (closed by a trigger → trade recorded, breakers
   told) and stepped through bar k by `exits.step_bar` (partials, trailing, break-even, time
   stop); its intents execute at once at the venue price (= bar k+1's open);
D. if T closes a decision-timeframe bar: snapshot → consensus → (position open: opposite or
   CLOSE proposal → consensus close) / (flat: risk verdict → market entry + protective stop +
   take-profit), symbols in sorted order. Decisions at T therefore fill at the next bar's open.

Breakers see the mark-to-market equity right before each entry is evaluated and every closed
trade when it is recorded.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from quorum.config import Settings, timeframe_seconds
from quorum.domain import breakers as brk
from quorum.domain.consensus import ConsensusRules, merge_votes
from quorum.domain.exits import ExitPolicy
from quorum.domain.exposure import ExposureState, OpenExposure
from quorum.domain.fills import FillModel
from quorum.domain.models import Action, Bracket, Proposal, Regime, Side, SymbolFilters, Vote
from quorum.domain.risk import RiskContext, RiskPolicy, TrackRecord
from quorum.domain.rules import RULES_VOTER

HOUR_MS = 3_600_000
ACTION_OF_CODE = {1: Action.LONG, -1: Action.SHORT, 0: Action.HOLD}


@dataclass(frozen=True)
class LoopConfig:
    """Everything the loop needs from the settings, built once."""

    exec_tf_ms: int
    decision_tf_ms: int
    exit_policy: ExitPolicy
    risk_policy: RiskPolicy
    consensus: ConsensusRules
    fill_model: FillModel
    initial_equity: float
    funding_rate: float
    funding_interval_ms: int = 8 * HOUR_MS

    @classmethod
    def from_settings(cls, settings: Settings, initial_equity: float | None = None) -> LoopConfig:
        return cls(
            exec_tf_ms=timeframe_seconds(settings.execution_timeframe) * 1000,
            decision_tf_ms=timeframe_seconds(settings.decision_timeframe) * 1000,
            exit_policy=ExitPolicy.from_settings(settings),
            risk_policy=RiskPolicy.from_settings(settings),
            consensus=ConsensusRules(settings.min_voters, settings.min_agreement, settings.min_ai_confidence),
            fill_model=FillModel.from_pct(settings.taker_fee_pct, settings.maker_fee_pct,
                                          settings.slippage_spread_bps, settings.slippage_impact_bps_per_100k),
            initial_equity=float(initial_equity if initial_equity is not None else settings.initial_capital),
            funding_rate=settings.paper_funding_rate,
        )


def rules_proposal(symbol: str, code: int, confidence: float, stop: float, take_profit: float, price: float,
                   time_ms: int, rules: ConsensusRules, snapshot_hash: str = "") -> Proposal:
    """The consensus of the rules analyst alone for one decision, from one row of
    `rules_signals`: exactly what `merge_votes` gives for that single vote (tested), built
    directly on the hot path of the backtester (LONG/SHORT rows)."""
    action = ACTION_OF_CODE[int(code)]
    if action is not Action.HOLD and rules.min_voters <= 1 and rules.min_agreement <= 1.0 + 1e-12 \
            and confidence >= rules.min_confidence - 1e-12 and stop == stop and take_profit == take_profit:
        return Proposal(
            symbol=symbol, action=action, confidence=float(confidence), reference_price=price,
            stop_loss=float(stop), take_profits=(float(take_profit),), leverage=None, valid_votes=1,
            abstentions=0, agreement=1.0,
            reason=f"1/1 voters back {action.value} (weighted agreement 1.00, confidence {confidence:.2f})",
            snapshot_hash=snapshot_hash, time_ms=time_ms)
    return _merged_rules_proposal(symbol, action, confidence, stop, take_profit, price, time_ms, rules, snapshot_hash)


def _merged_rules_proposal(symbol: str, action: Action, confidence: float, stop: float, take_profit: float,
                           price: float, time_ms: int, rules: ConsensusRules, snapshot_hash: str = "") -> Proposal:
    if action is Action.HOLD:
        vote = Vote(voter=RULES_VOTER, symbol=symbol, action=Action.HOLD, confidence=0.0)
    else:
        vote = Vote(voter=RULES_VOTER, symbol=symbol, action=action, confidence=float(confidence),
                    stop_loss=float(stop), take_profits=(float(take_profit),))
    return merge_votes(symbol, [vote], 0, rules, reference_price=price, snapshot_hash=snapshot_hash, time_ms=time_ms)


def wants_close(proposal: Proposal, side: Side) -> bool:
    """A proposal that ends an open position: CLOSE, or the opposite direction."""
    return proposal.action is Action.CLOSE or (proposal.action.side is not None and proposal.action.side is not side)


@dataclass(frozen=True)
class OpenPositionFact:
    symbol: str
    side: Side
    quantity: float
    mark_price: float


def exposure_state(open_positions: Iterable[OpenPositionFact], recent_open_ms: Sequence[int],
                   last_exit_ms: Mapping[str, int], now_ms: int,
                   clusters: tuple[frozenset[str], ...] = ()) -> ExposureState:
    return ExposureState(
        open_positions=tuple(OpenExposure(p.symbol, p.side, p.quantity * p.mark_price) for p in open_positions),
        recent_open_ms=tuple(t for t in recent_open_ms if now_ms - HOUR_MS < t <= now_ms),
        last_exit_ms=dict(last_exit_ms),
        clusters=clusters,
    )


def risk_context(*, equity: float, available: float, now_ms: int, brackets: Sequence[Bracket],
                 filters: SymbolFilters | None, atr: float | None, atr_pct_percentile: float | None,
                 regime: Regime, funding_rate: float | None, exposure: ExposureState,
                 breakers: brk.BreakerBook, policy: RiskPolicy, record: TrackRecord | None = None) -> RiskContext:
    return RiskContext(equity=equity, now_ms=now_ms, brackets=tuple(brackets), available_balance=available,
                       filters=filters, atr=atr, atr_pct_percentile=atr_pct_percentile, regime=regime,
                       funding_rate=funding_rate, exposure=exposure, breakers=breakers, record=record,
                       policy=policy)


def finite_or_none(x: Any) -> float | None:
    try:
        v = float(x)
    except (TypeError, ValueError):
        return None
    return v if v == v and abs(v) != float("inf") else None


@dataclass
class EngineStats:
    """What the engine counted (`Engine.stats`, returned by `Engine.run`)."""

    steps: int = 0
    cycles: int = 0
    cycles_skipped: int = 0
    decisions: int = 0
    entries: int = 0
    closes: int = 0
    errors: int = 0
    catch_up_bars: int = 0
    trades: list[dict[str, Any]] = field(default_factory=list)
