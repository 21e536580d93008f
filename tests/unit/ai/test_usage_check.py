"""Reported usage is checked before it is charged (quorum.ai.cost.checked_usage, settle)."""

from __future__ import annotations

from datetime import date

from quorum.ai.cost import CostTracker, checked_usage


def test_plausible_usage_is_charged_as_reported() -> None:
    u = checked_usage(900, 120, 5000, 800, min_in=1)
    assert (u.tokens_in, u.tokens_out, u.anomaly) == (900, 120, None)
    assert checked_usage(5000, 800, 5000, 800).anomaly is None  # the maxima themselves are allowed


def test_implausible_usage_is_charged_at_the_request_maximum() -> None:
    for tin, tout in ((-1, 10), (10, -1), (5001, 10), (10, 801), (10**40, 10), (None, 10), (1.5, 10), (True, 1)):
        u = checked_usage(tin, tout, 5000, 800)
        assert (u.tokens_in, u.tokens_out) == (5000, 800)
        assert u.anomaly and "charged at the request's maximum" in u.anomaly
    assert "~2^133" in (checked_usage(10**40, 1, 5000, 800).anomaly or "")
    assert checked_usage(0, 10, 5000, 800, min_in=1).anomaly  # a paid call that reports no prompt


def test_settle_never_subtracts_and_never_charges_beyond_the_reservation() -> None:
    day = date(2026, 1, 1)
    cost = CostTracker(daily_budget_usd=1.0)
    for actual in (-5.0, float("nan"), float("inf"), 50.0):
        hold = cost.reserve(day, "v", 0.01)
        assert hold is not None
        cost.settle(hold, actual)
    assert abs(cost.day_total(day) - 0.04) < 1e-12 and cost.reserved_total(day) == 0.0
