"""Persist market snapshots in `market_snapshots` keyed by their content hash.

The payload is the snapshot's canonical form (the exact JSON its hash is computed from), so
`content_hash(payload) == hash` can be re-checked at any time and the snapshot rebuilt with
`snapshot_from_payload`. Saving the same snapshot twice is a no-op.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import asyncpg

from quorum.domain.models import Breadth, Regime, Snapshot, TimeframeView, canonical
from quorum.store.positions import ms_to_dt

_INSERT = """INSERT INTO market_snapshots (hash, symbol, at, price, regime, flags, payload)
             VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (hash) DO NOTHING"""


def snapshot_row(s: Snapshot) -> tuple[Any, ...]:
    return (s.hash, s.symbol, ms_to_dt(s.time_ms), s.price, s.regime.value, list(s.flags), canonical(s.to_dict()))


def snapshot_from_payload(payload: Mapping[str, Any]) -> Snapshot:
    """Rebuild a Snapshot from its stored canonical payload (floats are the 8-digit rounded
    values, so the rebuilt snapshot has the same hash)."""
    views = tuple(
        TimeframeView(**{**v, "regime": Regime(v["regime"]), "recent_closes": tuple(v["recent_closes"])})
        for v in payload["timeframes"]
    )
    b = payload.get("breadth")
    return Snapshot(
        symbol=payload["symbol"], time_ms=int(payload["time_ms"]), price=payload["price"], timeframes=views,
        regime=Regime(payload["regime"]), funding_rate=payload.get("funding_rate"),
        next_funding_ms=payload.get("next_funding_ms"), open_interest=payload.get("open_interest"),
        book_imbalance=payload.get("book_imbalance"), breadth=Breadth(**b) if b else None,
        flags=tuple(payload.get("flags") or ()),
    )


class SnapshotRepository:
    """Insert-only store of snapshots (hash primary key; decisions reference it)."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    async def save(self, snapshot: Snapshot, conn: asyncpg.Connection | None = None) -> str:
        """Store a snapshot (idempotent) and return its hash."""
        row = snapshot_row(snapshot)
        await (conn or self._pool).execute(_INSERT, *row)
        return str(row[0])

    async def save_many(self, snapshots: Iterable[Snapshot]) -> list[str]:
        rows = [snapshot_row(s) for s in snapshots]
        if rows:
            async with self._pool.acquire() as conn:
                await conn.executemany(_INSERT, rows)
        return [str(r[0]) for r in rows]

    async def get(self, snapshot_hash: str) -> Snapshot | None:
        payload = await self._pool.fetchval("SELECT payload FROM market_snapshots WHERE hash = $1", snapshot_hash)
        return None if payload is None else snapshot_from_payload(payload)

    async def latest(self, symbol: str) -> Snapshot | None:
        payload = await self._pool.fetchval(
            "SELECT payload FROM market_snapshots WHERE symbol = $1 ORDER BY at DESC, created_at DESC LIMIT 1",
            symbol,
        )
        return None if payload is None else snapshot_from_payload(payload)

    async def count(self, symbol: str | None = None) -> int:
        n = await self._pool.fetchval(
            "SELECT count(*) FROM market_snapshots WHERE $1::text IS NULL OR symbol = $1", symbol
        )
        return int(n)
