"""Paper exchange + executor: protected entries, partial exits, stops triggering on bars,
liquidation, funding, kill switch — all against real Postgres."""

from __future__ import annotations

import pytest

from quorum.domain.models import IntentKind, OrderIntent, Side
from quorum.execution.killswitch import KillSwitch
from quorum.execution.protection import Executor
from quorum.execution.reconcile import Reconciler

from .helpers import T0, Clock, bar, invariants, open_intent, paper


async def _setup(pool, balance=10_000.0, **kw):
    clock = Clock()
    ex = paper(pool, clock, balance=balance, **kw)
    await ex.on_price("BTCUSDT", 50_000.0, T0)
    await ex.on_price("ETHUSDT", 3_000.0, T0)
    executor = Executor(ex, pool, "paper", clock=clock)
    report = await Reconciler(executor).run()
    assert report.ok and executor.entries_allowed
    return clock, ex, executor


async def test_open_places_stop_of_full_size_and_records_everything(pool):
    _clock, ex, executor = await _setup(pool)
    res = await executor.execute(open_intent(qty=0.01, stop=49_000.0), take_profit=52_000.0)
    assert res.status == "opened", res
    assert res.quantity == pytest.approx(0.01)
    assert res.price > 50_000.0  # bought with slippage
    orders = await ex.fetch_open_orders("BTCUSDT")
    stops = [o for o in orders if o.type == "stop_market"]
    tps = [o for o in orders if o.type == "take_profit_market"]
    assert len(stops) == 1 and stops[0].quantity == pytest.approx(0.01) and stops[0].stop_price == 49_000.0
    assert stops[0].reduce_only and len(tps) == 1
    row = await pool.fetchrow("SELECT * FROM positions WHERE id=$1", res.position_id)
    assert row["status"] == "open" and float(row["fees"]) > 0
    # every order stored, every transition an event, fill linked to the position
    n_orders = await pool.fetchval("SELECT count(*) FROM orders")
    assert n_orders == 3
    events = await pool.fetch("SELECT state FROM order_events ORDER BY id")
    assert events[0]["state"] == "pending" and any(e["state"] == "filled" for e in events)
    fill = await pool.fetchrow("SELECT * FROM fills")
    assert fill["position_id"] == res.position_id
    assert await invariants(pool, executor) == {"unprotected": 0, "duplicate_stops": 0, "mismatched": 0,
                                               "lost_fills": 0, "duplicate_entries": 0}


async def test_partial_exit_resizes_stop_then_stop_triggers_on_gap(pool):
    _clock, ex, executor = await _setup(pool)
    res = await executor.execute(open_intent(qty=0.03, stop=49_000.0))
    pid = res.position_id
    r = await executor.execute(OrderIntent(IntentKind.REDUCE, "BTCUSDT", Side.LONG, 0.01, "partial_take_profit"))
    assert r.status == "reduced"
    stops = [o for o in await ex.fetch_open_orders("BTCUSDT") if o.type == "stop_market"]
    assert len(stops) == 1 and stops[0].quantity == pytest.approx(0.02)
    assert float(await pool.fetchval("SELECT quantity FROM positions WHERE id=$1", pid)) == pytest.approx(0.02)
    # the next bar opens below the stop: filled at the open (the worse price)
    fills = await ex.on_bar("BTCUSDT", bar(T0 + 300_000, 48_500.0, 48_700.0, 48_000.0, 48_200.0))
    assert len(fills) == 1 and fills[0].price < 48_500.0  # open minus slippage, not the stop price
    await executor.sync_position(pid)
    row = await pool.fetchrow("SELECT * FROM positions WHERE id=$1", pid)
    assert row["status"] == "closed" and row["exit_reason"] == "stop_loss"
    gross = float(row["gross_pnl"])
    assert float(row["net_pnl"]) == pytest.approx(gross - float(row["fees"]) - float(row["funding"]))
    assert await ex.fetch_open_orders("BTCUSDT") == []


async def test_move_stop_places_new_before_cancelling_old(pool):
    _clock, ex, executor = await _setup(pool)
    res = await executor.execute(open_intent(qty=0.01, stop=49_000.0))
    moved = await executor.execute(OrderIntent(IntentKind.MOVE_STOP, "BTCUSDT", Side.LONG, 0.01, "trail",
                                               stop_price=49_500.0))
    assert moved.status == "moved"
    stops = [o for o in await ex.fetch_open_orders("BTCUSDT") if o.type == "stop_market"]
    assert [s.stop_price for s in stops] == [49_500.0]
    states = await pool.fetch("SELECT state FROM orders WHERE purpose='stop' ORDER BY created_at")
    assert [s["state"] for s in states] == ["cancelled", "accepted"]
    assert res.position_id


