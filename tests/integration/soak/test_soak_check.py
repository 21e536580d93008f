"""The soak's independent checker (benchmarks/soak_check.py): its own 1-minute path agrees with the
fake Binance's documented one, it passes a clean record made by the REAL paper venue + executor
(wired as `quorum run` wires them, on the live-style fake serving real data), and it catches each
way a record can be wrong: a stop fill at the wrong bar or price, a stop crossed but not filled,
a lost fill, a wallet off by 1 USDT, a stop order that never existed."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import numpy as np
import pytest
from benchmarks.soak_check import StopJudge, check_record
from benchmarks.soak_paths import (
    MinuteBars,
    coverage_segments,
    load_minutes,
    market_fill_price,
    minute_path,
    stop_reference,
)

from quorum.backtest.request import parse_time
from quorum.config import Settings
from quorum.domain.models import IntentKind, OrderIntent, Side
from quorum.market.data_files import load_candles
from quorum.store.db import create_pool
from tests.fakes.binance_live import one_minute_path
from tests.integration.engine.live_paper import paper_app, settings_for, start_fake

MIN = 60_000
SYMBOLS = ("BTCUSDT", "ETHUSDT")


def _ms(text: str) -> int:
    t = parse_time(text, "t")
    assert t is not None
    return t


# --- the 1-minute path, by hand ---------------------------------------------------------------------
def _bars(*five: tuple[float, float, float, float]) -> MinuteBars:
    return minute_path(np.arange(len(five)) * 5 * MIN, *(np.array([b[k] for b in five]) for k in range(4)))


def test_minute_path_on_hand_written_bars() -> None:
    # open nearer the low: o → low → mid → high → (high + close)/2 → close
    up = _bars((100.0, 110.0, 96.0, 104.0))
    assert list(zip(up.o, up.h, up.lo, up.c, strict=True)) == [
        (100.0, 100.0, 96.0, 96.0), (96.0, 103.0, 96.0, 103.0), (103.0, 110.0, 103.0, 110.0),
        (110.0, 110.0, 107.0, 107.0), (107.0, 107.0, 104.0, 104.0)]
    # open nearer the high: o → high → mid → low → (low + close)/2 → close
    down = _bars((100.0, 101.0, 90.0, 95.0))
    assert list(down.o) == [100.0, 101.0, 95.5, 90.0, 92.5]
    assert list(down.c) == [101.0, 95.5, 90.0, 92.5, 95.0]
    assert list(down.h) == [101.0, 101.0, 95.5, 92.5, 95.0] and list(down.lo) == [100.0, 95.5, 90.0, 90.0, 92.5]
    # a zero-range bar: five flat minutes
    flat = _bars((7.0, 7.0, 7.0, 7.0))
    assert {*flat.o, *flat.h, *flat.lo, *flat.c} == {7.0}
    assert list(flat.t) == [0, MIN, 2 * MIN, 3 * MIN, 4 * MIN]
    # crossings: a sell stop at 97 is reached in minute 0 of `up` (low 96); a buy stop at 108 in minute 2
    assert up.first_cross(97.0, True, 0, 10 * MIN) == 0 and up.first_cross(108.0, False, 0, 10 * MIN) == 2
    # only bars opening at/after the start: from minute 3, which opened beyond 108 (a gap: filled at the open)
    assert up.first_cross(108.0, False, 3 * MIN, 10 * MIN) == 3 and stop_reference(up, 3, 108.0, False) == 110.0
    assert stop_reference(up, 2, 108.0, False) == 108.0 and up.first_cross(110.5, False, 0, 10 * MIN) is None
    # `through_ms` is the last open time looked at: minute 2 (open 95.5, low 90) is the first to reach 90
    assert down.first_cross(90.0, True, 0, MIN) is None and down.first_cross(90.0, True, 0, 2 * MIN) == 2


def test_minute_path_agrees_with_the_fake_on_real_bars(shared_data: Path) -> None:
    five = load_candles(shared_data / "BTCUSDT-futures-5m.csv.gz").between(_ms("2025-10-10T18:00"),
                                                                          _ms("2025-10-11T06:00"))
    mine = minute_path(five.open_ms, five.open, five.high, five.low, five.close)
    theirs = [b for k in range(len(five)) for b in one_minute_path(
        *(float(a[k]) for a in (five.open, five.high, five.low, five.close, five.volume)))]
    assert len(theirs) == len(mine) == 5 * len(five)
    assert [(b[0], b[1], b[2], b[3]) for b in theirs] == list(zip(mine.o, mine.h, mine.lo, mine.c, strict=True))
    # served time = data time + shift: the same bars, 4 h later
    a, b, shift = _ms("2025-10-10T18:00"), _ms("2025-10-10T19:00"), 4 * 60 * MIN
    plain, shifted = (load_minutes(shared_data, "BTCUSDT", a + d, b + d, d) for d in (0, shift))
    k, k_shifted = plain.index(a), shifted.index(a + shift)
    assert k is not None and k_shifted is not None and shifted.o[k_shifted] == plain.o[k]


def test_coverage_segments_measure_position_and_stop() -> None:
    # long 2 from t=0, stop of 2 on [0, 10), of 1 on [15, 30), position closed at 40
    segs = coverage_segments([(0, 2.0), (40, -2.0)], [(0, 10, 2.0), (15, 30, 1.0)], end_ms=100)
    assert [(s.start, s.end, s.stop_qty) for s in segs] == [(0, 10, 2.0), (10, 15, 0.0), (15, 30, 1.0),
                                                             (30, 40, 0.0)]


def _tp_took_it(bars: MinuteBars, stop: float, tp: float) -> Any:
    """The checker's verdict on a short's stop that EXPIRED because its take-profit filled on minute 1
    (both placed at minute 1)."""
    order = {"client_order_id": "s", "symbol": "X", "side": "buy", "type": "stop_market", "reduce_only": True,
             "quantity": 1.0, "stop_price": stop, "state": "expired", "time_ms": MIN, "closed_ms": MIN}
    take = {**order, "client_order_id": "tp", "type": "take_profit_market", "stop_price": tp, "state": "filled"}
    data = {"orders": [order, take],
            "trades": [{"trade_id": 1, "client_order_id": "e", "symbol": "X", "side": "sell", "quantity": 1.0,
                        "reason": None, "time_ms": MIN},
                       {"trade_id": 2, "client_order_id": "tp", "symbol": "X", "side": "buy", "quantity": 1.0,
                        "reason": "take_profit", "time_ms": MIN}]}
    return StopJudge(data, {"X": bars}, 5 * MIN, 1.0, 2.0).judge(order)


def test_stop_and_take_profit_on_one_bar() -> None:
    """The stop comes first unless the bar opened beyond the take-profit (the fill model's rule)."""
    # minute 1 of this bar: 96 → 103. It opened beyond the TP at 97 and then reached the stop at 102:
    # the take-profit fills first, the stop expires — right
    assert _tp_took_it(_bars((100.0, 110.0, 96.0, 104.0)), 102.0, 97.0) is None
    # minute 1 of this bar: 101 → 95.5. It opened beyond the stop at 100.5 (gap) and reached the TP at 96
    # later: the stop fills at the open; a TP fill there is wrong
    got = _tp_took_it(_bars((100.0, 101.0, 90.0, 95.0)), 100.5, 96.0)
    assert got["why"] == "stop and take-profit on one bar: the stop comes first"
    assert got["expected_time_ms"] == MIN and got["expected_reference"] == 101.0


# --- a real record -------------------------------------------------------------------------------
@dataclass
class Record:
    url: str
    settings: Settings
    data: Path
    start_ms: int
    end_ms: int

    async def check(self) -> dict[str, Any]:
        s = self.settings
        return await check_record(self.url, data_dir=self.data, symbols=SYMBOLS, start_ms=self.start_ms,
                                  end_ms=self.end_ms, initial_capital=s.initial_capital,
                                  taker_fee=s.taker_fee_pct / 100, spread_bps=s.slippage_spread_bps,
                                  impact_bps_per_100k=s.slippage_impact_bps_per_100k)


_TRUNCATE = """SELECT string_agg(quote_ident(tablename), ', ') FROM pg_tables
               WHERE schemaname = 'public' AND tablename <> 'schema_migrations'"""


@pytest.fixture(scope="module")
async def record(pg_url: str, shared_data: Path) -> AsyncIterator[Record]:
    """Four hours of paper trading on 2025-10-10 (BTC long with a stop the sell-off crosses, ETH
    short with a take-profit, the 16:00 funding), made by the real venue and executor through the
    engine's loop, then judged by the tests below (each puts back what it tampers with)."""
    t0, until = _ms("2025-10-10T15:50"), _ms("2025-10-10T19:50")
    pool = await create_pool(pg_url, min_size=1, max_size=5)
    fake = await start_fake(shared_data, SYMBOLS, t0 - 10 * MIN)
    settings = settings_for(SYMBOLS, min_ai_confidence=1.0)  # the voters never trade: only our two positions
    try:
        async with pool.acquire() as conn:
            await conn.execute(f"TRUNCATE {await conn.fetchval(_TRUNCATE)} RESTART IDENTITY CASCADE")
        app = await paper_app(settings, pool, fake)
        await app.engine.start()
        await app.clock.sleep_until(t0)
        for sym, side, qty, stop, tp in (("BTCUSDT", Side.LONG, 0.005, 0.988, None),
                                         ("ETHUSDT", Side.SHORT, 0.1, 1.02, 0.97)):
            await app.venue_feed.price_now(sym, t0)
            price = await app.market.last_price(sym)
            assert price is not None
            res = await app.executor.open_position(
                OrderIntent(IntentKind.OPEN, sym, side, qty, "entry", price_hint=price,
                            stop_price=round(price * stop, 2), leverage=3),
                position_id=f"p-soak-{sym}", take_profit=None if tp is None else round(price * tp, 2))
            assert res.status == "opened"
        await app.engine.run(until_ms=until)
        await app.close()
        yield Record(pg_url, settings, shared_data, t0, until)
    finally:
        await fake.stop()
        await pool.close()


async def _one(url: str, sql: str, *args: Any) -> Any:
    conn = await asyncpg.connect(url)
    try:
        return await conn.fetchrow(sql, *args) if sql.lstrip().upper().startswith("SELECT") else \
            await conn.execute(sql, *args)
    finally:
        await conn.close()


async def _stop_fill(url: str) -> asyncpg.Record:
    row = await _one(url, "SELECT * FROM paper_trades WHERE reason='stop' ORDER BY trade_id LIMIT 1")
    assert row is not None, "the scenario must cross a stop"
    return row


async def test_a_clean_record_passes(record: Record) -> None:
    r = await record.check()
    assert r["stops_checked"] >= 2 and r["stops_unchecked"] == 0
    assert r["missed_stop_fills"] == 0, r["missed_stop_details"]
    assert r["lost_fills"] == 0 and r["duplicate_client_ids"] == 0
    assert r["equity_identity_gap_usd"] < 1e-6, r
    assert r["unprotected_beyond_interval_seconds"] == 0 and r["undersized_stop_seconds"] == 0
    assert r["trades"] == 2 and r["fills"] >= 4 and r["liquidations"] == 0
    # the 16:00 funding of both positions, at the rates in the files, amounts consistent
    assert r["funding_events"] == 2 == r["funding_events_at_published_rate"]
    assert r["funding_amount_errors"] == 0 == r["funding_quantity_errors"]
    assert r["decision_cycles_expected"] == 16 == r["decision_cycles_done"]
    # and the stop the sell-off crossed is on the record, at the 1m bar and price the path says
    fill = await _stop_fill(record.url)
    five = load_candles(record.data / f"{fill['symbol']}-futures-5m.csv.gz").between(
        record.start_ms, record.end_ms)
    minutes = [(int(five.open_ms[k]) + i * MIN, b) for k in range(len(five)) for i, b in enumerate(one_minute_path(
        *(float(a[k]) for a in (five.open, five.high, five.low, five.close, five.volume))))]
    order = await _one(record.url, "SELECT * FROM paper_orders WHERE client_order_id=$1", fill["client_order_id"])
    stop = float(order["stop_price"])
    t, bar = next((t, b) for t, b in minutes if t >= order["time_ms"] and b[2] <= stop)
    assert int(fill["time_ms"]) == t
    s = record.settings
    want = market_fill_price(min(bar[0], stop), float(fill["quantity"]), True, s.slippage_spread_bps,
                             s.slippage_impact_bps_per_100k)
    assert abs(float(fill["price"]) - want) <= 1e-9 * want


async def test_a_stop_fill_one_minute_late_is_caught(record: Record) -> None:
    fill = await _stop_fill(record.url)
    await _one(record.url, "UPDATE paper_trades SET time_ms=time_ms+60000 WHERE trade_id=$1", fill["trade_id"])
    try:
        r = await record.check()
    finally:
        await _one(record.url, "UPDATE paper_trades SET time_ms=$2 WHERE trade_id=$1", fill["trade_id"],
                   fill["time_ms"])
    assert r["missed_stop_fills"] == 1
    d = r["missed_stop_details"][0]
    assert d["client_order_id"] == fill["client_order_id"] and d["why"] == "filled at another bar"
    assert d["expected_time_ms"] == fill["time_ms"] and d["actual_time_ms"] == fill["time_ms"] + MIN


async def test_a_stop_fill_at_another_price_is_caught(record: Record) -> None:
    fill = await _stop_fill(record.url)
    await _one(record.url, "UPDATE paper_trades SET price=price*1.0001 WHERE trade_id=$1", fill["trade_id"])
    try:
        r = await record.check()
    finally:
        await _one(record.url, "UPDATE paper_trades SET price=$2 WHERE trade_id=$1", fill["trade_id"], fill["price"])
    assert r["missed_stop_fills"] == 1 and r["missed_stop_details"][0]["why"] == "filled at another price"


async def test_a_stop_crossed_but_not_filled_is_caught(record: Record) -> None:
    fill = await _stop_fill(record.url)
    order = await _one(record.url, "SELECT * FROM paper_orders WHERE client_order_id=$1", fill["client_order_id"])
    # as if the venue had never seen the crossing: no trade, the stop still open
    await _one(record.url, "DELETE FROM paper_trades WHERE trade_id=$1", fill["trade_id"])
    await _one(record.url, "UPDATE paper_orders SET state='accepted', closed_ms=NULL WHERE client_order_id=$1",
               order["client_order_id"])
    try:
        r = await record.check()
    finally:
        await _one(record.url, """INSERT INTO paper_trades (trade_id, account, client_order_id, symbol, side,
                     quantity, price, fee, realized_pnl, liquidity, reason, time_ms)
                   VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12)""", *fill.values())
        await _one(record.url, "UPDATE paper_orders SET state=$2, closed_ms=$3 WHERE client_order_id=$1",
                   order["client_order_id"], order["state"], order["closed_ms"])
    assert r["missed_stop_fills"] == 1
    d = r["missed_stop_details"][0]
    assert d["why"] == "crossed but not filled" and d["expected_time_ms"] == fill["time_ms"]
    assert r["fills_without_venue_trade"] == 1  # our record has a fill the venue no longer shows


async def test_a_lost_fill_is_caught(record: Record) -> None:
    row = await _one(record.url, "SELECT * FROM fills ORDER BY id LIMIT 1")
    await _one(record.url, "DELETE FROM fills WHERE id=$1", row["id"])
    try:
        r = await record.check()
    finally:
        cols = list(row.keys())
        await _one(record.url, f"INSERT INTO fills ({', '.join(cols)}) VALUES "
                               f"({', '.join(f'${k + 1}' for k in range(len(cols)))})", *row.values())
    assert r["lost_fills"] == 1 and r["venue_trades_not_recorded"] == 1 and r["lost_fill_ids"] == [row["trade_id"]]


async def test_a_wallet_off_by_one_usdt_is_caught(record: Record) -> None:
    await _one(record.url, "UPDATE paper_accounts SET wallet_balance=wallet_balance+1")
    try:
        r = await record.check()
    finally:
        await _one(record.url, "UPDATE paper_accounts SET wallet_balance=wallet_balance-1")
    assert abs(r["equity_gap_venue_usd"] - 1) < 1e-6 and abs(r["equity_gap_ledger_usd"] - 1) < 1e-6
    assert abs(r["equity_identity_gap_usd"] - 1) < 1e-6


async def test_a_stop_order_that_never_existed_is_caught(record: Record) -> None:
    fill = await _stop_fill(record.url)
    order = await _one(record.url, "SELECT * FROM paper_orders WHERE client_order_id=$1", fill["client_order_id"])
    await _one(record.url, "DELETE FROM paper_orders WHERE client_order_id=$1", order["client_order_id"])
    try:
        r = await record.check()
    finally:
        cols = list(order.keys())
        await _one(record.url, f"INSERT INTO paper_orders ({', '.join(cols)}) VALUES "
                               f"({', '.join(f'${k + 1}' for k in range(len(cols)))})", *order.values())
    assert r["missed_stop_fills"] == 1 and r["missed_stop_details"][0]["why"] == "stop fill without a stop order"
    # the position lay bare from that stop's placement until it was closed
    assert r["unprotected_beyond_interval_seconds"] > 0
    ep = r["unprotected_episodes"][0]
    assert ep["symbol"] == fill["symbol"] and ep["start_ms"] == order["time_ms"] and ep["end_ms"] == fill["time_ms"]
    assert (await record.check())["missed_stop_fills"] == 0  # put back: clean again
