"""`quorum run`'s start (build the engine, reconcile, re-protect, catch up) through a Postgres outage.

The start is crash-only, so when the database goes away in the middle of it the service waits for
Postgres and runs the whole start again instead of exiting (found by the soak: an outage during
reconcile once ended `quorum run` with AdminShutdownError).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import asyncpg
import structlog

from quorum.store.db import database_answers, wait_for_database

log = structlog.get_logger(__name__)


def database_lost_in(exc: BaseException) -> bool:
    """True when `exc` (or what caused it) is a lost connection to Postgres."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, asyncpg.PostgresConnectionError | asyncpg.exceptions.OperatorInterventionError
                      | asyncpg.InterfaceError):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


async def start_through_outages(start: Callable[[], Awaitable[Any]], pool: asyncpg.Pool, url: str,
                                stopped: asyncio.Event) -> Any | None:
    """Run the engine's start (`start()`); when Postgres goes away during it, wait for the database
    and start again from the beginning (the start is crash-only: reconcile, re-protect, catch up).
    Anything else propagates. None when a stop signal came first."""
    while not stopped.is_set():
        try:
            return await start()
        except Exception as exc:
            if await database_answers(pool) and not database_lost_in(exc):
                raise
            log.warning("service.start_interrupted", reason="database lost during the start",
                        error=type(exc).__name__, hint="waiting for Postgres; the start runs again")
        if not await wait_for_database(url, stop=stopped):
            return None
        await asyncio.sleep(1.0)
    return None