async def test_stop_that_would_trigger_closes_at_market_with_the_stops_reason(pool):
    """The price falls through the new (trailing) stop before it is placed (-2021): the position
    is closed at market as that stop would have closed it. Regression: this used to be booked as
    `protection_failed` with a critical alert, which blocks the go-live gate for an ordinary exit."""
    _clock, ex, executor = await _setup(pool)
    res = await executor.execute(open_intent(qty=0.01, stop=49_000.0))
    await ex.on_price("BTCUSDT", 49_400.0, T0 + 1000)
    moved = await executor.move_stop(res.position_id, 49_600.0, "trailing_stop")
    assert moved.status == "closed"
    row = await pool.fetchrow("SELECT * FROM positions WHERE id=$1", res.position_id)
    assert row["status"] == "closed" and row["exit_reason"] == "trailing_stop"
    assert await ex.fetch_positions() == []
    assert await pool.fetchval("SELECT count(*) FROM alerts WHERE severity='critical'") == 0
    alerts = await pool.fetch("SELECT * FROM alerts WHERE kind='stop_breached' AND severity='warning'")
    assert len(alerts) == 1


async def test_liquidation_at_liquidation_price_with_fee(pool):
    _clock, ex, executor = await _setup(pool)
    res = await executor.execute(open_intent(qty=0.1, stop=40_000.0, leverage=20))
    vp = (await ex.fetch_positions())[0]
    assert vp.liquidation_price is not None and 40_000.0 < vp.liquidation_price < 50_000.0
    # cancel the stop to leave the position to the liquidation engine (a deliberate test setup)
    for o in await ex.fetch_open_orders("BTCUSDT"):
        await ex.cancel_order("BTCUSDT", o.client_order_id)
    fills = await ex.on_bar("BTCUSDT", bar(T0 + 300_000, 49_900.0, 49_950.0, 45_000.0, 46_000.0))
    assert len(fills) == 1
    assert fills[0].price == pytest.approx(vp.liquidation_price)
    assert fills[0].fee == pytest.approx(0.1 * vp.liquidation_price * 0.0005)
    await executor.sync_position(res.position_id)
    row = await pool.fetchrow("SELECT * FROM positions WHERE id=$1", res.position_id)
    assert row["status"] == "closed" and row["exit_reason"] == "liquidation"


async def test_funding_positive_rate_long_pays(pool):
    _clock, ex, executor = await _setup(pool, funding_rate=0.001)
    res = await executor.execute(open_intent(qty=0.01, stop=49_000.0))
    wallet0 = (await ex.balance()).wallet_balance
    eight_h = 8 * 3_600_000
    await ex.on_bar("BTCUSDT", bar(T0 + 300_000, 50_000.0, 50_100.0, 49_900.0, 50_000.0))
    await ex.on_bar("BTCUSDT", bar(T0 + eight_h, 50_000.0, 50_100.0, 49_900.0, 50_000.0))
    wallet1 = (await ex.balance()).wallet_balance
    assert wallet0 - wallet1 == pytest.approx(50_000.0 * 0.01 * 0.001)
    pos = await executor.positions.get(res.position_id)
    added = await executor.ledger.sync_funding(pos)
    assert added == pytest.approx(0.5)
    assert await executor.ledger.sync_funding(pos) == 0.0  # idempotent
    row = await pool.fetchrow("SELECT funding FROM positions WHERE id=$1", res.position_id)
    assert float(row["funding"]) == pytest.approx(0.5)


async def test_kill_switch_closes_everything_and_keeps_a_record(pool):
    _clock, ex, executor = await _setup(pool)
    await executor.execute(open_intent("BTCUSDT", qty=0.01, stop=49_000.0))
    await executor.execute(open_intent("ETHUSDT", Side.SHORT, qty=0.1, price=3_000.0, stop=3_100.0))
    report = await KillSwitch(executor).engage("test", actor="pytest")
    assert report.ok and len(report.closed) == 2
    assert await ex.fetch_positions() == [] and await ex.fetch_open_orders() == []
    assert not executor.entries_allowed
    rows = await pool.fetch("SELECT exit_reason FROM positions")
    assert {r["exit_reason"] for r in rows} == {"kill_switch"}
    assert await pool.fetchval("SELECT count(*) FROM reconciliation_events WHERE kind='kill_switch'") == 1
    refused = await executor.execute(open_intent("BTCUSDT", qty=0.01, stop=49_000.0))
    assert refused.status == "refused"


