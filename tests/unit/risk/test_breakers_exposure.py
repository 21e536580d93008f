"""Circuit breakers (trip/reset events, UTC day roll, cool-downs, operator reset) and exposure."""

from __future__ import annotations

import numpy as np

from quorum.domain import breakers as brk
from quorum.domain.exposure import (
    ExposurePolicy,
    ExposureState,
    OpenExposure,
    correlation_clusters,
    exposure_check,
    max_positions,
)
from quorum.domain.models import Side

POL = brk.BreakerPolicy(max_daily_loss_pct=5, max_consecutive_losses=3, loss_streak_cooldown_ms=3_600_000,
                        max_drawdown_pct=20, symbol_cooldown_ms=1_800_000)
DAY = brk.DAY_MS
T0 = 20_000 * DAY + 10 * 3_600_000  # 10:00 UTC on some day


def test_daily_loss_trips_and_resets_at_utc_midnight() -> None:
    book, ev = brk.on_equity(brk.BreakerBook(), 1000.0, T0, POL)
    assert ev == () and book.day_start_equity == 1000.0
    book, ev = brk.on_equity(book, 960.0, T0 + 60_000, POL)
    assert ev == ()
    book, ev = brk.on_equity(book, 950.0, T0 + 120_000, POL)
    assert [(e.breaker, e.event) for e in ev] == [("daily_loss", "trip")]
    assert ev[0].value == 5.0 and ev[0].threshold == 5 and ev[0].until_ms == 20_001 * DAY
    assert brk.entry_block_reasons(book, "BTCUSDT", T0 + 180_000) == ("breaker:daily_loss",)
    book, ev = brk.on_equity(book, 940.0, T0 + 240_000, POL)
    assert ev == ()  # already tripped: no duplicate event
    book, ev = brk.on_equity(book, 945.0, 20_001 * DAY + 1, POL)
    assert [(e.breaker, e.event) for e in ev] == [("daily_loss", "reset")]
    assert book.day_start_equity == 940.0 and brk.entry_block_reasons(book, "BTCUSDT", 20_001 * DAY + 1) == ()


def test_loss_streak_cools_down_then_counts_again() -> None:
    book = brk.BreakerBook()
    for i in range(2):
        book, ev = brk.on_trade_closed(book, "ETHUSDT", -5.0, "take_profit", T0 + i, POL)
        assert ev == ()
    book, ev = brk.on_trade_closed(book, "ETHUSDT", 3.0, "take_profit", T0 + 2, POL)  # a win ends the streak
    assert book.consecutive_losses == 0
    for i in range(3):
        book, ev = brk.on_trade_closed(book, "ETHUSDT", -1.0, "time_stop", T0 + 10 + i, POL)
    assert [(e.breaker, e.event) for e in ev] == [("loss_streak", "trip")]
    assert "breaker:loss_streak" in brk.entry_block_reasons(book, "BTCUSDT", T0 + 20)
    later = T0 + 12 + 3_600_000
    assert brk.entry_block_reasons(book, "BTCUSDT", later) == ()  # cool-down over
    book, ev = brk.expire(book, later)
    assert [(e.breaker, e.event) for e in ev] == [("loss_streak", "reset")] and book.consecutive_losses == 0


def test_drawdown_stays_until_operator_reset() -> None:
    book, _ = brk.on_equity(brk.BreakerBook(), 1000.0, T0, POL)
    book, _ = brk.on_equity(book, 1250.0, T0 + 1, POL)
    book, ev = brk.on_equity(book, 1000.0, T0 + 2, POL)
    assert [(e.breaker, e.event) for e in ev] == [("drawdown", "trip")]
    for days in (1, 5, 30):
        book, _ = brk.on_equity(book, 1000.0, T0 + days * DAY, POL)
        assert "breaker:drawdown" in brk.entry_block_reasons(book, "X", T0 + days * DAY)
    book, ev = brk.operator_reset(book, brk.DRAWDOWN, T0 + 31 * DAY, actor="alice")
    assert ev[0].event == "reset" and ev[0].actor == "alice"
    assert book.equity_peak == 1000.0
    book, ev = brk.on_equity(book, 990.0, T0 + 31 * DAY + 1, POL)
    assert ev == () and brk.entry_block_reasons(book, "X", T0 + 31 * DAY + 1) == ()


