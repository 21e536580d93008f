"""Reconciliation and bad input against the fake Binance server (real ccxt client)."""

from __future__ import annotations

import pytest

from quorum.domain.models import IntentKind, OrderIntent, Side
from quorum.execution.binance import BinanceExchange
from quorum.execution.killswitch import KillSwitch
from quorum.execution.protection import Executor
from quorum.execution.reconcile import Reconciler

from .helpers import open_intent


async def test_missing_stop_is_replaced_and_recorded(live):
    res = await live.executor.execute(open_intent(qty=0.01, stop=49_000.0))
    for a in live.fake.algo.values():  # someone cancelled our stop on the website
        a["algoStatus"] = "CANCELED"
    assert not live.venue_protected()
    report = await Reconciler(live.executor).run()
    assert report.ok and report.count("replaced_stop") == 1 and report.count("order_synced") == 1
    assert live.venue_protected()
    ev = await live.pool.fetch("SELECT kind FROM reconciliation_events ORDER BY id")
    assert "replaced_stop" in [e["kind"] for e in ev]
    assert res.position_id


async def test_unknown_position_is_adopted_and_protected(live):
    live.fake.open_position_directly("ETHUSDT", -0.5, 3_000.0)
    report = await Reconciler(live.executor).run()
    assert report.ok and report.count("adopted_position") == 1 and report.count("replaced_stop") == 1
    assert live.venue_protected()
    pos = await live.executor.positions.open_for_symbol("ETHUSDT")
    assert pos is not None and pos.side is Side.SHORT and pos.quantity == pytest.approx(0.5)
    assert pos.stop_price > 3_000.0  # a short's stop is above the entry
    alert = await live.pool.fetchrow("SELECT * FROM alerts WHERE kind='adopted_position'")
    assert alert is not None
    # adopted positions are closed like ours by the kill switch
    report = await KillSwitch(live.executor).engage("test")
    assert report.ok and live.fake.positions == {} and live.fake.open_orders_count() == 0


async def test_reply_missing_fields_fails_reconciliation_clearly_and_blocks_entries(live):
    # positionRisk rows arrive without positionAmt
    live.fake.positions["BTCUSDT"] = {"amt": 0.01, "entry": 50_000.0, "margin": 100.0}
    orig = live.fake._position_risk
    live.fake._position_risk = lambda p: [{k: v for k, v in r.items() if k != "positionAmt"} for r in orig(p)]
    report = await Reconciler(live.executor).run()
    assert not report.ok and "positionAmt" in (report.error or "")
    assert not live.executor.entries_allowed
    row = await live.pool.fetchrow("SELECT * FROM reconciliation_events WHERE kind='failed'")
    assert "positionAmt" in row["details"]["error"]
    assert await live.pool.fetchval("SELECT count(*) FROM alerts WHERE kind='reconciliation_failed'") == 1
    res = await live.executor.execute(open_intent(qty=0.01, stop=49_000.0))
    assert res.status == "refused" and "reconciliation" in res.reason


@pytest.mark.parametrize("intent,needle", [
    (open_intent("DOGEUSDT", qty=100.0, price=0.2, stop=0.19), "does not exist"),
    (open_intent(qty=0.01, stop=49_000.0, leverage=75), "above the bracket maximum 50"),
    (open_intent(qty=0.001, stop=49_000.0), "below the minimum 100"),
    (open_intent(qty=0.0004, stop=49_000.0), "below the minimum 0.001"),
    (open_intent(qty=0.01, stop=51_000.0), "wrong side"),
], ids=["unknown-symbol", "leverage-above-bracket", "below-min-notional", "qty-rounds-to-zero", "stop-wrong-side"])
async def test_bad_input_is_a_recorded_refusal_and_nothing_is_sent(live, intent, needle):
    n_before = len([r for r in live.fake.requests if r[0] == "POST" and r[1] == "/fapi/v1/order"])
    res = await live.executor.execute(intent)
    assert res.status in ("refused", "rejected") and needle in res.reason, res
    row = await live.pool.fetchrow("SELECT * FROM orders")
    assert row["state"] == "rejected" and needle in row["error"]
    ev = await live.pool.fetch("SELECT state FROM order_events WHERE client_order_id=$1", row["client_order_id"])
    assert [e["state"] for e in ev] == ["rejected"]
    assert len([r for r in live.fake.requests if r[0] == "POST" and r[1] == "/fapi/v1/order"]) == n_before
    assert live.fake.positions == {}


