"""RiskManager against the real Postgres: every breaker survives a restart, every trip/reset is
an event row, every proposal a verdict row, and position risk state (stop, peak, trailing,
partials) is persisted so a restarted manager continues exactly."""

from __future__ import annotations

import asyncpg
import pytest

from quorum.config import Settings
from quorum.domain import breakers as brk
from quorum.domain.exits import Bar
from quorum.domain.models import Action, IntentKind, Proposal, Regime, SymbolFilters
from quorum.risk.manager import RiskManager
from quorum.store.positions import PositionRepository

DAY = brk.DAY_MS
T0 = 20_300 * DAY + 9 * 3_600_000
BTC = SymbolFilters("BTCUSDT", tick_size=0.1, step_size=0.001, min_qty=0.001, min_notional=100.0)

pytestmark = pytest.mark.integration


def settings(**kw: object) -> Settings:
    base: dict[str, object] = dict(trading_mode="paper", max_daily_loss_pct=5, max_consecutive_losses=2,
                                   loss_streak_cooldown_minutes=60, max_drawdown_pct=10, symbol_cooldown_minutes=30,
                                   _env_file=None)
    base.update(kw)
    return Settings(**base)  # type: ignore[arg-type]


def proposal(symbol: str = "BTCUSDT", decision_id: str | None = None) -> Proposal:
    return Proposal(symbol, Action.LONG, 0.8, 100_000.0, 98_000.0, (104_000.0,), None, 3, 0, 1.0, "t", "h", T0,
                    decision_id)


async def restart(pool: asyncpg.Pool, **kw: object) -> RiskManager:
    rm = RiskManager(pool, settings(**kw))
    await rm.load()
    return rm


async def test_each_breaker_survives_a_restart(pool: asyncpg.Pool) -> None:
    rm = await restart(pool)
    # drawdown: peak 1000 (day start), fall 10 %
    await rm.update_equity(1000.0, T0)
    events = await rm.update_equity(900.0, T0 + 1000)
    assert {e.breaker for e in events} == {"daily_loss", "drawdown"}
    # loss streak and symbol cool-down
    await rm.record_trade_closed("ETHUSDT", -3.0, "time_stop", T0 + 2000)
    await rm.record_trade_closed("SOLUSDT", -3.0, "stop_loss", T0 + 3000)

    rm2 = await restart(pool)
    now = T0 + 4000
    assert set(rm2.breakers_status(now)) == {"daily_loss", "drawdown", "loss_streak", "symbol_cooldown:SOLUSDT"}
    assert rm2.book == rm.book
    for name in ("breaker:daily_loss", "breaker:drawdown", "breaker:loss_streak", "breaker:symbol_cooldown"):
        assert name in rm2.entries_blocked("SOLUSDT", now)
    verdict = await rm2.evaluate(proposal(), equity=900.0, now_ms=now, filters=BTC, atr=800.0)
    assert verdict.status == "rejected" and "breaker:drawdown" in verdict.reasons

    rows = await rm2.store.breaker_events()
    assert [(r["breaker"], r["event"]) for r in rows] == [
        ("daily_loss", "trip"), ("drawdown", "trip"), ("loss_streak", "trip"), ("symbol_cooldown", "trip")]
    assert rows[0]["threshold"] == 5 and rows[0]["until"] is not None and rows[3]["symbol"] == "SOLUSDT"

    # time passes: the timed breakers reset (with event rows), the drawdown one does not
    next_day = T0 + DAY
    await rm2.update_equity(900.0, next_day)
    rm3 = await restart(pool)
    assert set(rm3.breakers_status(next_day)) == {"drawdown"}
    events = await rm3.reset_breaker("drawdown", actor="operator:alice", now_ms=next_day + 1)
    assert events and events[0].actor == "operator:alice"
    rm4 = await restart(pool)
    assert rm4.breakers_status(next_day + 2) == {}
    rows = await rm4.store.breaker_events()
    resets = [(r["breaker"], r["actor"]) for r in rows if r["event"] == "reset"]
    assert sorted(resets) == sorted([("daily_loss", "system"), ("loss_streak", "system"),
                                     ("symbol_cooldown", "system"), ("drawdown", "operator:alice")])
    verdict = await rm4.evaluate(proposal(), equity=900.0, now_ms=next_day + 3, filters=BTC, atr=800.0,
                                 regime=Regime.TRENDING_UP)
    assert verdict.accepted, verdict.reasons


