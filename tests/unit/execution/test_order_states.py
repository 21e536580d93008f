"""The order state machine and deterministic client order ids."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from quorum.domain.models import OrderState as S
from quorum.domain.orders import (
    CLIENT_ID_RE,
    InvalidTransition,
    OrderStatus,
    apply_fill,
    client_order_id,
    parse_client_order_id,
    transition,
    venue_state,
)


def test_happy_path_and_every_step_allowed():
    o = OrderStatus("c1", 1.0)
    o = transition(o, S.SUBMITTED)
    o = transition(o, S.ACCEPTED)
    o = apply_fill(o, 0.4, 100.0)
    assert o.state is S.PARTIALLY_FILLED and o.remaining == pytest.approx(0.6)
    o = apply_fill(o, 0.6, 110.0)
    assert o.state is S.FILLED and o.average_price == pytest.approx(106.0)


def test_final_states_refuse_changes():
    filled = apply_fill(OrderStatus("c", 1.0), 1.0, 10.0)
    with pytest.raises(InvalidTransition):
        transition(filled, S.CANCELLED)
    rejected = transition(OrderStatus("c", 1.0), S.REJECTED)
    with pytest.raises(InvalidTransition):
        apply_fill(rejected, 1.0, 10.0)
    with pytest.raises(InvalidTransition):
        transition(rejected, S.ACCEPTED)


def test_fill_after_cancel_is_kept():
    o = transition(transition(OrderStatus("c", 1.0), S.ACCEPTED), S.CANCELLED)
    o = apply_fill(o, 0.5, 100.0)
    assert o.state is S.CANCELLED and o.filled_quantity == pytest.approx(0.5)
    o = apply_fill(o, 0.5, 100.0)
    assert o.state is S.FILLED


def test_venue_snapshot_never_loses_known_fills():
    o = apply_fill(transition(OrderStatus("c", 1.0), S.ACCEPTED), 0.5, 100.0)
    stale = venue_state(o, S.ACCEPTED, 0.0, None)
    assert stale.filled_quantity == pytest.approx(0.5) and stale.state is S.PARTIALLY_FILLED
    done = venue_state(o, S.FILLED, 1.0, 101.0)
    assert done.state is S.FILLED
    assert venue_state(done, S.ACCEPTED, 1.0, 101.0).state is S.FILLED  # a stale answer after final


def test_pending_can_resolve_to_anything_the_venue_says():
    for s in (S.ACCEPTED, S.FILLED, S.REJECTED, S.CANCELLED, S.EXPIRED):
        assert transition(OrderStatus("c", 1.0), s).state is s


def test_client_ids_are_deterministic_valid_and_parseable():
    a = client_order_id("live", "p-123", "stop", 2)
    assert a == client_order_id("live", "p-123", "stop", 2)
    assert a != client_order_id("live", "p-123", "stop", 3) != client_order_id("paper", "p-123", "stop", 2)
    assert parse_client_order_id(a) == ("l", "stop", 2)
    assert parse_client_order_id("web_123") is None
    with pytest.raises(ValueError, match="purpose"):
        client_order_id("live", "p", "bogus")


@settings(max_examples=200, deadline=None)
@given(mode=st.sampled_from(["paper", "live", "backtest"]), key=st.text(min_size=0, max_size=200),
       purpose=st.sampled_from(["entry", "stop", "take_profit", "exit", "reduce", "kill"]),
       seq=st.integers(0, 99_999))
def test_client_ids_always_match_binance_rule(mode, key, purpose, seq):
    cid = client_order_id(mode, key, purpose, seq)
    assert len(cid) <= 36 and CLIENT_ID_RE.match(cid)
