"""Orders, order events, fills, funding payments and reconciliation events.

Every order row is written BEFORE the order is sent (state `pending`); every later state change
goes through `transition`, which checks the domain state machine and appends an order_event in
the same transaction. Fills are unique per (client_order_id, trade_id), so replaying the venue's
trades after a restart records each fill exactly once.
"""

from __future__ import annotations

from typing import Any

import asyncpg

from quorum.domain.models import OrderState
from quorum.domain.orders import InvalidTransition, OrderStatus, venue_state
from quorum.domain.venue import OrderRequest, VenueFill
from quorum.store.positions import ms_to_dt

OPEN_STATES = ("pending", "submitted", "accepted", "partially_filled")


def _status(row: asyncpg.Record | dict[str, Any]) -> OrderStatus:
    return OrderStatus(
        client_order_id=row["client_order_id"],
        quantity=float(row["quantity"]),
        state=OrderState(row["state"]),
        filled_quantity=float(row["filled_quantity"]),
        average_price=None if row["average_price"] is None else float(row["average_price"]),
    )


class OrderRepository:
    """The application's record of orders for one trading mode."""

    def __init__(self, pool: asyncpg.Pool, mode: str) -> None:
        self._pool = pool
        self.mode = mode
        self.fill_writes = 0  # fills stored through this repository (the ledger's settle memo)

    @property
    def pool(self) -> asyncpg.Pool:
        return self._pool

    async def insert_pending(self, req: OrderRequest, *, purpose: str, position_id: str | None = None,
                             decision_id: str | None = None, detail: dict[str, Any] | None = None) -> bool:
        """Store an order before sending it. Returns False if this client id already exists."""
        async with self._pool.acquire() as conn, conn.transaction():
            inserted = await conn.fetchval(
                """INSERT INTO orders (client_order_id, mode, symbol, side, type, reduce_only, quantity,
                          stop_price, state, position_id, decision_id, purpose)
                   VALUES ($1,$2,$3,$4,$5,$6,$7,$8,'pending',$9,$10,$11)
                   ON CONFLICT (client_order_id) DO NOTHING RETURNING 1""",
                req.client_order_id, self.mode, req.symbol, req.order_side, req.type, req.reduce_only,
                req.quantity, req.stop_price, position_id, decision_id, purpose,
            )
            if inserted:
                await conn.execute(
                    "INSERT INTO order_events (client_order_id, state, detail) VALUES ($1, 'pending', $2)",
                    req.client_order_id, detail or {},
                )
            return bool(inserted)

    async def record_refusal(self, req: OrderRequest, *, purpose: str, error: str,
                             position_id: str | None = None, decision_id: str | None = None) -> None:
        """A complete record of an order we refused to send (bad size, unknown symbol, ...)."""
        async with self._pool.acquire() as conn, conn.transaction():
            await conn.execute(
                """INSERT INTO orders (client_order_id, mode, symbol, side, type, reduce_only, quantity,
                          stop_price, state, position_id, decision_id, purpose, error)
                   VALUES ($1,$2,$3,$4,$5,$6,$7,$8,'rejected',$9,$10,$11,$12)
                   ON CONFLICT (client_order_id) DO NOTHING""",
                req.client_order_id, self.mode, req.symbol, req.order_side, req.type, req.reduce_only,
                req.quantity, req.stop_price, position_id, decision_id, purpose, error,
            )
            await conn.execute(
                "INSERT INTO order_events (client_order_id, state, detail) VALUES ($1, 'rejected', $2)",
                req.client_order_id, {"refused": error},
            )

    async def get(self, client_order_id: str) -> dict[str, Any] | None:
        row = await self._pool.fetchrow("SELECT * FROM orders WHERE client_order_id = $1", client_order_id)
        return dict(row) if row else None

    async def transition(self, client_order_id: str, state: OrderState, *, filled_quantity: float | None = None,
                         average_price: float | None = None, exchange_order_id: str | None = None,
                         error: str | None = None, detail: dict[str, Any] | None = None,
                         conn: asyncpg.Connection | None = None) -> OrderState:
        """Apply a venue answer through the state machine; store the row and an event.
        Returns the resulting state (unchanged answers store nothing)."""
        if conn is None:
            async with self._pool.acquire() as c, c.transaction():
                return await self._transition(c, client_order_id, state, filled_quantity, average_price,
                                              exchange_order_id, error, detail)
        return await self._transition(conn, client_order_id, state, filled_quantity, average_price,
                                      exchange_order_id, error, detail)

    async def _transition(self, conn: asyncpg.Connection, cid: str, state: OrderState, filled: float | None,
                          avg: float | None, xid: str | None, error: str | None,
                          detail: dict[str, Any] | None) -> OrderState:
        row = await conn.fetchrow("SELECT * FROM orders WHERE client_order_id = $1 FOR UPDATE", cid)
        if row is None:
            raise LookupError(f"unknown order {cid}")
        cur = _status(row)
        try:
            new = venue_state(cur, state, cur.filled_quantity if filled is None else filled,
                              avg if avg is not None else cur.average_price)
        except InvalidTransition as exc:
            # The venue is the truth about what executed (e.g. an order we gave up on as
            # "not found" that filled after all): take its word and say so in the event.
            new = OrderStatus(cid, cur.quantity, state, max(filled or 0.0, cur.filled_quantity),
                              avg if avg is not None else cur.average_price)
            detail = dict(detail or {}, forced=str(exc), previous=cur.state.value)
        changed = (new.state != cur.state or abs(new.filled_quantity - cur.filled_quantity) > 1e-12
                   or (xid and xid != row["exchange_order_id"]) or (error and error != row["error"]))
        if not changed:
            return cur.state
        await conn.execute(
            """UPDATE orders SET state=$2, filled_quantity=$3, average_price=$4,
                      exchange_order_id=COALESCE($5, exchange_order_id), error=COALESCE($6, error),
                      updated_at=now() WHERE client_order_id=$1""",
            cid, new.state.value, new.filled_quantity, new.average_price, xid, error,
        )
        ev = dict(detail or {})
        ev.update({"filled": new.filled_quantity})
        if error:
            ev["error"] = error
        await conn.execute(
            "INSERT INTO order_events (client_order_id, state, detail) VALUES ($1, $2, $3)",
            cid, new.state.value, ev,
        )
        return new.state

    async def add_event(self, client_order_id: str, state: str, detail: dict[str, Any]) -> None:
        """An event without a state change (e.g. an unknown outcome, a lookup)."""
        await self._pool.execute(
            "INSERT INTO order_events (client_order_id, state, detail) VALUES ($1, $2, $3)",
            client_order_id, state, detail,
        )

    async def get_by_exchange_id(self, exchange_order_id: str) -> dict[str, Any] | None:
        """This mode's order the venue knows by `exchange_order_id`, or None."""
        row = await self._pool.fetchrow("SELECT * FROM orders WHERE exchange_order_id=$1 AND mode=$2",
                                        exchange_order_id, self.mode)
        return dict(row) if row else None

    async def set_position(self, client_order_id: str, position_id: str,
                           conn: asyncpg.Connection | None = None) -> None:
        await (conn or self._pool).execute(
            "UPDATE orders SET position_id=$2, updated_at=now() WHERE client_order_id=$1", client_order_id, position_id
        )

    async def open_orders(self, symbol: str | None = None) -> list[dict[str, Any]]:
        rows = await self._pool.fetch(
            """SELECT * FROM orders WHERE mode=$1 AND state = ANY($2::text[])
                 AND ($3::text IS NULL OR symbol=$3) ORDER BY created_at""",
            self.mode, list(OPEN_STATES), symbol,
        )
        return [dict(r) for r in rows]

    async def orders_for_position(self, position_id: str) -> list[dict[str, Any]]:
        rows = await self._pool.fetch(
            "SELECT * FROM orders WHERE position_id=$1 ORDER BY created_at", position_id)
        return [dict(r) for r in rows]

    async def count_with_prefix(self, prefix: str) -> int:
        n: int = await self._pool.fetchval(
            "SELECT count(*) FROM orders WHERE client_order_id LIKE $1", prefix + "%")
        return n

    # --- fills -----------------------------------------------------------------------------
    async def record_fill(self, fill: VenueFill, client_order_id: str, *, position_id: str | None = None,
                          conn: asyncpg.Connection | None = None) -> bool:
        """Store one venue trade; False if it was already recorded."""
        inserted = await (conn or self._pool).fetchval(
            """INSERT INTO fills (client_order_id, trade_id, mode, symbol, side, quantity, price, fee,
                      liquidity, position_id, realized_pnl, at)
               VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12)
               ON CONFLICT (client_order_id, trade_id) DO NOTHING RETURNING 1""",
            client_order_id, fill.trade_id, self.mode, fill.symbol, fill.order_side, fill.quantity,
            fill.price, fill.fee, fill.liquidity, position_id, fill.realized_pnl, ms_to_dt(fill.time_ms),
        )
        self.fill_writes += 1  # (even a repeat: a caller's transaction may still roll back)
        return bool(inserted)

    async def set_fills_position(self, client_order_id: str, position_id: str,
                                 conn: asyncpg.Connection | None = None) -> None:
        """Give every fill of the order the position it opened."""
        await (conn or self._pool).execute(
            "UPDATE fills SET position_id=$2 WHERE client_order_id=$1", client_order_id, position_id)

    async def fills_for_order(self, client_order_id: str) -> list[dict[str, Any]]:
        rows = await self._pool.fetch("SELECT * FROM fills WHERE client_order_id=$1 ORDER BY id", client_order_id)
        return [dict(r) for r in rows]

    async def known_trade_ids(self, symbol: str) -> set[str]:
        rows = await self._pool.fetch("SELECT trade_id FROM fills WHERE mode=$1 AND symbol=$2", self.mode, symbol)
        return {r["trade_id"] for r in rows}

    # --- funding and reconciliation --------------------------------------------------------
    async def record_funding(self, *, position_id: str | None, symbol: str, time_ms: int, rate: float,
                             mark_price: float, quantity: float, amount: float,
                             conn: asyncpg.Connection | None = None) -> bool:
        inserted = await (conn or self._pool).fetchval(
            """INSERT INTO funding_payments (mode, position_id, symbol, at, rate, mark_price, quantity, amount)
               VALUES ($1,$2,$3,$4,$5,$6,$7,$8) ON CONFLICT (position_id, at) DO NOTHING RETURNING 1""",
            self.mode, position_id, symbol, ms_to_dt(time_ms), rate, mark_price, quantity, amount,
        )
        return bool(inserted)

    async def record_reconciliation(self, kind: str, symbol: str | None, details: dict[str, Any]) -> None:
        await self._pool.execute(
            "INSERT INTO reconciliation_events (mode, kind, symbol, details) VALUES ($1,$2,$3,$4)",
            self.mode, kind, symbol, details,
        )

    async def reconciliation_events(self) -> list[dict[str, Any]]:
        rows = await self._pool.fetch("SELECT * FROM reconciliation_events WHERE mode=$1 ORDER BY id", self.mode)
        return [dict(r) for r in rows]

    async def link_fills(self, conn: asyncpg.Connection | None = None) -> None:
        """Give every fill the position of its order (orders learn their position after the entry fill)."""
        await (conn or self._pool).execute(
            """UPDATE fills f SET position_id = o.position_id FROM orders o
               WHERE f.client_order_id = o.client_order_id AND f.position_id IS NULL AND o.position_id IS NOT NULL""")

    async def first_event_detail(self, client_order_id: str) -> dict[str, Any]:
        detail = await self._pool.fetchval(
            "SELECT detail FROM order_events WHERE client_order_id=$1 ORDER BY id LIMIT 1", client_order_id)
        return dict(detail or {})

    async def unbooked_entries(self) -> list[dict[str, Any]]:
        """Entry orders with fills but no position yet (a crash between fill and booking)."""
        rows = await self._pool.fetch(
            """SELECT * FROM orders WHERE mode=$1 AND purpose='entry' AND position_id IS NULL
                 AND filled_quantity > 0 ORDER BY created_at""", self.mode)
        return [dict(r) for r in rows]

    async def position_fills(self, position_id: str) -> list[dict[str, Any]]:
        rows = await self._pool.fetch(
            """SELECT f.*, o.purpose FROM fills f JOIN orders o ON o.client_order_id=f.client_order_id
               WHERE f.position_id=$1 ORDER BY f.at, f.id""", position_id)
        return [dict(r) for r in rows]
