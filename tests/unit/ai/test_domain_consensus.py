"""The pure merge rule and the calibration math."""

from __future__ import annotations

import pytest

from quorum.domain.consensus import (
    CalibrationPrior,
    ConsensusRules,
    Outcome,
    calibrate,
    merge_votes,
    outcome_of,
    voter_stats,
    weighted_median,
)
from quorum.domain.models import Action, Vote

RULES = ConsensusRules(min_voters=2, min_agreement=0.66, min_confidence=0.6)


def v(voter: str, action: str = "LONG", conf: float = 0.8, stop: float | None = 98.0,
      tps: tuple[float, ...] = (104.0,), lev: float | None = 3.0) -> Vote:
    if action not in ("LONG", "SHORT"):
        stop, tps, lev = None, (), None
    return Vote(voter, "BTCUSDT", Action(action), conf, lev, stop, tps)


def merge(votes: list[Vote], abstentions: int = 0, weights: dict[str, float] | None = None,
          rules: ConsensusRules = RULES):
    return merge_votes("BTCUSDT", votes, abstentions, rules, reference_price=100.0, snapshot_hash="h",
                       time_ms=1, weights=weights)


def test_agreement_gives_a_proposal_with_median_parameters() -> None:
    p = merge([v("a", stop=97.0, tps=(103.0, 106.0), lev=2), v("b", stop=98.0, tps=(104.0,), lev=3),
               v("c", stop=99.0, tps=(105.0,), lev=10)])
    assert p.action is Action.LONG
    assert p.stop_loss == 98.0 and p.take_profits == (104.0, 106.0) and p.leverage == 3
    assert p.valid_votes == 3 and p.agreement == pytest.approx(1.0)


def test_disagreement_gives_hold_with_reason() -> None:
    p = merge([v("a", "LONG"), v("b", "SHORT", stop=102.0, tps=(96.0,)), v("c", "HOLD")])
    assert p.action is Action.HOLD
    assert "MIN_AGREEMENT" in p.reason or "tie" in p.reason
    assert p.stop_loss is None and p.leverage is None


def test_abstentions_are_excluded_from_both_sides_of_the_share() -> None:
    p = merge([v("a"), v("b")], abstentions=5)
    assert p.action is Action.LONG and p.agreement == pytest.approx(1.0) and p.abstentions == 5


def test_too_few_voters_is_hold() -> None:
    p = merge([v("a")], abstentions=2)
    assert p.action is Action.HOLD and "MIN_VOTERS=2" in p.reason


def test_low_confidence_is_hold() -> None:
    p = merge([v("a", conf=0.5), v("b", conf=0.55)])
    assert p.action is Action.HOLD and "MIN_AI_CONFIDENCE" in p.reason


def test_tie_is_hold() -> None:
    p = merge([v("a", "LONG"), v("b", "SHORT", stop=102.0, tps=(96.0,))],
              rules=ConsensusRules(2, 0.5, 0.6))
    assert p.action is Action.HOLD and "tie" in p.reason


def test_weights_change_the_winner() -> None:
    votes = [v("good", "SHORT", stop=102.0, tps=(95.0,)), v("bad1"), v("bad2")]
    assert merge(votes, rules=ConsensusRules(2, 0.6, 0.6)).action is Action.LONG
    p = merge(votes, weights={"good": 2.0, "bad1": 0.25, "bad2": 0.25}, rules=ConsensusRules(2, 0.6, 0.6))
    assert p.action is Action.SHORT and p.take_profits == (95.0,)


def test_hold_agreement_and_close() -> None:
    assert merge([v("a", "HOLD"), v("b", "HOLD")]).reason == "voters agree on HOLD"
    assert merge([v("a", "CLOSE"), v("b", "CLOSE")]).action is Action.CLOSE


def test_vote_for_another_symbol_is_rejected() -> None:
    with pytest.raises(ValueError, match="ETHUSDT"):
        merge([Vote("a", "ETHUSDT", Action.HOLD, 0.5)])


def test_weighted_median() -> None:
    assert weighted_median([1, 2, 3], [1, 1, 1]) == 2
    assert weighted_median([1, 2, 3], [1, 1, 5]) == 3
    assert weighted_median([1, 2], [1, 1]) == 1
    assert weighted_median([], []) is None
    assert weighted_median([float("nan"), 4.0], [1, 1]) == 4.0


def test_new_voter_is_neutral_and_record_moves_weight() -> None:
    assert voter_stats("x", []).weight == pytest.approx(1.0)
    good = [Outcome("g", 0.8, True)] * 40 + [Outcome("g", 0.6, False)] * 10
    bad = [Outcome("b", 0.9, False)] * 40 + [Outcome("b", 0.9, True)] * 10
    stats = calibrate(good + bad)
    assert stats["g"].weight > 1.2
    assert stats["b"].weight < 0.8
    assert CalibrationPrior().min_weight <= stats["b"].weight
    assert stats["g"].n == 50


def test_overconfident_voter_weighs_less_than_calibrated_one_with_same_hits() -> None:
    calibrated = [Outcome("c", 0.6, True)] * 6 + [Outcome("c", 0.6, False)] * 4
    overconfident = [Outcome("o", 0.99, True)] * 6 + [Outcome("o", 0.99, False)] * 4
    assert voter_stats("c", calibrated).weight > voter_stats("o", overconfident).weight


def test_outcome_of() -> None:
    assert outcome_of("a", "LONG", 0.7, "long", True) == Outcome("a", 0.7, True)
    assert outcome_of("a", "SHORT", 0.7, "long", True) == Outcome("a", 0.7, False)
    assert outcome_of("a", "SHORT", 0.7, "long", False) == Outcome("a", 0.7, True)
    assert outcome_of("a", "HOLD", 0.7, "long", True) is None
