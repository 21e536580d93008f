"""Shared builders and invariant checks for execution integration tests."""

from __future__ import annotations

from typing import Any

import asyncpg

from quorum.domain.fills import FillModel
from quorum.domain.models import Candle, IntentKind, OrderIntent, Side, SymbolFilters
from quorum.execution.paper import PaperExchange
from quorum.execution.protection import Executor

T0 = 1_767_225_600_000  # 2026-01-01 00:00 UTC
FILTERS = {
    "BTCUSDT": SymbolFilters("BTCUSDT", 0.1, 0.001, 0.001, 100.0, 125),
    "ETHUSDT": SymbolFilters("ETHUSDT", 0.01, 0.001, 0.001, 20.0, 100),
}


class Clock:
    def __init__(self, t: int = T0) -> None:
        self.t = t

    def __call__(self) -> int:
        return self.t


def paper(pool: asyncpg.Pool, clock: Clock | None = None, *, balance: float = 10_000.0,
          account: str = "paper", **kw: Any) -> PaperExchange:
    return PaperExchange(pool, account=account, fill_model=FillModel(0.0005, 0.0002, 2.0, 2.0),
                         initial_balance=balance, filters=FILTERS, clock=clock, **kw)


def open_intent(symbol: str = "BTCUSDT", side: Side = Side.LONG, qty: float = 0.01, price: float = 50_000.0,
                stop: float | None = None, leverage: float = 5) -> OrderIntent:
    if stop is None:
        stop = price * (0.98 if side is Side.LONG else 1.02)
    return OrderIntent(IntentKind.OPEN, symbol, side, qty, "test", price_hint=price, stop_price=stop,
                       leverage=leverage)


def bar(t: int, o: float, h: float, low: float, c: float) -> Candle:
    return Candle(t, o, h, low, c, 1.0)


async def invariants(pool: asyncpg.Pool, ex: Executor, account: str = "paper") -> dict[str, Any]:
    """Counts of violated invariants between the paper venue and the record (all should be 0)."""
    venue = {p.symbol: p for p in await ex.exchange.fetch_positions()}
    orders = await ex.exchange.fetch_open_orders()
    db_open = {p.symbol: p for p in await ex.positions.open_positions()}
    unprotected = 0
    duplicate_stops = 0
    for sym, vp in venue.items():
        stops = [o for o in orders if o.symbol == sym and o.type == "stop_market" and o.reduce_only]
        if not any(abs(o.quantity - vp.quantity) < 1e-9 for o in stops):
            unprotected += 1
        duplicate_stops += max(len(stops) - 1, 0)
    mismatched = sum(1 for s in set(venue) | set(db_open)
                     if s not in venue or s not in db_open or abs(venue[s].quantity - db_open[s].quantity) > 1e-9)
    venue_trades = await pool.fetch("SELECT trade_id::text FROM paper_trades WHERE account=$1", account)
    recorded = {r["trade_id"] for r in await pool.fetch("SELECT trade_id FROM fills WHERE mode='paper'")}
    lost = sum(1 for r in venue_trades if r["trade_id"] not in recorded)
    # entries filled on the venue per position key: more than one = a duplicate order
    dup_entries = await pool.fetchval(
        """SELECT count(*) FROM (SELECT substring(client_order_id from 1 for 25) k, count(*) c
             FROM paper_orders WHERE account=$1 AND client_order_id LIKE 'q_E-%' AND filled_quantity > 0
             GROUP BY 1 HAVING count(*) > 1) x""", account)
    return {"unprotected": unprotected, "duplicate_stops": duplicate_stops, "mismatched": mismatched,
            "lost_fills": lost, "duplicate_entries": dup_entries}