async def test_state_survives_restart(pool):
    clock, _ex, executor = await _setup(pool)
    res = await executor.execute(open_intent(qty=0.01, stop=49_000.0))
    ex2 = paper(pool, clock)
    executor2 = Executor(ex2, pool, "paper", clock=clock)
    assert not executor2.entries_allowed
    report = await Reconciler(executor2).run()
    assert report.ok and report.corrections == []
    assert [p.quantity for p in await ex2.fetch_positions()] == [pytest.approx(0.01)]
    assert (await executor2.positions.get(res.position_id)) is not None


async def test_paper_bad_input_is_refused_and_recorded(pool):
    _clock, ex, executor = await _setup(pool)
    cases = [
        (open_intent("NOPEUSDT", qty=1.0, price=10.0, stop=9.0), "does not exist"),
        (open_intent(qty=0.01, stop=49_000.0, leverage=75), "above the bracket maximum 50"),
        (open_intent(qty=0.001, stop=49_000.0), "below the minimum 100"),
        (open_intent(qty=0.01, stop=None, leverage=5).__class__(IntentKind.OPEN, "BTCUSDT", Side.LONG, 0.01, "x",
                                                                 price_hint=50_000.0), "needs a protective stop"),
    ]
    for intent, needle in cases:
        res = await executor.execute(intent)
        assert res.status in ("refused", "rejected") and needle in res.reason, (needle, res)
    rows = await pool.fetch("SELECT state, error FROM orders ORDER BY created_at")
    assert len(rows) == len(cases) and all(r["state"] == "rejected" and r["error"] for r in rows)
    assert await ex.fetch_positions() == [] and await pool.fetchval("SELECT count(*) FROM paper_orders") == 0


async def test_insufficient_margin_on_paper_is_final(pool):
    _clock, ex, executor = await _setup(pool, balance=100.0)
    res = await executor.execute(open_intent(qty=0.1, stop=49_000.0, leverage=5))  # 1000 USDT margin
    assert res.status == "rejected" and "insufficient" in res.reason.lower()
    row = await pool.fetchrow("SELECT state, error FROM orders")
    assert row["state"] == "rejected" and "-2019" in row["error"]
    assert await ex.fetch_positions() == []


async def test_venue_truth_wins_over_a_given_up_order(pool):
    """An order we marked rejected ("not found") that the venue later reports filled is taken
    as filled, with the correction in its events; reconciliation then protects the position."""
    _clock, ex, executor = await _setup(pool)
    from quorum.domain.models import OrderState
    from quorum.execution.exchange import market_order

    req = market_order("qpE-manual-0", "BTCUSDT", "buy", 0.01)
    await executor.orders.insert_pending(req, purpose="entry", detail={"position_id": "p-late", "stop_price": 49_000.0,
                                                                       "leverage": 5})
    await executor.orders.transition(req.client_order_id, OrderState.REJECTED, error="not found at the venue")
    await ex.create_order(req)  # it reached the venue after all
    report = await Reconciler(executor).run()
    assert report.ok
    from quorum.execution.orders import OrderManager

    await OrderManager(ex, executor.orders).resolve(req.client_order_id)
    report = await Reconciler(executor).run()
    # the first pass adopted the venue position; the late entry is linked to it, not doubled
    assert report.ok and report.count("linked_entry") == 1, report
    ev = await pool.fetch("SELECT detail FROM order_events WHERE client_order_id=$1 ORDER BY id", req.client_order_id)
    assert any("forced" in e["detail"] for e in ev)
    assert await invariants(pool, executor) == {"unprotected": 0, "duplicate_stops": 0, "mismatched": 0,
                                               "lost_fills": 0, "duplicate_entries": 0}


async def test_stop_filled_on_the_venue_is_recorded_without_reconciliation(pool):
    """Regression: the filled stop and the expired take-profit used to stay `accepted` in our
    records until the next reconciliation 'corrected' them after every trade."""
    _clock, ex, executor = await _setup(pool)
    res = await executor.execute(open_intent(qty=0.01, stop=49_000.0), take_profit=52_000.0)
    await ex.on_bar("BTCUSDT", bar(T0 + 300_000, 49_900.0, 49_950.0, 48_800.0, 48_900.0))
    await executor.sync_position(res.position_id)
    row = await pool.fetchrow("SELECT status, exit_reason FROM positions WHERE id=$1", res.position_id)
    assert row["status"] == "closed" and row["exit_reason"] == "stop_loss"
    states = {r["type"]: r["state"] for r in await pool.fetch(
        "SELECT type, state FROM orders WHERE position_id=$1 AND type <> 'market'", res.position_id)}
    assert states == {"stop_market": "filled", "take_profit_market": "expired"} or \
        states == {"stop_market": "filled", "take_profit_market": "cancelled"}
    report = await Reconciler(executor).run()
    assert report.ok
    assert await pool.fetchval("SELECT count(*) FROM reconciliation_events WHERE kind = 'order_synced'") == 0
