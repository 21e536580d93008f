"""The pure go-live gate: each criterion, the Wilson bound vs the break-even win rate."""

from __future__ import annotations

import math

from hypothesis import given, settings
from hypothesis import strategies as st

from quorum.domain.gate import (
    DAY_MS,
    GateRecord,
    GateThresholds,
    break_even_win_rate,
    evaluate_gate,
)
from quorum.domain.statistics import wilson_interval

T = GateThresholds(min_days=28, min_trades=100, min_profit_factor=1.1, max_drawdown_pct=20)


def record(pnls: list[float], days: float = 40, dd: float = 5.0, alerts: int = 0) -> GateRecord:
    return GateRecord(started_ms=0, now_ms=int(days * DAY_MS), net_pnls=tuple(pnls), max_drawdown_pct=dd,
                      open_critical_alerts=alerts, critical_alert_kinds=("stop_missing",) if alerts else ())


def by_name(report_criteria: object) -> dict[str, object]:
    return {c.name: c for c in report_criteria}  # type: ignore[attr-defined]


def test_empty_record_fails_every_trade_criterion() -> None:
    rep = evaluate_gate(GateRecord(None, 0, (), 0.0), T)
    assert not rep.passed
    assert {c.name for c in rep.failures} == {"days", "trades", "win_rate_lower_bound", "profit_factor",
                                              "max_drawdown_pct"}
    assert by_name(rep.criteria)["days"].detail == "no paper record yet"  # type: ignore[attr-defined]


def test_strong_long_record_passes() -> None:
    pnls = [10.0] * 70 + [-5.0] * 50  # win rate 58 %, break-even 1/3, PF 2.8
    rep = evaluate_gate(record(pnls), T)
    assert rep.passed, rep.to_dict()
    c = by_name(rep.criteria)["win_rate_lower_bound"]
    assert math.isclose(c.threshold, 5 / 15, abs_tol=1e-4)  # type: ignore[attr-defined]
    assert c.value == round(wilson_interval(70, 120)[0], 4)  # type: ignore[attr-defined]


def test_high_win_rate_with_large_losses_fails_on_break_even() -> None:
    # 80 % wins of 1 and 20 % losses of 5: break-even is 5/6 = 83 %, so the lower bound misses it
    pnls = [1.0] * 96 + [-5.0] * 24
    rep = evaluate_gate(record(pnls), T)
    names = {c.name for c in rep.failures}
    assert "win_rate_lower_bound" in names and "profit_factor" in names
    assert "break-even" in by_name(rep.criteria)["win_rate_lower_bound"].detail  # type: ignore[attr-defined]


def test_short_record_fails_on_days_and_trades_only() -> None:
    pnls = [10.0] * 15 + [-5.0] * 5
    rep = evaluate_gate(record(pnls, days=6), T)
    assert {c.name for c in rep.failures} >= {"days", "trades"}
    assert "6.0 days" in by_name(rep.criteria)["days"].detail  # type: ignore[attr-defined]


def test_drawdown_and_alerts_block() -> None:
    pnls = [10.0] * 70 + [-5.0] * 50
    rep = evaluate_gate(record(pnls, dd=20.0, alerts=1), T)
    assert {c.name for c in rep.failures} == {"max_drawdown_pct", "critical_alerts"}
    assert "stop_missing" in by_name(rep.criteria)["critical_alerts"].detail  # type: ignore[attr-defined]


def test_no_losses_is_infinite_profit_factor_and_json_safe() -> None:
    rep = evaluate_gate(record([3.0] * 120), T)
    pf = by_name(rep.criteria)["profit_factor"]
    assert pf.passed and math.isinf(pf.value)  # type: ignore[attr-defined]
    assert rep.to_dict()["criteria"][3]["value"] is None


def test_break_even_edges() -> None:
    assert break_even_win_rate([]) is None
    assert break_even_win_rate([1.0, 2.0]) == 0.0
    assert break_even_win_rate([-1.0, 0.0]) == 1.0
    assert math.isclose(break_even_win_rate([3.0, -1.0]), 0.25)  # type: ignore[arg-type]


@settings(max_examples=200, deadline=None)
@given(st.lists(st.floats(-100, 100, allow_nan=False), max_size=300), st.floats(0, 60), st.floats(0, 60))
def test_gate_passes_only_when_every_criterion_passes(pnls: list[float], days: float, dd: float) -> None:
    rep = evaluate_gate(record(pnls, days=days, dd=dd), T)
    assert rep.passed == all(c.passed for c in rep.criteria)
    if rep.passed:
        assert len(pnls) >= T.min_trades and days >= T.min_days and dd < T.max_drawdown_pct
