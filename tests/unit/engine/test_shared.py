"""The engine's shared rules: the rules-analyst proposal equals the consensus merge of its vote."""

from __future__ import annotations

import math

from hypothesis import given, settings
from hypothesis import strategies as st

from quorum.domain.consensus import ConsensusRules, merge_votes
from quorum.domain.models import Action, Proposal, Side, Vote
from quorum.engine.shared import rules_proposal, wants_close


@settings(max_examples=300, deadline=None)
@given(code=st.sampled_from([-1, 0, 1]), conf=st.floats(0, 1), price=st.floats(1, 1e5),
       stop_off=st.floats(0.001, 0.2), tp_off=st.floats(0.001, 0.5), min_conf=st.floats(0, 1),
       min_voters=st.integers(1, 3), min_agreement=st.floats(0.1, 1))
def test_rules_proposal_equals_merge_votes(code: int, conf: float, price: float, stop_off: float, tp_off: float,
                                           min_conf: float, min_voters: int, min_agreement: float) -> None:
    rules = ConsensusRules(min_voters, min_agreement, min_conf)
    stop = price * (1 - code * stop_off) if code else math.nan
    tp = price * (1 + code * tp_off) if code else math.nan
    got = rules_proposal("BTCUSDT", code, conf, stop, tp, price, 123, rules)
    action = {1: Action.LONG, -1: Action.SHORT, 0: Action.HOLD}[code]
    vote = (Vote("rules", "BTCUSDT", action, conf, stop_loss=stop, take_profits=(tp,)) if code
            else Vote("rules", "BTCUSDT", Action.HOLD, 0.0))
    want = merge_votes("BTCUSDT", [vote], 0, rules, reference_price=price, snapshot_hash="", time_ms=123)
    assert got == want


def test_wants_close() -> None:
    p = Proposal("X", Action.SHORT, 0.8, 1.0, 1.1, (0.9,), None, 1, 0, 1.0, "", "", 0)
    assert wants_close(p, Side.LONG) and not wants_close(p, Side.SHORT)
    c = Proposal("X", Action.CLOSE, 0.8, 1.0, None, (), None, 1, 0, 1.0, "", "", 0)
    assert wants_close(c, Side.SHORT)
    h = Proposal("X", Action.HOLD, 0.0, 1.0, None, (), None, 1, 0, 1.0, "", "", 0)
    assert not wants_close(h, Side.LONG)
