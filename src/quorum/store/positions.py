"""Positions: open, update the risk state (stop, peak, trailing, partials), reduce, close.

The row mirrors `PositionState`; closing computes net P&L = gross − fees − funding so every
number in the record already includes costs.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import asyncpg

from quorum.domain.models import PositionState, Side


def ms_to_dt(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, tz=UTC)


def dt_to_ms(dt: datetime) -> int:
    return int(dt.timestamp() * 1000)


def _f(v: Any) -> float | None:
    return None if v is None else float(v)


def row_to_state(row: asyncpg.Record) -> PositionState:
    return PositionState(
        symbol=row["symbol"],
        side=Side(row["side"]),
        entry_price=float(row["entry_price"]),
        quantity=float(row["quantity"]),
        initial_quantity=float(row["initial_quantity"]),
        initial_stop=float(row["initial_stop"]),
        stop_price=float(row["stop_price"]),
        take_profit=_f(row["take_profit"]),
        leverage=float(row["leverage"]),
        opened_ms=dt_to_ms(row["opened_at"]),
        peak_price=float(row["peak_price"]),
        liquidation_price=_f(row["liquidation_price"]),
        trailing_active=row["trailing_active"],
        partials_done=row["partials_done"],
        atr=_f(row["atr"]),
        position_id=row["id"],
        decision_id=row["decision_id"],
    )


@dataclass(frozen=True, slots=True)
class ClosedPosition:
    """A position the record shows closed."""

    position_id: str
    symbol: str
    net_pnl: float
    exit_reason: str
    initial_quantity: float
    exit_price: float | None


class _OpenCache:
    """The open positions of one (pool, mode), shared by every repository on them."""

    def __init__(self) -> None:
        self.rows: dict[str, dict[str, Any]] | None = None  # id → row of the open positions
        self.states: dict[str, PositionState] = {}  # id → the row as a state (built once per row)
        self.writes = 0  # a load that raced a write is not kept


# id(pool) → (the pool, mode → cache); the pool is held so that its id is never reused while a
# cache is keyed by it (asyncpg pools cannot be weakly referenced)
_caches: dict[int, tuple[Any, dict[str, _OpenCache]]] = {}


def _shared_cache(pool: Any, mode: str) -> _OpenCache:
    entry = _caches.setdefault(id(pool), (pool, {}))
    return entry[1].setdefault(mode, _OpenCache())


class PositionRepository:
    """Persistence of positions for one trading mode.

    The open positions are also kept in memory, shared by every repository on the same pool and
    mode (the one process trading a mode writes its positions only through them): loaded by the
    first read, refreshed from each write's RETURNING row, so reading them costs no round trip.
    A transaction that writes positions runs inside `uncommitted_on_failure()`."""

    def __init__(self, pool: asyncpg.Pool, mode: str) -> None:
        self._pool = pool
        self.mode = mode
        self._c = _shared_cache(pool, mode)

    def forget(self) -> None:
        """Drop what is cached: the next read loads the open positions again."""
        self._c.rows = None
        self._c.states = {}
        self._c.writes += 1

    @contextlib.contextmanager
    def uncommitted_on_failure(self) -> Iterator[None]:
        """Around a transaction that writes positions: if it fails, what its RETURNING rows put
        in the cache was never committed, so the cache is dropped."""
        try:
            yield
        except BaseException:
            self.forget()
            raise

    def remember(self, row: asyncpg.Record | dict[str, Any] | None) -> None:
        """A row as a write returned it."""
        self._c.writes += 1
        if row is None or self._c.rows is None:
            return
        self._c.states.pop(row["id"], None)
        if row["status"] == "open" and row["mode"] == self.mode:
            self._c.rows[row["id"]] = dict(row)
        else:
            self._c.rows.pop(row["id"], None)

    async def _open_rows(self) -> list[dict[str, Any]]:
        if self._c.rows is not None:
            return sorted(self._c.rows.values(), key=lambda r: r["opened_at"])
        writes = self._c.writes
        rows = [dict(r) for r in await self._pool.fetch(
            "SELECT * FROM positions WHERE mode = $1 AND status = 'open' ORDER BY opened_at", self.mode)]
        if writes == self._c.writes:
            self._c.rows = {r["id"]: r for r in rows}
        return rows

    async def open(
        self,
        state: PositionState,
        *,
        margin_mode: str = "isolated",
        margin: float | None = None,
        risk_usd: float | None = None,
        fees: float = 0.0,
        conn: asyncpg.Connection | None = None,
    ) -> str:
        """Insert an open position; `state.position_id` is required (the caller chooses ids)."""
        if not state.position_id:
            raise ValueError("position_id is required")
        sql = """INSERT INTO positions (id, mode, symbol, side, status, entry_price, quantity,
                     initial_quantity, leverage, margin_mode, margin, initial_stop, stop_price,
                     take_profit, peak_price, trailing_active, partials_done, liquidation_price,
                     atr, risk_usd, decision_id, opened_at, fees)
                 VALUES ($1,$2,$3,$4,'open',$5,$6,$7,$8,$9,$10,$11,$12,$13,$14,$15,$16,$17,$18,$19,$20,$21,$22)"""
        args = (
            state.position_id, self.mode, state.symbol, state.side.value, state.entry_price,
            state.quantity, state.initial_quantity, state.leverage, margin_mode, margin,
            state.initial_stop, state.stop_price, state.take_profit, state.peak_price,
            state.trailing_active, state.partials_done, state.liquidation_price, state.atr,
            risk_usd, state.decision_id, ms_to_dt(state.opened_ms), fees,
        )
        self.remember(await (conn or self._pool).fetchrow(sql + " RETURNING *", *args))
        return state.position_id

    async def get(self, position_id: str) -> PositionState | None:
        row = await self.get_row(position_id)
        return self._state(row) if row else None

    async def get_row(self, position_id: str) -> dict[str, Any] | None:
        if self._c.rows is not None and position_id in self._c.rows:
            return dict(self._c.rows[position_id])
        row = await self._pool.fetchrow("SELECT * FROM positions WHERE id = $1", position_id)
        return dict(row) if row else None

    def _state(self, row: dict[str, Any]) -> PositionState:
        state = self._c.states.get(row["id"])
        if state is None:
            state = row_to_state(row)
            if self._c.rows is not None and row["id"] in self._c.rows:
                self._c.states[row["id"]] = state
        return state

    async def closed_position(self, position_id: str) -> ClosedPosition | None:
        """The position as a closed trade, or None while it is open (or unknown)."""
        if self._c.rows is not None and position_id in self._c.rows:
            return None
        row = await self.get_row(position_id)
        if row is None or row["status"] != "closed":
            return None
        return ClosedPosition(row["id"], row["symbol"], float(row["net_pnl"] or 0.0), str(row["exit_reason"] or ""),
                           float(row["initial_quantity"]), _f(row["exit_price"]))

    async def open_positions(self) -> list[PositionState]:
        return [self._state(r) for r in await self._open_rows()]

    async def open_for_symbol(self, symbol: str) -> PositionState | None:
        row = next((r for r in await self._open_rows() if r["symbol"] == symbol), None)
        return self._state(row) if row else None

    async def set_quantity(self, position_id: str, quantity: float, conn: asyncpg.Connection | None = None) -> None:
        self.remember(await (conn or self._pool).fetchrow(
            "UPDATE positions SET quantity=$2, updated_at=now() WHERE id=$1 RETURNING *", position_id, quantity))

    async def update_risk_state(self, state: PositionState, conn: asyncpg.Connection | None = None) -> None:
        """Persist stop, peak, trailing flag, partial progress, quantity and liquidation price."""
        sql = """UPDATE positions SET stop_price=$2, peak_price=$3, trailing_active=$4, partials_done=$5,
                        quantity=$6, liquidation_price=$7, take_profit=$8, updated_at=now()
                 WHERE id=$1 AND status='open' RETURNING *"""
        args = (state.position_id, state.stop_price, state.peak_price, state.trailing_active,
                state.partials_done, state.quantity, state.liquidation_price, state.take_profit)
        row = await (conn or self._pool).fetchrow(sql, *args)
        if row is None:
            raise LookupError(f"no open position {state.position_id}")
        self.remember(row)

    async def add_costs(self, position_id: str, *, fees: float = 0.0, funding: float = 0.0,
                        conn: asyncpg.Connection | None = None) -> None:
        """Add fees paid and funding paid (+) / received (−) to a position."""
        self.remember(await (conn or self._pool).fetchrow(
            "UPDATE positions SET fees = fees + $2, funding = funding + $3, updated_at=now() WHERE id=$1 RETURNING *",
            position_id, fees, funding,
        ))

    async def close(
        self,
        position_id: str,
        *,
        exit_price: float,
        gross_pnl: float,
        exit_reason: str,
        closed_ms: int,
        conn: asyncpg.Connection | None = None,
    ) -> float:
        """Close a position; net P&L = gross − fees − funding (fees/funding already added).
        Returns the net P&L."""
        row = await (conn or self._pool).fetchrow(
            """UPDATE positions SET status='closed', quantity=0, exit_price=$2, gross_pnl=$3,
                      net_pnl=$3 - fees - funding, exit_reason=$4, closed_at=$5, updated_at=now()
               WHERE id=$1 AND status='open' RETURNING *""",
            position_id, exit_price, gross_pnl, exit_reason, ms_to_dt(closed_ms),
        )
        if row is None:
            raise LookupError(f"no open position {position_id}")
        self.remember(row)
        return float(row["net_pnl"])