async def test_too_many_decimals_are_rounded_to_the_step_and_recorded(live):
    res = await live.executor.execute(open_intent(qty=0.0123456, stop=49_000.03))
    assert res.status == "opened" and res.quantity == pytest.approx(0.012)
    sent = next(q for m, p, q in live.fake.requests if m == "POST" and p == "/fapi/v1/order")
    assert sent["quantity"] == "0.012"
    stop = next(q for m, p, q in live.fake.requests if m == "POST" and p == "/fapi/v1/algoOrder")
    assert stop["triggerPrice"] == "49000" or float(stop["triggerPrice"]) == pytest.approx(49_000.0)
    assert stop["workingType"] == "MARK_PRICE" and stop["reduceOnly"] == "true" and stop["algoType"] == "CONDITIONAL"
    ev = await live.pool.fetchval("SELECT detail FROM order_events WHERE state='pending' ORDER BY id LIMIT 1")
    assert ev["quantity_rounded_from"] == pytest.approx(0.0123456)


async def test_partial_reduce_then_close_on_binance(live):
    res = await live.executor.execute(open_intent(qty=0.03, stop=49_000.0))
    r = await live.executor.execute(OrderIntent(IntentKind.REDUCE, "BTCUSDT", Side.LONG, 0.01, "partial"))
    assert r.status == "reduced" and live.venue_protected()
    assert abs(live.fake.positions["BTCUSDT"]["amt"]) == pytest.approx(0.02)
    live.fake.set_mark("BTCUSDT", 51_000.0)
    c = await live.executor.execute(OrderIntent(IntentKind.CLOSE, "BTCUSDT", Side.LONG, 0.02, "consensus_close"))
    assert c.status == "closed"
    row = await live.pool.fetchrow("SELECT * FROM positions WHERE id=$1", res.position_id)
    assert float(row["gross_pnl"]) == pytest.approx(0.02 * 1_000.0)
    assert float(row["net_pnl"]) == pytest.approx(float(row["gross_pnl"]) - float(row["fees"]))
    assert live.fake.positions == {} and live.fake.open_orders_count() == 0


async def test_funding_from_income_is_recorded_with_sign(live):
    res = await live.executor.execute(open_intent(qty=0.01, stop=49_000.0))
    live.fake.apply_funding("BTCUSDT", 0.001)  # positive rate: the long pays 0.5 USDT
    pos = await live.executor.positions.get(res.position_id)
    assert await live.executor.ledger.sync_funding(pos) == pytest.approx(0.5)
    assert float(await live.pool.fetchval("SELECT funding FROM positions")) == pytest.approx(0.5)


async def test_hedge_mode_account_blocks_entries(live, pool):
    live.fake.dual_side = True
    ex = Executor(live.exchange, pool, "live")
    report = await Reconciler(ex).run()
    assert not report.ok and "hedge mode" in report.error and not ex.entries_allowed


async def test_demo_flag_uses_ccxt_demo_trading():
    ex = BinanceExchange("k", "s", demo=True)
    try:
        assert "demo-fapi.binance.com" in ex.client.urls["api"]["fapiPrivate"]
    finally:
        await ex.close()


async def test_both_venues_implement_the_protocol_and_weight_is_recorded(live, pool):
    from quorum.execution.exchange import Exchange
    from quorum.execution.paper import PaperExchange
    from quorum.metrics import EXCHANGE_WEIGHT

    assert isinstance(live.exchange, Exchange) and isinstance(PaperExchange(pool), Exchange)
    EXCHANGE_WEIGHT.set(0)
    await live.exchange.balance()
    used = len(live.fake.request_times)  # the fake counts every request of the last minute
    assert EXCHANGE_WEIGHT._value.get() == used
