"""Operator control targets (pure)."""

from __future__ import annotations

import pytest

from quorum.domain.controls import ControlError, breaker_target, clean_text, split_breaker, symbol_target
from quorum.operator import describe, normalise_target


def test_breaker_targets_are_normalised_and_checked() -> None:
    assert breaker_target("drawdown") == "drawdown"
    assert breaker_target("Daily-Loss") == "daily_loss"
    assert breaker_target("streak") == "loss_streak"
    assert breaker_target("cooldown", "btcusdt") == "symbol_cooldown:BTCUSDT"
    assert breaker_target("symbol_cooldown:ethusdt") == "symbol_cooldown:ETHUSDT"
    assert split_breaker("symbol_cooldown:ETHUSDT") == ("symbol_cooldown", "ETHUSDT")
    assert split_breaker("drawdown") == ("drawdown", None)
    for bad, why in [("margin", "unknown breaker"), ("symbol_cooldown", "needs a symbol"),
                     ("drawdown:BTCUSDT", "account-wide")]:
        with pytest.raises(ControlError, match=why):
            breaker_target(bad)


def test_symbols_alert_ids_and_texts() -> None:
    assert symbol_target(" ethusdt ") == "ETHUSDT"
    for bad in ("", "BTC/USDT", "x", "DROP TABLE"):
        with pytest.raises(ControlError):
            symbol_target(bad)
    assert normalise_target("resolve_alert", "17") == "17"
    with pytest.raises(ControlError, match="not an alert id"):
        normalise_target("ack_alert", "abc")
    with pytest.raises(ControlError, match="unknown control"):
        normalise_target("liquidate_everyone", None)
    assert clean_text("  why\x00 not\n ") == "why not"
    assert clean_text("   ") is None


def test_describe_says_what_came_of_it() -> None:
    assert describe({"id": 3, "action": "close_position", "target": "BTCUSDT", "status": "done",
                     "result": {"price": 101234.5, "net_pnl": -1.25}}) == \
        "#3 close_position BTCUSDT: done (closed at 101234.5, net P&L -1.25)"
    assert "queued" in describe({"id": 4, "action": "pause_symbol", "target": "ETHUSDT", "status": "pending",
                                 "result": {}})
