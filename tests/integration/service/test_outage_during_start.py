"""Postgres going away in the middle of the service's start (after the database answered, while
the engine is being built and reconciled) must not end `quorum run`: the start waits for the
database and runs again from the beginning. Found by the soak: a 60-s outage that began during a
restart ended the process with AdminShutdownError (exit 1). Uses a private Postgres this module
starts and stops (never the shared one)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import asyncpg
import pytest

from quorum.api.restart import database_lost_in, start_through_outages
from tests.outages import PrivatePostgres


@pytest.fixture
async def pg() -> AsyncIterator[PrivatePostgres]:
    server = PrivatePostgres()
    await server.start()
    try:
        yield server
    finally:
        await server.close()


async def _restart_after(pg: PrivatePostgres, seconds: float) -> None:
    await asyncio.sleep(seconds)
    await pg.start()


async def test_an_outage_during_the_start_waits_and_starts_again(pg: PrivatePostgres) -> None:
    pool = await asyncpg.create_pool(pg.url, min_size=1, max_size=2)
    starts: list[str] = []
    restart: list[asyncio.Task[None]] = []

    async def start() -> str:
        starts.append("start")
        if len(starts) == 1:  # the outage begins while the first start is under way
            await pg.stop("fast")  # clients are told "terminating connection due to administrator command"
            restart.append(asyncio.create_task(_restart_after(pg, 2.0)))
            await pool.fetchval("SELECT 1")
        return "engine"

    try:
        got = await asyncio.wait_for(start_through_outages(start, pool, pg.url, asyncio.Event()), 60)
    finally:
        await asyncio.gather(*restart)
        pool.terminate()
    assert got == "engine"
    assert starts == ["start", "start"]


async def test_an_error_that_is_not_the_database_still_ends_the_start(pg: PrivatePostgres) -> None:
    pool = await asyncpg.create_pool(pg.url, min_size=1, max_size=2)
    starts: list[str] = []

    async def start() -> str:
        starts.append("start")
        raise ValueError("a bug, not an outage")

    try:
        with pytest.raises(ValueError):
            await start_through_outages(start, pool, pg.url, asyncio.Event())
    finally:
        pool.terminate()
    assert starts == ["start"]


async def test_a_stop_signal_while_the_database_is_gone_ends_the_start_quietly(pg: PrivatePostgres) -> None:
    pool = await asyncpg.create_pool(pg.url, min_size=1, max_size=2)
    stopped = asyncio.Event()

    async def start() -> str:
        await pg.stop("fast")
        asyncio.get_running_loop().call_later(1.5, stopped.set)
        await pool.fetchval("SELECT 1")
        return "engine"

    try:
        got = await asyncio.wait_for(start_through_outages(start, pool, pg.url, stopped), 60)
    finally:
        pool.terminate()
    assert got is None


def test_lost_connections_are_recognised_through_the_cause_chain() -> None:
    lost = asyncpg.exceptions.AdminShutdownError("terminating connection due to administrator command")
    try:
        try:
            raise lost
        except asyncpg.PostgresError as exc:
            raise RuntimeError("spent_on failed") from exc
    except RuntimeError as outer:
        assert database_lost_in(outer)
    assert not database_lost_in(asyncpg.exceptions.UniqueViolationError("duplicate key"))
    assert not database_lost_in(ValueError("no"))