async def test_every_proposal_gets_a_verdict_row(pool: asyncpg.Pool) -> None:
    rm = await restart(pool)
    ok = await rm.evaluate(proposal(), equity=10_000.0, now_ms=T0, filters=BTC, atr=800.0)
    bad = await rm.evaluate(Proposal("BTCUSDT", Action.LONG, 0.8, 100_000.0, 101_000.0, (), 0.0, 1, 0, 1.0, "",
                                     "h", T0), equity=10_000.0, now_ms=T0 + 1)
    assert ok.accepted and bad.status == "rejected"
    rows = await rm.store.verdicts()
    assert len(rows) == 2
    by_status = {r["status"]: r for r in rows}
    assert float(by_status[ok.status]["quantity"]) == pytest.approx(ok.quantity)
    assert float(by_status[ok.status]["liquidation_price"]) == pytest.approx(ok.liquidation_price)
    assert by_status[ok.status]["side"] == "long"
    assert "invalid_leverage" in by_status["rejected"]["reason_codes"]
    assert by_status["rejected"]["quantity"] == 0


async def test_exposure_facts_come_from_positions(pool: asyncpg.Pool) -> None:
    rm = await restart(pool)
    v = await rm.evaluate(proposal(), equity=10_000.0, now_ms=T0, filters=BTC, atr=800.0)
    state = rm.open_state(v, fill_price=100_050.0, quantity=v.quantity, opened_ms=T0, position_id="pos-1")
    await PositionRepository(pool, "paper").open(state)
    again = await rm.evaluate(proposal(), equity=10_000.0, now_ms=T0 + 60_000, filters=BTC, atr=800.0)
    assert "position_already_open" in again.reasons
    await PositionRepository(pool, "paper").close("pos-1", exit_price=98_050.0, gross_pnl=-10.0,
                                                  exit_reason="stop_loss", closed_ms=T0 + 120_000)
    later = await rm.evaluate(proposal(), equity=10_000.0, now_ms=T0 + 180_000, filters=BTC, atr=800.0)
    assert "reentry_cooldown" in later.reasons and "position_already_open" not in later.reasons


async def test_position_risk_state_persists_across_restart(pool: asyncpg.Pool) -> None:
    rm = await restart(pool, partial_exits="0.5@1R", trailing_activation_pct=1.0, trailing_distance_pct=1.0)
    v = await rm.evaluate(proposal(), equity=10_000.0, now_ms=T0, filters=BTC, atr=800.0)
    state = rm.open_state(v, fill_price=100_000.0, quantity=0.05, opened_ms=T0, position_id="pos-2")
    assert state.initial_stop == pytest.approx(98_000.0)
    repo = PositionRepository(pool, "paper")
    await repo.open(state)
    state, intents = await rm.on_bar(state, Bar(T0 + 300_000, 100_000, 103_000, 99_900, 102_500), BTC)
    kinds = [i.kind for i in intents]
    assert IntentKind.REDUCE in kinds and IntentKind.MOVE_STOP in kinds
    rm2 = await restart(pool, partial_exits="0.5@1R", trailing_activation_pct=1.0, trailing_distance_pct=1.0)
    (loaded,) = await rm2.positions.open_positions()
    assert loaded.partials_done == 1 and loaded.quantity == pytest.approx(0.025)
    assert loaded.peak_price == 103_000 and loaded.trailing_active
    assert loaded.stop_price == pytest.approx(103_000 * 0.99)
    # the restarted manager continues from the stored state: the trailing stop fires next bar
    _, intents = await rm2.on_bar(loaded, Bar(T0 + 600_000, 102_500, 102_600, 101_000, 101_500), BTC)
    assert intents[-1].reason == "trailing_stop" and intents[-1].quantity == pytest.approx(0.025)


async def test_tripped_breakers_never_block_exits(pool: asyncpg.Pool) -> None:
    rm = await restart(pool)
    v = await rm.evaluate(proposal(), equity=10_000.0, now_ms=T0, filters=BTC, atr=800.0)
    state = rm.open_state(v, fill_price=100_000.0, quantity=v.quantity, opened_ms=T0, position_id="pos-3")
    await PositionRepository(pool, "paper").open(state)
    await rm.update_equity(10_000.0, T0 + 1)
    await rm.update_equity(8_000.0, T0 + 2)  # daily loss + drawdown tripped
    assert {"daily_loss", "drawdown"} <= set(rm.breakers_status(T0 + 3))
    _, intents = await rm.on_bar(state, Bar(T0 + 300_000, 99_000, 99_100, 97_500, 97_800), BTC)
    assert intents and intents[0].kind is IntentKind.CLOSE and intents[0].reason == "stop_loss"
    _, intents = await rm.on_consensus_close(state, T0 + 3_600_000, 99_000.0)
    assert intents and intents[0].reason == "consensus_close"
