import dataclasses
from datetime import UTC, datetime

import pytest

from quorum.domain.models import PositionState, Side
from quorum.store.positions import PositionRepository
from quorum.store.state import AlertRepository, EquityRepository, OverrideRepository, StateRepository

T0 = 1_760_000_000_000


def _position(pid: str, symbol: str = "BTCUSDT", side: Side = Side.LONG) -> PositionState:
    return PositionState(
        symbol=symbol, side=side, entry_price=100.0, quantity=2.0, initial_quantity=2.0,
        initial_stop=95.0, stop_price=95.0, take_profit=115.0, leverage=3.0, opened_ms=T0,
        peak_price=100.0, liquidation_price=68.5, atr=1.25, position_id=pid,
    )


async def test_position_round_trip_update_and_close(pool):
    repo = PositionRepository(pool, "paper")
    state = _position("p1")
    await repo.open(state, risk_usd=10.0, fees=0.1)
    assert await repo.get("p1") == state
    assert [p.position_id for p in await repo.open_positions()] == ["p1"]

    moved = dataclasses.replace(state, stop_price=100.2, peak_price=112.0, trailing_active=True,
                                partials_done=1, quantity=1.34)
    await repo.update_risk_state(moved)
    assert await repo.get("p1") == moved

    await repo.add_costs("p1", fees=0.2, funding=0.05)
    net = await repo.close("p1", exit_price=110.0, gross_pnl=20.0, exit_reason="take_profit", closed_ms=T0 + 3_600_000)
    assert net == pytest.approx(20.0 - 0.3 - 0.05)
    row = await repo.get_row("p1")
    assert row["status"] == "closed" and float(row["net_pnl"]) == pytest.approx(19.65)
    assert await repo.open_positions() == []
    with pytest.raises(LookupError):
        await repo.update_risk_state(moved)


async def test_one_open_position_per_symbol_and_mode(pool):
    import asyncpg

    repo = PositionRepository(pool, "paper")
    await repo.open(_position("a"))
    with pytest.raises(asyncpg.UniqueViolationError):
        await repo.open(_position("b"))
    await PositionRepository(pool, "live").open(_position("c"))  # other mode is independent
    assert (await repo.open_for_symbol("BTCUSDT")).position_id == "a"


async def test_state_alerts_equity_overrides(pool):
    state = StateRepository(pool)
    assert await state.get("missing", {"d": 1}) == {"d": 1}
    await state.set("breakers", {"drawdown": {"tripped": True, "reason": "dd 21%"}})
    await state.set("breakers", {"drawdown": {"tripped": False}})
    assert await state.get("breakers") == {"drawdown": {"tripped": False}}
    await state.delete("breakers")
    assert await state.get("breakers") is None

    alerts = AlertRepository(pool, "paper")
    aid = await alerts.raise_alert("critical", "protection_failed", "stop could not be placed", symbol="ETHUSDT",
                                   details={"attempts": 3})
    await alerts.raise_alert("info", "note", "hello")
    crit = await alerts.open_alerts("critical")
    assert [a["id"] for a in crit] == [aid] and crit[0]["details"] == {"attempts": 3}
    await alerts.resolve(aid)
    assert await alerts.open_alerts("critical") == []
    assert len(await alerts.open_alerts()) == 1

    eq = EquityRepository(pool, "paper")
    t1, t2 = datetime(2025, 10, 1, tzinfo=UTC), datetime(2025, 10, 2, tzinfo=UTC)
    await eq.record(t2, 1010.5, 1000.0, 10.5, 1)
    await eq.record(t1, 1000.0, 1000.0)
    assert await eq.series() == [(t1, 1000.0), (t2, 1010.5)]
    assert float((await eq.latest())["equity"]) == 1010.5

    ov = OverrideRepository(pool)
    await ov.record("alice", "small size test", {"passed": False})
    latest = await ov.latest()
    assert latest["who"] == "alice" and latest["gate_report"] == {"passed": False}
