"""The paper venue's read side: what the books in Postgres (tables `paper_*`) say — orders,
positions, fills, funding, balance — and where funding rates come from. `PaperExchange`
(quorum.execution.paper) adds the state transitions on top."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Protocol

import asyncpg

from quorum.domain.models import OrderState, Side
from quorum.execution.exchange import Balance, FundingEntry, VenueFill, VenueOrder, VenuePosition


class FundingSource(Protocol):
    """Funding rates by (symbol, funding time): `prefetch` may do I/O (outside any transaction),
    `rate` only reads what was fetched (None = no rate known)."""

    async def prefetch(self, symbol: str, start_ms: int, end_ms: int) -> None: ...

    def rate(self, symbol: str, time_ms: int) -> float | None: ...


class CallableFunding:
    """A plain `(symbol, time_ms) -> rate` function (recorded data) as a `FundingSource`."""

    def __init__(self, fn: Callable[[str, int], float | None]) -> None:
        self.fn = fn

    async def prefetch(self, symbol: str, start_ms: int, end_ms: int) -> None:
        return None

    def rate(self, symbol: str, time_ms: int) -> float | None:
        return self.fn(symbol, time_ms)


def order_from_row(row: Mapping[str, Any]) -> VenueOrder:
    return VenueOrder(
        client_order_id=row["client_order_id"], exchange_order_id=str(row["exchange_order_id"]),
        symbol=row["symbol"], order_side=row["side"], type=row["type"], quantity=float(row["quantity"]),
        state=OrderState(row["state"]), filled_quantity=float(row["filled_quantity"]),
        average_price=None if row["average_price"] is None else float(row["average_price"]),
        stop_price=None if row["stop_price"] is None else float(row["stop_price"]),
        reduce_only=row["reduce_only"], time_ms=int(row["time_ms"]),
    )


class PaperBooks:
    """Read-only queries of one paper `account`."""

    _pool: asyncpg.Pool
    account: str

    async def _ensure(self) -> None:  # the venue creates its account on first use
        return None

    async def fetch_order(self, symbol: str, client_order_id: str, *, conditional: bool = False) -> VenueOrder | None:
        await self._ensure()
        row = await self._pool.fetchrow("SELECT * FROM paper_orders WHERE account=$1 AND client_order_id=$2",
                                        self.account, client_order_id)
        return order_from_row(row) if row else None

    async def fetch_open_orders(self, symbol: str | None = None) -> list[VenueOrder]:
        await self._ensure()
        rows = await self._pool.fetch(
            """SELECT * FROM paper_orders WHERE account=$1 AND state IN ('accepted','partially_filled')
                 AND ($2::text IS NULL OR symbol=$2) ORDER BY exchange_order_id""", self.account, symbol)
        return [order_from_row(r) for r in rows]

    async def fetch_positions(self) -> list[VenuePosition]:
        await self._ensure()
        rows = await self._pool.fetch(
            """SELECT p.*, s.last_price FROM paper_positions p LEFT JOIN paper_symbols s
                 ON s.account=p.account AND s.symbol=p.symbol WHERE p.account=$1 ORDER BY p.symbol""", self.account)
        out = []
        for r in rows:
            side, qty, entry = Side(r["side"]), float(r["quantity"]), float(r["entry_price"])
            mark = float(r["last_price"]) if r["last_price"] is not None else entry
            out.append(VenuePosition(r["symbol"], side, qty, entry, mark,
                                     None if r["liquidation_price"] is None else float(r["liquidation_price"]),
                                     float(r["leverage"]), r["margin_mode"], (mark - entry) * qty * side.sign,
                                     float(r["isolated_margin"])))
        return out

    async def fetch_fills(self, symbol: str, since_ms: int | None = None) -> list[VenueFill]:
        await self._ensure()
        rows = await self._pool.fetch(
            """SELECT t.*, o.exchange_order_id FROM paper_trades t JOIN paper_orders o
                 ON o.account=t.account AND o.client_order_id=t.client_order_id
               WHERE t.account=$1 AND t.symbol=$2 AND ($3::bigint IS NULL OR t.time_ms >= $3) ORDER BY t.trade_id""",
            self.account, symbol, since_ms)
        return [VenueFill(str(r["trade_id"]), r["client_order_id"], str(r["exchange_order_id"]), r["symbol"],
                          r["side"], float(r["quantity"]), float(r["price"]), float(r["fee"]), int(r["time_ms"]),
                          r["liquidity"], float(r["realized_pnl"])) for r in rows]

    async def funding_history(self, symbol: str | None = None, since_ms: int | None = None) -> list[FundingEntry]:
        await self._ensure()
        rows = await self._pool.fetch(
            """SELECT * FROM paper_funding WHERE account=$1 AND ($2::text IS NULL OR symbol=$2)
                 AND ($3::bigint IS NULL OR time_ms >= $3) ORDER BY time_ms, symbol""", self.account, symbol, since_ms)
        return [FundingEntry(r["symbol"], int(r["time_ms"]), float(r["amount"]), float(r["rate"]),
                             float(r["mark_price"]), float(r["quantity"])) for r in rows]

    # --- account -------------------------------------------------------------------------
    async def balance(self) -> Balance:
        await self._ensure()
        wallet = float(await self._pool.fetchval("SELECT wallet_balance FROM paper_accounts WHERE account=$1",
                                                 self.account))
        positions = await self.fetch_positions()
        used = sum(p.isolated_margin or 0.0 for p in positions)
        upnl = sum(p.unrealized_pnl for p in positions)
        return Balance(wallet, wallet - used + min(upnl, 0.0), upnl)
