"""No single fault ends paper trading on live data (wired as `quorum run` wires it, against the
live-style fake Binance and the real Postgres):

- market-data HTTP 500s that outlast the retries: each failing step is skipped and counted, the
  exchange is named on /health with the reason, one alert is raised; when the exchange answers again
  the loop recovers by itself, says so and resolves the alert — and the loop never ends;
- a Postgres outage mid-run: the loop waits (no fills, no entries) and, when the database returns,
  runs the same step again: every bar is processed, none twice, and the outage is recorded.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from quorum.api.health import check_market
from quorum.backtest.request import parse_time
from quorum.domain.models import IntentKind, OrderIntent, Side
from quorum.engine.runtime import wall_ms
from quorum.market.binance_rest import Backoff
from quorum.store.db import create_pool
from quorum.store.migrate import apply_migrations
from tests.integration.engine.live_paper import paper_app, settings_for, start_fake
from tests.outages import PrivatePostgres

SYMBOL = "BTCUSDT"
MIN = 60_000


def _ms(text: str) -> int:
    t = parse_time(text, "t")
    assert t is not None
    return t


async def _open_long(app: Any, t: int, pid: str) -> None:
    await app.venue_feed.price_now(SYMBOL, t)
    price = await app.market.last_price(SYMBOL)
    assert price is not None
    res = await app.executor.open_position(OrderIntent(
        IntentKind.OPEN, SYMBOL, Side.LONG, 0.002, "entry", price_hint=price, stop_price=round(price * 0.9, 1),
        leverage=2), position_id=pid)
    assert res.status == "opened"


async def test_persistent_market_data_500s_degrade_and_recover_without_ending_the_loop(
        pool: asyncpg.Pool, shared_data: Path) -> None:
    start = _ms("2025-09-02T10:03")
    fake = await start_fake(shared_data, [SYMBOL], start)
    # min_ai_confidence=1: the voters never trade; MAX_CONSECUTIVE_STEP_FAILURES=3
    settings = settings_for([SYMBOL], min_ai_confidence=1.0, max_consecutive_step_failures=3)
    try:
        app = await paper_app(settings, pool, fake, account="paper-faults")
        app.market.retry = Backoff(attempts=2, initial_s=0.001, max_s=0.002)  # fast retries for the test
        events: list[tuple[str, dict[str, Any]]] = []

        async def record(kind: str, payload: dict[str, Any]) -> None:
            events.append((kind, payload))

        app.runtime.listeners.append(record)
        await app.engine.start()
        await _open_long(app, start, "p-faults-1")

        fake.fail_next(500, retry_after=None, count=10_000, paths=("klines", "premiumIndex"), code=-1001,
                       msg="Internal error; unable to process your request. Please try again.")
        stats = await app.engine.run(until_ms=start + 20 * MIN)  # returns: the loop did not die
        assert stats.steps == 20 and app.engine.guard.failed_steps >= 10
        market = check_market(app.runtime, wall_ms())
        assert not market.ok and "HTTP 500" in market.detail and "klines" in market.detail
        assert "step_failures" in app.runtime.breakers  # 3 failed steps in a row: entries paused
        alerts = await pool.fetch("SELECT kind, severity, resolved_at FROM alerts WHERE mode='paper' ORDER BY id")
        assert [(a["kind"], a["resolved_at"] is None) for a in alerts if a["kind"] == "exchange_unavailable"] \
            == [("exchange_unavailable", True)]  # one alert for the whole outage
        assert [a["severity"] for a in alerts if a["kind"] == "step_failures"] == ["critical"]

        fake.failures.clear()  # the exchange answers again
        await app.engine.run(until_ms=start + 40 * MIN)
        assert check_market(app.runtime, wall_ms()).ok and app.runtime.exchange_ok
        assert app.engine.entry_block() is None  # resumed after 3 good steps, recorded
        resolved = await pool.fetchval("SELECT resolved_at FROM alerts WHERE kind='exchange_unavailable'")
        assert resolved is not None
        kinds = [(k, p.get("component")) for k, p in events if k in ("degraded", "recovered")]
        assert ("degraded", "exchange") in kinds and ("recovered", "exchange") in kinds
        # the bars missed while the market was down were caught up, in order: the venue saw them all
        until = await pool.fetchval("SELECT bar_until_ms FROM paper_symbols WHERE account='paper-faults' "
                                    "AND symbol=$1", SYMBOL)
        assert until == start + 40 * MIN
        await app.close()
    finally:
        await fake.stop()


class OutageClock:
    """The fake's step clock, except that reaching `at` stops Postgres (and starts it again
    `for_s` wall seconds later) — a database outage in the middle of a run."""

    def __init__(self, inner: Any, pg: PrivatePostgres, at: int, for_s: float) -> None:
        self.inner, self.pg, self.at, self.for_s = inner, pg, at, for_s
        self.speed = 1.0
        self.restarted: asyncio.Task[None] | None = None

    def now_ms(self) -> int:
        return int(self.inner.now_ms())

    async def sleep_until(self, ms: int) -> None:
        if ms >= self.at and self.restarted is None:
            await self.pg.stop()
            self.restarted = asyncio.create_task(self._restart())
        await self.inner.sleep_until(ms)

    async def _restart(self) -> None:
        await asyncio.sleep(self.for_s)
        await self.pg.start()

    def wake(self) -> None:
        return None


@pytest.fixture
async def private_pg() -> AsyncIterator[PrivatePostgres]:
    pg = PrivatePostgres()
    await pg.start()
    try:
        yield pg
    finally:
        await pg.close()


async def test_postgres_outage_suspends_trading_and_resumes_where_it_stopped(
        private_pg: PrivatePostgres, shared_data: Path) -> None:
    conn = await asyncpg.connect(private_pg.url)
    await apply_migrations(conn)
    await conn.close()
    pool = await create_pool(private_pg.url, min_size=1, max_size=5)
    start = _ms("2025-09-03T06:02")
    fake = await start_fake(shared_data, [SYMBOL], start)
    settings = settings_for([SYMBOL], min_ai_confidence=1.0)
    try:
        app = await paper_app(settings, pool, fake, account="paper-outage")
        await app.engine.start()
        await _open_long(app, start, "p-outage-1")
        clock = OutageClock(fake.clock, private_pg, at=start + 10 * MIN, for_s=4.0)
        app.engine.clock = clock
        stats = await asyncio.wait_for(app.engine.run(until_ms=start + 30 * MIN), 300)
        assert clock.restarted is not None and clock.restarted.done()
        assert app.engine.guard.database_outages == 1 and app.runtime.database_ok
        # no step was lost or done twice: 30 one-minute bars, each processed once, in order
        assert stats.steps >= 30
        until = await pool.fetchval("SELECT bar_until_ms FROM paper_symbols WHERE account='paper-outage' "
                                    "AND symbol=$1", SYMBOL)
        assert until == start + 30 * MIN
        outage = await pool.fetchrow("SELECT severity, message, resolved_at FROM alerts WHERE kind='database_outage'")
        assert outage is not None and outage["resolved_at"] is not None and "unreachable" in outage["message"]
        pos = await pool.fetchrow("SELECT status FROM positions WHERE id='p-outage-1'")
        assert pos["status"] == "open"  # still managed, still protected
        stops = await pool.fetchval("SELECT count(*) FROM paper_orders WHERE account='paper-outage' "
                                    "AND type='stop_market' AND state='accepted'")
        assert stops == 1
        await app.close()
    finally:
        await fake.stop()
        await pool.close()
