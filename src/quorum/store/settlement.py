"""The ledger's reads inside its settle transaction (`quorum.execution.ledger.Ledger.settle`):
the position row, locked until the transaction ends, and its fills with what their orders were
for. Both take the transaction's connection; the position's writes go through
`PositionRepository` (which keeps its cache of open positions current).
"""

from __future__ import annotations

import asyncpg


async def lock_position(conn: asyncpg.Connection, position_id: str) -> asyncpg.Record | None:
    """The position's row, locked FOR UPDATE in the caller's transaction; None if unknown."""
    row: asyncpg.Record | None = await conn.fetchrow("SELECT * FROM positions WHERE id=$1 FOR UPDATE", position_id)
    return row


async def settlement_fills(conn: asyncpg.Connection, position_id: str) -> list[asyncpg.Record]:
    """The position's fills in time order, each with its order's `purpose` and trigger price
    (`order_stop_price`)."""
    rows: list[asyncpg.Record] = await conn.fetch(
        """SELECT f.*, o.purpose, o.stop_price AS order_stop_price
           FROM fills f JOIN orders o ON o.client_order_id = f.client_order_id
           WHERE f.position_id=$1 ORDER BY f.at, f.id""", position_id)
    return rows
