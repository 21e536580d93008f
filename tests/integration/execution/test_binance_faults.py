"""Each injected venue fault: no duplicate order, no unprotected position, the right final state.
The real ccxt binanceusdm client talks to the fake server through its `urls`."""

from __future__ import annotations

import pytest

from quorum.domain.models import IntentKind, OrderIntent, Side
from quorum.execution.reconcile import Reconciler
from quorum.metrics import ORDER_ERRORS
from tests.fakes.binance_trading import Fault

from .conftest import READ_ATTEMPTS
from .helpers import open_intent

ENTRY = "/fapi/v1/order"
ALGO = "/fapi/v1/algoOrder"


async def _entry_cid(pool) -> str:
    return await pool.fetchval("SELECT client_order_id FROM orders WHERE purpose='entry'")


async def _assert_opened_once(live, res, qty=0.01):
    assert res.status == "opened", res
    cid = await _entry_cid(live.pool)
    assert live.sends(cid) == 1, "the entry must never be resent"
    assert live.venue_orders_with(cid) == 1
    assert abs(live.fake.positions["BTCUSDT"]["amt"]) == pytest.approx(qty)
    assert live.venue_protected()
    row = await live.pool.fetchrow("SELECT * FROM orders WHERE client_order_id=$1", cid)
    assert row["state"] == "filled" and float(row["filled_quantity"]) == pytest.approx(qty)
    assert await live.pool.fetchval("SELECT count(*) FROM fills WHERE client_order_id=$1", cid) == 1


@pytest.mark.parametrize("fault", [
    Fault("timeout", ENTRY, "POST", delay=1.5),
    Fault("status", ENTRY, "POST", status=503, msg="Service Unavailable", execute=True),
    Fault("status", ENTRY, "POST", status=502, msg="Bad Gateway", execute=True),
    Fault("code", ENTRY, "POST", code=-1007, msg="Timeout waiting for response from backend server. Send status "
                                                 "unknown; execution status unknown.", execute=True),
    Fault("code", ENTRY, "POST", code=-1006, msg="An unexpected response was received from the message bus. "
                                                 "Execution status unknown.", execute=True),
    Fault("missing_fields", ENTRY, "POST", drop=("orderId", "status", "clientOrderId")),
], ids=["accept-then-timeout", "503-executed", "502-executed", "-1007", "-1006", "reply-missing-fields"])
async def test_unknown_outcome_is_looked_up_never_resent(live, fault):
    live.fake.inject(fault)
    res = await live.executor.execute(open_intent(qty=0.01, stop=49_000.0))
    await _assert_opened_once(live, res)
    events = await live.pool.fetch("SELECT detail FROM order_events WHERE client_order_id=$1 ORDER BY id",
                                   await _entry_cid(live.pool))
    assert any("outcome_unknown" in e["detail"] for e in events)


async def test_5xx_not_executed_is_confirmed_absent_then_rejected(live):
    live.fake.inject(Fault("status", ENTRY, "POST", status=500, msg="Internal error"))
    res = await live.executor.execute(open_intent(qty=0.01, stop=49_000.0))
    assert res.status == "rejected"
    cid = await _entry_cid(live.pool)
    assert live.sends(cid) == 1 and live.fake.positions == {}
    row = await live.pool.fetchrow("SELECT * FROM orders WHERE client_order_id=$1", cid)
    assert row["state"] == "rejected" and "not found" in row["error"]


async def test_429_waits_retry_after_and_sends_nothing_meanwhile(live):
    live.fake.inject(Fault("status", ENTRY, "POST", status=429, msg="Too many requests",
                           headers={"Retry-After": "1"}))
    before = ORDER_ERRORS.labels(error_class="rate_limited")._value.get()
    res = await live.executor.execute(open_intent(qty=0.01, stop=49_000.0))
    assert ORDER_ERRORS.labels(error_class="rate_limited")._value.get() == before + 1
    idx = next(i for i, (m, p, q) in enumerate(live.fake.requests) if m == "POST" and p == ENTRY)
    gap = live.fake.request_times[idx + 1] - live.fake.request_times[idx]
    assert gap >= 0.95, f"a request was sent {gap:.2f}s into a 1 s Retry-After"
    assert res.status == "rejected"  # the venue never took it: confirmed by lookup, not resent
    cid = await _entry_cid(live.pool)
    assert live.sends(cid) == 1 and live.fake.positions == {}


