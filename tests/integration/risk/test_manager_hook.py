"""RiskManager's optional breaker hook: awaited once per stored trip/reset, in order, after the
row is written; a failing hook is logged and changes nothing."""

from __future__ import annotations

import asyncpg
import pytest

from quorum.domain import breakers as brk
from quorum.risk.manager import RiskManager
from tests.integration.risk.test_manager import T0, settings

pytestmark = pytest.mark.integration


async def test_hook_sees_every_stored_transition(pool: asyncpg.Pool) -> None:
    seen: list[tuple[str, str, str | None, int]] = []
    rm = RiskManager(pool, settings())

    async def hook(event: brk.BreakerEvent) -> None:
        rows = await rm.store.breaker_events()  # the row is stored before the hook runs
        seen.append((event.breaker, event.event, event.symbol, len(rows)))

    rm.on_breaker_event = hook
    await rm.load()
    await rm.update_equity(1000.0, T0)
    await rm.record_trade_closed("SOLUSDT", -3.0, "stop_loss", T0 + 1000)
    await rm.record_trade_closed("SOLUSDT", 2.0, "take_profit", T0 + 2000)  # no transition: no call
    await rm.update_equity(1000.0, T0 + 31 * 60_000)  # symbol cool-down (30 min) over
    await rm.update_equity(880.0, T0 + 32 * 60_000)  # daily loss and drawdown trip
    await rm.reset_breaker("drawdown", actor="operator:bob", now_ms=T0 + 33 * 60_000)
    assert [s[:3] for s in seen] == [
        ("symbol_cooldown", "trip", "SOLUSDT"), ("symbol_cooldown", "reset", "SOLUSDT"),
        ("daily_loss", "trip", None), ("drawdown", "trip", None), ("drawdown", "reset", None)]
    rows = await rm.store.breaker_events()
    assert len(rows) == 5 and [s[3] for s in seen] == [1, 2, 4, 4, 5]


async def test_failing_hook_does_not_block_the_risk_gate(pool: asyncpg.Pool) -> None:
    calls: list[str] = []

    async def broken(event: brk.BreakerEvent) -> None:
        calls.append(event.breaker)
        raise RuntimeError("notifier down")

    rm = RiskManager(pool, settings(), on_breaker_event=broken)
    await rm.load()
    await rm.update_equity(1000.0, T0)
    events = await rm.update_equity(850.0, T0 + 1000)
    assert {e.breaker for e in events} == {"daily_loss", "drawdown"} and sorted(calls) == ["daily_loss", "drawdown"]
    assert set(rm.breakers_status(T0 + 2000)) == {"daily_loss", "drawdown"}
    assert len(await rm.store.breaker_events()) == 2
