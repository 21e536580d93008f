"""The pure consensus rule and the calibration math behind voter weights.

`merge_votes` turns the valid votes of one decision into a `Proposal`:

1. at least `min_voters` valid votes (abstentions count in neither numerator nor denominator);
2. the weighted share of the leading action ≥ `min_agreement` (a tie is no agreement);
3. the weighted mean confidence of the voters backing that action ≥ `min_confidence`;
4. otherwise HOLD, with the reason. LONG/SHORT parameters are weighted medians over the
   backing voters: stop-loss, each take-profit level, leverage.

Calibration: a voter's hit rate and Brier score of its stated confidence against closed-trade
outcomes, each shrunk towards a neutral prior, give a weight that is exactly 1.0 for a voter
with no record and stays within [`min_weight`, `max_weight`].
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from quorum.domain.models import Action, Proposal, Vote


@dataclass(frozen=True, slots=True)
class ConsensusRules:
    """Thresholds of the merge (MIN_VOTERS, MIN_AGREEMENT, MIN_AI_CONFIDENCE)."""

    min_voters: int = 1
    min_agreement: float = 0.66
    min_confidence: float = 0.65


def weighted_median(values: Sequence[float], weights: Sequence[float]) -> float | None:
    """Lower weighted median: the smallest value whose cumulative weight reaches half the total.

    Non-finite values and non-positive weights are ignored; None when nothing remains.
    """
    pairs = sorted(
        (v, w) for v, w in zip(values, weights, strict=True) if math.isfinite(v) and math.isfinite(w) and w > 0
    )
    if not pairs:
        return None
    total = sum(w for _, w in pairs)
    acc = 0.0
    for v, w in pairs:
        acc += w
        if acc >= total / 2 - 1e-12:
            return v
    return pairs[-1][0]  # pragma: no cover - unreachable with positive weights


def _hold(
    symbol: str,
    reason: str,
    price: float,
    snapshot_hash: str,
    time_ms: int,
    valid: int,
    abstentions: int,
    agreement: float,
    confidence: float,
    action: Action = Action.HOLD,
) -> Proposal:
    return Proposal(
        symbol=symbol,
        action=action,
        confidence=confidence,
        reference_price=price,
        stop_loss=None,
        take_profits=(),
        leverage=None,
        valid_votes=valid,
        abstentions=abstentions,
        agreement=agreement,
        reason=reason,
        snapshot_hash=snapshot_hash,
        time_ms=time_ms,
    )


def merge_votes(
    symbol: str,
    votes: Sequence[Vote],
    abstentions: int,
    rules: ConsensusRules,
    *,
    reference_price: float,
    snapshot_hash: str,
    time_ms: int,
    weights: Mapping[str, float] | None = None,
) -> Proposal:
    """Merge valid votes into one proposal (see module docstring). Votes for another symbol
    are a programming error and raise ValueError."""
    for v in votes:
        if v.symbol != symbol:
            raise ValueError(f"vote from {v.voter} is for {v.symbol}, not {symbol}")
    w_of = {v.voter: max(0.0, (weights or {}).get(v.voter, 1.0)) for v in votes}
    counted = [v for v in votes if w_of[v.voter] > 0]
    n = len(counted)
    if n < rules.min_voters:
        return _hold(symbol, f"only {n} valid vote(s); MIN_VOTERS={rules.min_voters}", reference_price,
                     snapshot_hash, time_ms, n, abstentions, 0.0, 0.0)
    total = sum(w_of[v.voter] for v in counted)
    share: dict[Action, float] = {}
    for v in counted:
        share[v.action] = share.get(v.action, 0.0) + w_of[v.voter] / total
    ranked = sorted(share.items(), key=lambda kv: kv[1], reverse=True)
    lead, agreement = ranked[0]
    backers = [v for v in counted if v.action is lead]
    bw = [w_of[v.voter] for v in backers]
    confidence = sum(v.confidence * w for v, w in zip(backers, bw, strict=True)) / sum(bw)
    if len(ranked) > 1 and math.isclose(ranked[1][1], agreement, abs_tol=1e-9):
        return _hold(symbol, f"tie between {ranked[0][0].value} and {ranked[1][0].value}", reference_price,
                     snapshot_hash, time_ms, n, abstentions, agreement, 0.0)
    if agreement < rules.min_agreement - 1e-12:
        return _hold(symbol, f"agreement {agreement:.2f} on {lead.value} below MIN_AGREEMENT={rules.min_agreement}",
                     reference_price, snapshot_hash, time_ms, n, abstentions, agreement, confidence)
    if lead is Action.HOLD:
        return _hold(symbol, "voters agree on HOLD", reference_price, snapshot_hash, time_ms, n, abstentions,
                     agreement, confidence)
    if confidence < rules.min_confidence - 1e-12:
        return _hold(symbol, f"confidence {confidence:.2f} on {lead.value} below MIN_AI_CONFIDENCE="
                     f"{rules.min_confidence}", reference_price, snapshot_hash, time_ms, n, abstentions,
                     agreement, confidence)
    if lead is Action.CLOSE:
        return _hold(symbol, "voters agree on CLOSE", reference_price, snapshot_hash, time_ms, n, abstentions,
                     agreement, confidence, action=Action.CLOSE)
    stop = weighted_median([v.stop_loss for v in backers if v.stop_loss is not None],
                           [w for v, w in zip(backers, bw, strict=True) if v.stop_loss is not None])
    if stop is None:
        return _hold(symbol, f"no backer of {lead.value} gave a stop-loss", reference_price, snapshot_hash,
                     time_ms, n, abstentions, agreement, confidence)
    tps: list[float] = []
    depth = max((len(v.take_profits) for v in backers), default=0)
    for k in range(depth):
        tp = weighted_median([v.take_profits[k] for v in backers if len(v.take_profits) > k],
                             [w for v, w in zip(backers, bw, strict=True) if len(v.take_profits) > k])
        if tp is not None:
            tps.append(tp)
    tps.sort(reverse=lead is Action.SHORT)
    lev = weighted_median([v.leverage for v in backers if v.leverage is not None],
                          [w for v, w in zip(backers, bw, strict=True) if v.leverage is not None])
    return Proposal(
        symbol=symbol,
        action=lead,
        confidence=confidence,
        reference_price=reference_price,
        stop_loss=stop,
        take_profits=tuple(tps),
        leverage=lev,
        valid_votes=n,
        abstentions=abstentions,
        agreement=agreement,
        reason=f"{len(backers)}/{n} voters back {lead.value} (weighted agreement {agreement:.2f}, "
        f"confidence {confidence:.2f})",
        snapshot_hash=snapshot_hash,
        time_ms=time_ms,
    )


# --- calibration --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Outcome:
    """One directional vote (LONG/SHORT) on a decision whose trade has closed.

    `hit` is True when the vote pointed the way the trade paid: it backed the traded side and
    the trade won, or it opposed the traded side and the trade lost.
    """

    voter: str
    confidence: float
    hit: bool


@dataclass(frozen=True, slots=True)
class VoterStats:
    voter: str
    n: int
    hit_rate: float  # shrunk towards the prior
    brier: float  # shrunk towards the prior
    weight: float


@dataclass(frozen=True, slots=True)
class CalibrationPrior:
    """Pseudo-observations a new voter starts with: `strength` votes at hit rate 0.5 and the
    Brier score of always saying 0.5 (0.25). With them a voter with no record has weight 1."""

    strength: float = 10.0
    hit_rate: float = 0.5
    brier: float = 0.25
    min_weight: float = 0.25
    max_weight: float = 2.0


def voter_stats(voter: str, outcomes: Sequence[Outcome], prior: CalibrationPrior = CalibrationPrior()) -> VoterStats:
    """Hit rate and Brier score with the prior, and the resulting weight.

    weight = (hit_rate / prior.hit_rate) × ((1 − brier) / (1 − prior.brier)), clamped.
    """
    n = len(outcomes)
    hits = sum(1 for o in outcomes if o.hit)
    brier_sum = sum((min(max(o.confidence, 0.0), 1.0) - (1.0 if o.hit else 0.0)) ** 2 for o in outcomes)
    hit_rate = (hits + prior.strength * prior.hit_rate) / (n + prior.strength)
    brier = (brier_sum + prior.strength * prior.brier) / (n + prior.strength)
    raw = (hit_rate / prior.hit_rate) * ((1.0 - brier) / (1.0 - prior.brier))
    weight = min(max(raw, prior.min_weight), prior.max_weight)
    return VoterStats(voter=voter, n=n, hit_rate=hit_rate, brier=brier, weight=weight)


def calibrate(outcomes: Iterable[Outcome], prior: CalibrationPrior = CalibrationPrior()) -> dict[str, VoterStats]:
    """Stats per voter from all outcomes. Voters absent here get weight 1.0 by default."""
    by_voter: dict[str, list[Outcome]] = {}
    for o in outcomes:
        by_voter.setdefault(o.voter, []).append(o)
    return {v: voter_stats(v, os, prior) for v, os in by_voter.items()}


def outcome_of(voter: str, vote_action: str, confidence: float, trade_side: str, trade_won: bool) -> Outcome | None:
    """The calibration outcome of one vote on a traded decision; None for HOLD/CLOSE votes."""
    action = vote_action.upper()
    if action not in ("LONG", "SHORT"):
        return None
    backed = action == trade_side.upper()
    return Outcome(voter=voter, confidence=confidence, hit=backed == trade_won)