async def test_418_on_stop_waits_then_places_a_new_stop_once(live):
    live.fake.inject(Fault("status", ALGO, "POST", status=418, msg="IP banned", headers={"Retry-After": "1"}))
    res = await live.executor.execute(open_intent(qty=0.01, stop=49_000.0))
    assert res.status == "opened"
    stops = await live.pool.fetch("SELECT client_order_id, state FROM orders WHERE purpose='stop' ORDER BY created_at")
    assert [s["state"] for s in stops] == ["rejected", "accepted"]
    assert live.venue_orders_with(stops[0]["client_order_id"]) == 0
    assert live.venue_protected()


async def test_1021_resyncs_clock_and_retries_once(live):
    live.fake.time_offset_ms = 20_000  # the venue's clock runs ahead: signed requests fail -1021
    res = await live.executor.execute(open_intent(qty=0.01, stop=49_000.0))
    assert live.fake.calls("/fapi/v1/time")
    assert res.status == "opened"
    assert live.venue_protected()
    cid = await _entry_cid(live.pool)
    assert live.venue_orders_with(cid) == 1


async def test_1021_injected_on_entry_is_retried_once_not_duplicated(live):
    live.fake.inject(Fault("code", ENTRY, "POST", code=-1021,
                           msg="Timestamp for this request is outside of the recvWindow."))
    res = await live.executor.execute(open_intent(qty=0.01, stop=49_000.0))
    assert res.status == "opened"
    cid = await _entry_cid(live.pool)
    assert live.sends(cid) == 2 and live.venue_orders_with(cid) == 1  # first one refused by the venue
    assert live.venue_protected()


@pytest.mark.parametrize("code,msg,klass", [
    (-2019, "Margin is insufficient.", "insufficient_margin"),
    (-4164, "Order's notional must be no smaller than 100 (unless you choose reduce only).", "rejected"),
])
async def test_final_rejections_are_recorded_and_open_nothing(live, code, msg, klass):
    live.fake.inject(Fault("code", ENTRY, "POST", code=code, msg=msg))
    before = ORDER_ERRORS.labels(error_class=klass)._value.get()
    res = await live.executor.execute(open_intent(qty=0.01, stop=49_000.0))
    assert res.status == "rejected"
    cid = await _entry_cid(live.pool)
    row = await live.pool.fetchrow("SELECT * FROM orders WHERE client_order_id=$1", cid)
    assert row["state"] == "rejected" and str(code) in row["error"]
    assert live.sends(cid) == 1 and live.fake.positions == {} and live.fake.open_orders_count() == 0
    assert ORDER_ERRORS.labels(error_class=klass)._value.get() == before + 1
    assert await live.pool.fetchval("SELECT count(*) FROM positions") == 0


async def test_stop_refused_closes_position_at_market_and_alerts(live):
    live.fake.inject(Fault("code", ALGO, "POST", code=-4120,
                           msg="Order type not supported for this endpoint. Please use the Algo Order API endpoints "
                               "instead."))
    res = await live.executor.execute(open_intent(qty=0.01, stop=49_000.0))
    assert res.status == "protection_failed"
    assert live.fake.positions == {}, "an unprotected position must not stay open"
    row = await live.pool.fetchrow("SELECT * FROM positions")
    assert row["status"] == "closed" and row["exit_reason"] == "protection_failed"
    alert = await live.pool.fetchrow("SELECT * FROM alerts WHERE kind='protection_failed'")
    assert alert["severity"] == "critical"
    assert live.fake.open_orders_count() == 0


async def test_stop_that_would_immediately_trigger_is_a_stop_out_not_a_protection_failure(live):
    """-2021: the price is already through the stop level. Closing at market is what the stop
    would have done; it is recorded as a stop-loss with a warning, and no critical alert (which
    would block the go-live gate) is raised."""
    live.fake.inject(Fault("code", ALGO, "POST", code=-2021, msg="Order would immediately trigger."))
    res = await live.executor.execute(open_intent(qty=0.01, stop=49_000.0))
    assert res.status == "closed"
    assert live.fake.positions == {}, "an unprotected position must not stay open"
    row = await live.pool.fetchrow("SELECT * FROM positions")
    assert row["status"] == "closed" and row["exit_reason"] == "stop_loss"
    assert await live.pool.fetchval("SELECT count(*) FROM alerts WHERE severity='critical'") == 0
    alert = await live.pool.fetchrow("SELECT * FROM alerts WHERE kind='stop_breached'")
    assert alert["severity"] == "warning"
    assert live.fake.open_orders_count() == 0


