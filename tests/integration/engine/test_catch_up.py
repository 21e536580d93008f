"""After a restart, the paper venue replays every bar it missed, in order, before anything new:
a stop crossed while Quorum was down fills at that 1m bar's stop (or its open, if gapped through),
with that bar's time — not at the first bar after the restart. Funding falls due at the rate
Binance published for each event, not at PAPER_FUNDING_RATE."""

from __future__ import annotations

from pathlib import Path

import asyncpg

from quorum.backtest.request import parse_time
from quorum.domain.fills import FillModel
from quorum.domain.models import IntentKind, OrderIntent, Side
from quorum.market.data_files import load_candles
from tests.fakes.binance_live import one_minute_path
from tests.integration.engine.live_paper import paper_app, settings_for, start_fake

SYMBOL = "BTCUSDT"
MIN = 60_000


def _ms(text: str) -> int:
    t = parse_time(text, "t")
    assert t is not None
    return t


async def test_stop_crossed_while_down_fills_at_its_bar_after_restart(pool: asyncpg.Pool, shared_data: Path) -> None:
    t0 = _ms("2025-10-10T19:00")  # a long, two hours before the 21:15 liquidation cascade
    restart = _ms("2025-10-11T00:00")
    fake = await start_fake(shared_data, [SYMBOL], t0 - 10 * MIN)
    settings = settings_for([SYMBOL], paper_funding_rate=0.0)
    try:
        app = await paper_app(settings, pool, fake, account="paper-catchup")
        await app.engine.start()
        await app.clock.sleep_until(t0)
        await app.venue_feed.price_now(SYMBOL, t0)
        price = (await app.exchange.fetch_positions(), await app.market.last_price(SYMBOL))[1]
        assert price is not None
        res = await app.executor.open_position(OrderIntent(
            IntentKind.OPEN, SYMBOL, Side.LONG, 0.01, "entry", price_hint=price, stop_price=round(price * 0.97, 1),
            leverage=3), position_id="p-catchup-1")
        assert res.status == "opened"
        await app.close()  # Quorum goes down with the position protected on the venue

        stop_row = await pool.fetchrow("SELECT client_order_id, stop_price FROM paper_orders WHERE "
                                       "account='paper-catchup' AND type='stop_market' AND state='accepted'")
        stop = float(stop_row["stop_price"])
        # where the price path crossed the stop while nobody watched (the fake's 1m path)
        five = load_candles(shared_data / f"{SYMBOL}-futures-5m.csv.gz").between(t0, restart)
        minutes = [(int(five.open_ms[k]) + i * MIN, bar) for k in range(len(five)) for i, bar in enumerate(
            one_minute_path(*(float(a[k]) for a in (five.open, five.high, five.low, five.close, five.volume))))]
        bar_open, (o, _h, _low, _c, _v) = next((t, b) for t, b in minutes if b[2] <= stop)
        ref = min(o, stop)

        await fake.clock.sleep_until(restart + 3_000)  # ... five hours later Quorum starts again
        app2 = await paper_app(settings, pool, fake, account="paper-catchup")
        await app2.engine.start()
        await app2.engine.step(restart)
        fills = await pool.fetch("SELECT price, time_ms, reason, quantity FROM paper_trades WHERE "
                                 "account='paper-catchup' AND client_order_id=$1", stop_row["client_order_id"])
        assert len(fills) == 1
        expected = FillModel.from_pct(settings.taker_fee_pct, settings.maker_fee_pct, settings.slippage_spread_bps,
                                      settings.slippage_impact_bps_per_100k)
        want_price = expected.market_price("sell", ref, float(fills[0]["quantity"]) * ref)
        assert int(fills[0]["time_ms"]) == bar_open  # the crossing bar, not the restart
        assert abs(float(fills[0]["price"]) - want_price) < 1e-6 and fills[0]["reason"] == "stop"
        pos = await pool.fetchrow("SELECT status, exit_reason, closed_at FROM positions WHERE id='p-catchup-1'")
        assert pos["status"] == "closed" and pos["exit_reason"] == "stop_loss"
        assert int(pos["closed_at"].timestamp() * 1000) == bar_open
        assert app2.engine.stats.catch_up_bars >= (restart - t0) // MIN - 2
        await app2.close()
    finally:
        await fake.stop()


async def test_funding_is_charged_at_the_rate_binance_published(pool: asyncpg.Pool, shared_data: Path) -> None:
    start, funding_t = _ms("2025-10-09T15:40"), _ms("2025-10-09T16:00")
    # Binance published nothing for ETH: the fallback, counted
    fake = await start_fake(shared_data, [SYMBOL, "ETHUSDT"], start - 10 * MIN, no_funding=["ETHUSDT"])
    published = fake.funding[SYMBOL].last_rate(funding_t)
    assert published is not None
    # min_ai_confidence=1: the voters never trade on their own, only the two positions below exist
    settings = settings_for([SYMBOL, "ETHUSDT"], paper_funding_rate=0.0005, min_ai_confidence=1.0)
    assert published != settings.paper_funding_rate
    try:
        app = await paper_app(settings, pool, fake, account="paper-funding")
        await app.engine.start()
        await app.clock.sleep_until(start)
        for sym in (SYMBOL, "ETHUSDT"):
            await app.venue_feed.price_now(sym, start)
            price = await app.market.last_price(sym)
            assert price is not None
            res = await app.executor.open_position(OrderIntent(
                IntentKind.OPEN, sym, Side.LONG, round(200 / price, 3), "entry", price_hint=price,
                stop_price=round(price * 0.9, 1), leverage=2), position_id=f"p-funding-{sym}")
            assert res.status == "opened"
        await app.engine.run(until_ms=funding_t + 5 * MIN)
        rows = {r["symbol"]: r for r in await pool.fetch(
            "SELECT symbol, time_ms, rate, quantity, mark_price, amount FROM paper_funding "
            "WHERE account='paper-funding'")}
        assert int(rows[SYMBOL]["time_ms"]) == funding_t and float(rows[SYMBOL]["rate"]) == published
        qty, mark = float(rows[SYMBOL]["quantity"]), float(rows[SYMBOL]["mark_price"])
        assert abs(float(rows[SYMBOL]["amount"]) - qty * mark * published) < 1e-9
        assert float(rows["ETHUSDT"]["rate"]) == settings.paper_funding_rate
        assert app.exchange.funding_stats == {"published": 1, "fallback": 1}
        assert app.runtime.funding["fallback"] == 1 and app.runtime.funding["published"] == 1
        # and the position record carries it (fees and funding in every P&L)
        funding = await pool.fetchval("SELECT funding FROM positions WHERE id=$1", f"p-funding-{SYMBOL}")
        assert abs(float(funding) - float(rows[SYMBOL]["amount"])) < 1e-9
        await app.close()
    finally:
        await fake.stop()