def test_symbol_cooldown_after_stop_out_only() -> None:
    book, ev = brk.on_trade_closed(brk.BreakerBook(), "SOLUSDT", -2.0, "stop_loss", T0, POL)
    assert ev[-1].breaker == "symbol_cooldown" and ev[-1].symbol == "SOLUSDT"
    assert brk.entry_block_reasons(book, "SOLUSDT", T0 + 1) == ("breaker:symbol_cooldown",)
    assert brk.entry_block_reasons(book, "BTCUSDT", T0 + 1) == ()
    assert brk.entry_block_reasons(book, "SOLUSDT", T0 + 1_800_000) == ()
    book2, ev = brk.on_trade_closed(brk.BreakerBook(), "SOLUSDT", -2.0, "consensus_close", T0, POL)
    assert ev == () and book2.trips == ()


def test_book_json_roundtrip() -> None:
    book, _ = brk.on_equity(brk.BreakerBook(), 1000.0, T0, POL)
    book, _ = brk.on_trade_closed(book, "SOLUSDT", -2.0, "stop_loss", T0, POL)
    assert brk.BreakerBook.from_json(book.to_json()) == book
    assert brk.status(book, T0) == {"symbol_cooldown:SOLUSDT": "stop_loss on SOLUSDT"}


def test_nan_equity_changes_nothing() -> None:
    book, _ = brk.on_equity(brk.BreakerBook(), 1000.0, T0, POL)
    assert brk.on_equity(book, float("nan"), T0 + 1, POL) == (book, ())


# --- exposure -----------------------------------------------------------------------------------

EXP = ExposurePolicy(max_concurrent_positions=5, capital_per_position=100.0, max_total_notional_pct=400.0,
                     correlation_threshold=0.8, max_positions_per_cluster=1, reentry_cooldown_ms=1_800_000,
                     max_opens_per_hour=2, blocked_symbols=frozenset({"XRPUSDT"}))


def test_max_positions_from_equity() -> None:
    assert max_positions(250.0, EXP) == 2
    assert max_positions(50.0, EXP) == 1
    assert max_positions(1e6, EXP) == 5
    assert max_positions(0.0, EXP) == 0


def test_exposure_rules() -> None:
    now = T0
    state = ExposureState(
        open_positions=(OpenExposure("BTCUSDT", Side.LONG, 600.0), OpenExposure("ETHUSDT", Side.LONG, 200.0)),
        recent_open_ms=(now - 10 * 60_000, now - 20 * 60_000),
        last_exit_ms={"SOLUSDT": now - 60_000},
        clusters=(frozenset({"ETHUSDT", "SOLUSDT"}),),
    )
    reasons, room = exposure_check("SOLUSDT", Side.LONG, 200.0, now, state, EXP)
    assert set(reasons) == {"max_concurrent_positions", "reentry_cooldown", "max_opens_per_hour",
                            "correlation_cluster_full:ETHUSDT+SOLUSDT"}
    assert room == 0.0  # 800 cap − 800 used
    assert exposure_check("SOLUSDT", Side.LONG, 300.0, now, state, EXP)[1] == 400.0
    reasons, _ = exposure_check("SOLUSDT", Side.SHORT, 10_000.0, now + 3_600_000, state, EXP)
    assert reasons == ()  # opposite direction in the cluster, cool-downs over, slots free
    reasons, _ = exposure_check("BTCUSDT", Side.LONG, 10_000.0, now + 3_600_000, state, EXP)
    assert reasons == ("position_already_open",)
    reasons, _ = exposure_check("xrpusdt", Side.LONG, 10_000.0, now + 3_600_000, state, EXP)
    assert reasons == ("symbol_blocked",)


def test_correlation_clusters_transitive() -> None:
    rng = np.random.default_rng(7)
    base = rng.normal(size=300)
    rets = {
        "A": base,
        "B": base + rng.normal(scale=0.1, size=300),
        "C": base + rng.normal(scale=0.1, size=300) * 2,
        "D": rng.normal(size=300),
        "E": np.full(300, 0.0),  # flat: no correlation defined, never clustered
    }
    clusters = correlation_clusters(rets, 0.8)
    assert clusters == (frozenset({"A", "B", "C"}),)
    assert correlation_clusters(rets, 0.999) == ()