async def test_partial_fill_protects_the_filled_size(live):
    live.fake.inject(Fault("partial", ENTRY, "POST", fraction=0.5))
    res = await live.executor.execute(open_intent(qty=0.02, stop=49_000.0))
    assert res.status == "opened" and res.quantity == pytest.approx(0.01)
    cid = await _entry_cid(live.pool)
    row = await live.pool.fetchrow("SELECT * FROM orders WHERE client_order_id=$1", cid)
    assert row["state"] == "expired" and float(row["filled_quantity"]) == pytest.approx(0.01)
    assert live.venue_protected()
    stop = next(a for a in live.fake.algo.values() if a["algoStatus"] == "NEW")
    assert float(stop["quantity"]) == pytest.approx(0.01)


async def test_fill_after_cancel_is_kept_and_the_position_closed(live):
    res = await live.executor.execute(open_intent(qty=0.01, stop=49_000.0))
    live.fake.inject(Fault("fill_after_cancel", ALGO, "DELETE"))
    moved = await live.executor.execute(OrderIntent(IntentKind.MOVE_STOP, "BTCUSDT", Side.LONG, 0.01, "trail",
                                                    stop_price=49_500.0))
    assert moved.position_id == res.position_id
    # the old stop filled while we cancelled it: its fill is recorded, the position is closed,
    # the new stop (now pointless) is cancelled
    old = await live.pool.fetchrow("SELECT * FROM orders WHERE purpose='stop' ORDER BY created_at LIMIT 1")
    assert old["state"] == "filled"
    assert await live.pool.fetchval("SELECT count(*) FROM fills WHERE client_order_id=$1",
                                    old["client_order_id"]) == 1
    row = await live.pool.fetchrow("SELECT * FROM positions WHERE id=$1", res.position_id)
    assert row["status"] == "closed" and row["exit_reason"] == "stop_loss"
    assert live.fake.positions == {} and live.fake.open_orders_count() == 0
    report = await Reconciler(live.executor).run()
    assert report.ok and report.corrections == []


async def test_stop_triggering_on_the_venue_is_booked(live):
    res = await live.executor.execute(open_intent(qty=0.01, stop=49_000.0), take_profit=52_000.0)
    live.fake.set_mark("BTCUSDT", 48_800.0)
    report = await Reconciler(live.executor).run()
    assert report.ok and report.count("closed_on_exchange") == 1
    row = await live.pool.fetchrow("SELECT * FROM positions WHERE id=$1", res.position_id)
    assert row["status"] == "closed" and row["exit_reason"] == "stop_loss"
    assert float(row["exit_price"]) == pytest.approx(48_800.0)
    assert float(row["gross_pnl"]) == pytest.approx((48_800.0 - 50_000.0) * 0.01)
    assert live.fake.open_orders_count() == 0  # the take-profit was cancelled


async def test_every_order_is_stored_before_it_is_sent(live):
    seen: list[tuple[str, str | None]] = []

    async def check(method, path, params):
        if method == "POST" and path in (ENTRY, ALGO):
            cid = params.get("newClientOrderId") or params.get("clientAlgoId")
            seen.append((cid, await live.pool.fetchval("SELECT state FROM orders WHERE client_order_id=$1", cid)))

    live.fake.on_request = check
    res = await live.executor.execute(open_intent(qty=0.02, stop=49_000.0), take_profit=52_000.0)
    await live.executor.execute(OrderIntent(IntentKind.REDUCE, "BTCUSDT", Side.LONG, 0.01, "partial"))
    await live.executor.close(res.position_id, "consensus_close")
    assert len(seen) >= 5  # entry, stop, TP, reduce, new stop, close
    assert all(state == "pending" for _, state in seen), seen


async def test_venue_silent_entry_stays_pending_blocks_entries_and_reconcile_protects(live):
    # the order is executed, then every answer about it fails until the venue recovers
    # (4 lookups, each a read tried READ_ATTEMPTS times)
    live.fake.inject(Fault("timeout", ENTRY, "POST", delay=1.5),
                     Fault("status", "/fapi/v1/order", "GET", status=503, msg="busy", times=4 * READ_ATTEMPTS))
    res = await live.executor.execute(open_intent(qty=0.01, stop=49_000.0))
    assert res.status == "pending" and not live.executor.entries_allowed
    cid = await _entry_cid(live.pool)
    assert (await live.pool.fetchrow("SELECT state FROM orders WHERE client_order_id=$1", cid))["state"] == "pending"
    assert live.fake.positions and not live.venue_protected()  # the gap reconciliation closes
    report = await Reconciler(live.executor).run()
    assert report.ok and live.executor.entries_allowed
    assert report.count("resolved_pending") == 1 and report.count("booked_entry") == 1
    assert live.venue_protected() and live.sends(cid) == 1
