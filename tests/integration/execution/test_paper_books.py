"""The paper venue keeps its books in memory and writes only what changed (issue: the paper
path off the database's critical path): a restarted venue reads back exactly what the running
one held, and round trips are paid for changes only — none for a flat symbol's price, none for
any read. Round trips are counted on the wire (tests/fakes/pg_wire.py)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import asyncpg
import pytest

from quorum.execution.exchange import OrderRejected, market_order, stop_order, take_profit_order
from quorum.store.db import create_pool
from tests.fakes.pg_wire import PgWireProxy

from .helpers import T0, Clock, bar, paper


@pytest.fixture
async def counted(pool: asyncpg.Pool, pg_url: str) -> AsyncIterator[tuple[asyncpg.Pool, PgWireProxy]]:
    """A second pool on the (emptied) test database, through a round-trip counting proxy."""
    proxy = await PgWireProxy().start()
    counted_pool = await create_pool(proxy.dsn(pg_url), min_size=1, max_size=2)
    try:
        yield counted_pool, proxy
    finally:
        await counted_pool.close()
        await proxy.stop()


async def _state(ex) -> dict:  # type: ignore[no-untyped-def]
    return {"positions": await ex.fetch_positions(), "open": await ex.fetch_open_orders(),
            "fills": {s: await ex.fetch_fills(s) for s in ("BTCUSDT", "ETHUSDT")},
            "funding": await ex.funding_history(), "balance": await ex.balance(), "held": await ex.held()}


async def test_a_restarted_venue_holds_exactly_what_the_running_one_held(pool: asyncpg.Pool) -> None:
    clock = Clock()
    ex = paper(pool, clock, funding_rate=0.0001)
    await ex.on_price("BTCUSDT", 50_000.0, T0)
    await ex.on_price("ETHUSDT", 3_000.0, T0)
    await ex.set_leverage("BTCUSDT", 5)
    await ex.create_order(market_order("e1", "BTCUSDT", "buy", 0.05))
    await ex.create_order(stop_order("s1", "BTCUSDT", "sell", 0.05, 49_000.0))
    await ex.create_order(take_profit_order("t1", "BTCUSDT", "sell", 0.02, 51_000.0))
    await ex.create_order(market_order("e2", "ETHUSDT", "sell", 1.0))
    t = T0
    for i in range(100):  # 8 h 20 min of bars: funding twice, the take-profit fills on the last ones
        price = 50_000.0 + 12.0 * i
        await ex.on_bar("BTCUSDT", bar(t, price, price + 20, price - 20, price + 12))
        t += 300_000
    await ex.cancel_order("ETHUSDT", "missing")
    await ex.flush()
    before = await _state(ex)
    assert before["funding"] and "t1" in {f.client_order_id for f in before["fills"]["BTCUSDT"]}  # funded, TP hit

    again = paper(pool, clock)  # a new process on the same account
    assert await _state(again) == before
    with pytest.raises(OrderRejected):  # the client ids it has seen are known after the restart too
        await again.create_order(market_order("e1", "BTCUSDT", "buy", 0.05))


async def test_round_trips_are_paid_for_changes_only(counted: tuple[asyncpg.Pool, PgWireProxy]) -> None:
    pool, proxy = counted
    ex = paper(pool, Clock())
    await ex.on_price("BTCUSDT", 50_000.0, T0)  # first sight of a symbol: stored
    await ex.on_price("ETHUSDT", 3_000.0, T0)
    await ex.create_order(market_order("e1", "BTCUSDT", "buy", 0.01))
    await ex.create_order(stop_order("s1", "BTCUSDT", "sell", 0.01, 49_000.0))
    await ex.flush()

    proxy.reset()
    for k in range(1, 50):  # a flat symbol's prices and bars, and every kind of read
        await ex.on_price("ETHUSDT", 3_000.0 + k, T0 + k * 300_000)
        await ex.on_bar("ETHUSDT", bar(T0 + k * 300_000, 3_000.0, 3_010.0, 2_990.0, 3_001.0))
        await ex.held()
        await ex.fetch_positions()
        await ex.fetch_open_orders("BTCUSDT")
        await ex.fetch_fills("BTCUSDT")
        await ex.funding_history("BTCUSDT")
        await ex.balance()
        await ex.fetch_order("BTCUSDT", "s1")
    assert proxy.snapshot().round_trips == 0

    await ex.on_bar("BTCUSDT", bar(T0, 50_000.0, 50_100.0, 49_900.0, 50_050.0))  # held, nothing happens
    assert proxy.snapshot().round_trips == 0  # ... its progress waits for the step's end
    await ex.flush()
    assert proxy.snapshot().round_trips == 1  # one statement for every mark still in memory
    await ex.flush()
    assert proxy.snapshot().round_trips == 1  # nothing left to write

    proxy.reset()
    await ex.create_order(market_order("x1", "BTCUSDT", "sell", 0.01, reduce_only=True))  # fill, close, expire
    assert proxy.snapshot().round_trips == 1  # all of it in one atomic statement
