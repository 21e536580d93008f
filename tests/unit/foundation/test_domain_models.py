import dataclasses
import math

import pytest

from quorum.domain.models import Action, PositionState, Regime, Side, Snapshot, canonical_json, content_hash


def test_canonical_json_rounds_and_orders():
    a = {"b": 0.1 + 0.2, "a": [1.0, float("nan")], "c": Regime.RANGING}
    b = {"c": "ranging", "a": [1.0, None], "b": 0.3}
    assert canonical_json(a) == canonical_json(b)
    assert content_hash(a) == content_hash(b)
    assert content_hash({"x": 1.00000001}) != content_hash({"x": 1.0001})


def test_snapshot_is_frozen_and_hash_depends_on_content():
    s = Snapshot("BTCUSDT", 1_700_000_000_000, 100.0, (), Regime.RANGING)
    with pytest.raises(dataclasses.FrozenInstanceError):
        s.price = 1.0  # type: ignore[misc]
    assert s.hash == Snapshot("BTCUSDT", 1_700_000_000_000, 100.0, (), Regime.RANGING).hash
    assert s.hash != dataclasses.replace(s, price=100.5).hash


def test_side_and_action_helpers():
    assert Side.LONG.sign == 1 and Side.SHORT.sign == -1
    assert Side.LONG.opposite is Side.SHORT
    assert Action.SHORT.side is Side.SHORT and Action.HOLD.side is None


def test_position_risk_per_unit_uses_entry_not_peak():
    p = PositionState("BTCUSDT", Side.LONG, 100.0, 1.0, 1.0, 95.0, 95.0, None, 3.0, 0, peak_price=200.0)
    assert math.isclose(p.risk_per_unit, 5.0)
