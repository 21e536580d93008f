"""Event payload helpers and the error throttle (quorum.notify.events)."""

from __future__ import annotations

from quorum.logging import register_secrets
from quorum.notify.events import HOUR_MS, ErrorThrottle, error_payload, error_text, iso_ms


def test_throttle_holds_back_identical_repeats_and_reports_them() -> None:
    th = ErrorThrottle()
    boom = RuntimeError("x")
    assert th.admit("decision_failed", "BTCUSDT", boom, 0) == 0
    assert th.admit("decision_failed", "BTCUSDT", boom, 1000) is None
    assert th.admit("decision_failed", "BTCUSDT", RuntimeError("other text"), 2000) is None  # same kind
    # another place, symbol or exception type is a different error: let through
    assert th.admit("decision_failed", "ETHUSDT", boom, 3000) == 0
    assert th.admit("position_step_failed", "BTCUSDT", boom, 3000) == 0
    assert th.admit("decision_failed", "BTCUSDT", ValueError("x"), 3000) == 0
    # after the window the next one goes out and says how many were held back
    assert th.admit("decision_failed", "BTCUSDT", boom, HOUR_MS) == 2
    assert th.admit("decision_failed", "BTCUSDT", boom, HOUR_MS + 1) is None


def test_error_text_is_redacted_and_bounded() -> None:
    register_secrets(["sk-UNIT-EVENTS-9f3a"])
    text = error_text(ValueError("key sk-UNIT-EVENTS-9f3a rejected " + "x" * 500))
    assert text.startswith("ValueError: key *** rejected") and len(text) == 300
    p = error_payload("step_failed", None, OSError("down"), fatal=True, repeats=3)
    assert p == {"where": "step_failed", "symbol": None, "error": "OSError: down", "fatal": True, "repeats": 3}
    assert error_payload("x", "S", OSError("down"))["fatal"] is None


def test_iso_ms() -> None:
    assert iso_ms(1_759_752_000_000) == "2025-10-06T12:00:00Z" and iso_ms(None) is None
