"""The paper venue's books in Postgres (tables `paper_*`): loaded once when a `PaperExchange`
starts, then only what changed is written — every change set in ONE statement (one round trip,
atomic: all of it or none), so a session killed at any point restarts from a consistent venue."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

import asyncpg

from quorum.domain.models import OrderState, Side
from quorum.domain.paper_rows import BookChanges, BookFunding, BookOrder, BookPosition, BookTrade, SymbolMarks

ID_BLOCK = 64  # order and trade ids drawn from the sequences per round trip

_APPLY = """
WITH
a AS (UPDATE paper_accounts SET wallet_balance = $2::numeric, updated_at = now() WHERE account = $1 AND $3::bool),
s AS (INSERT INTO paper_symbols AS ps (account, symbol, leverage, last_price, last_time_ms, funded_until_ms,
                                       bar_until_ms)
      SELECT $1, r.symbol, r.leverage, r.last_price, r.last_time_ms, r.funded_until_ms, r.bar_until_ms
        FROM jsonb_to_recordset($4::jsonb) AS r(symbol text, leverage int, last_price numeric, last_time_ms bigint,
                                               funded_until_ms bigint, bar_until_ms bigint)
      ON CONFLICT (account, symbol) DO UPDATE SET leverage = EXCLUDED.leverage, last_price = EXCLUDED.last_price,
             last_time_ms = EXCLUDED.last_time_ms, funded_until_ms = EXCLUDED.funded_until_ms,
             bar_until_ms = EXCLUDED.bar_until_ms),
pd AS (DELETE FROM paper_positions WHERE account = $1 AND symbol = ANY($5::text[])),
pu AS (INSERT INTO paper_positions (account, symbol, side, quantity, entry_price, leverage, margin_mode,
                                    isolated_margin, liquidation_price)
       SELECT $1, r.symbol, r.side, r.quantity, r.entry_price, r.leverage, 'isolated', r.isolated_margin,
              r.liquidation_price
         FROM jsonb_to_recordset($6::jsonb) AS r(symbol text, side text, quantity numeric, entry_price numeric,
                                                leverage int, isolated_margin numeric, liquidation_price numeric)
       ON CONFLICT (account, symbol) DO UPDATE SET side = EXCLUDED.side, quantity = EXCLUDED.quantity,
              entry_price = EXCLUDED.entry_price, leverage = EXCLUDED.leverage,
              isolated_margin = EXCLUDED.isolated_margin, liquidation_price = EXCLUDED.liquidation_price,
              updated_at = now()),
o AS (INSERT INTO paper_orders (account, client_order_id, exchange_order_id, symbol, side, type, reduce_only,
                                quantity, stop_price, state, filled_quantity, average_price, time_ms, closed_ms)
      SELECT $1, r.client_order_id, r.exchange_order_id, r.symbol, r.side, r.type, r.reduce_only, r.quantity,
             r.stop_price, r.state, r.filled_quantity, r.average_price, r.time_ms, r.closed_ms
        FROM jsonb_to_recordset($7::jsonb) AS r(client_order_id text, exchange_order_id bigint, symbol text,
               side text, type text, reduce_only bool, quantity numeric, stop_price numeric, state text,
               filled_quantity numeric, average_price numeric, time_ms bigint, closed_ms bigint)
      ON CONFLICT (account, client_order_id) DO UPDATE SET state = EXCLUDED.state,
             filled_quantity = EXCLUDED.filled_quantity, average_price = EXCLUDED.average_price,
             closed_ms = EXCLUDED.closed_ms),
t AS (INSERT INTO paper_trades (trade_id, account, client_order_id, symbol, side, quantity, price, fee,
                                realized_pnl, liquidity, reason, time_ms)
      SELECT r.trade_id, $1, r.client_order_id, r.symbol, r.side, r.quantity, r.price, r.fee, r.realized_pnl,
             r.liquidity, r.reason, r.time_ms
        FROM jsonb_to_recordset($8::jsonb) AS r(trade_id bigint, client_order_id text, symbol text, side text,
               quantity numeric, price numeric, fee numeric, realized_pnl numeric, liquidity text, reason text,
               time_ms bigint)),
f AS (INSERT INTO paper_funding (account, symbol, time_ms, rate, mark_price, quantity, amount)
      SELECT $1, r.symbol, r.time_ms, r.rate, r.mark_price, r.quantity, r.amount
        FROM jsonb_to_recordset($9::jsonb) AS r(symbol text, time_ms bigint, rate numeric, mark_price numeric,
                                               quantity numeric, amount numeric)
      ON CONFLICT DO NOTHING)
SELECT 1
"""


def _f(value: Any) -> float | None:
    return None if value is None else float(value)


def _i(value: Any) -> int | None:
    return None if value is None else int(value)


async def open_account(pool: asyncpg.Pool, account: str, initial_balance: float) -> float:
    """Create the account on first use (an existing one keeps its balance); its wallet."""
    wallet = await pool.fetchval(
        """WITH ins AS (INSERT INTO paper_accounts (account, wallet_balance) VALUES ($1, $2)
                        ON CONFLICT DO NOTHING RETURNING wallet_balance)
           SELECT wallet_balance FROM ins UNION ALL
           SELECT wallet_balance FROM paper_accounts WHERE account = $1 LIMIT 1""", account, initial_balance)
    return float(wallet)


async def load_books(pool: asyncpg.Pool, account: str) -> dict[str, list[Any]]:
    """Everything the venue holds for `account`, as book rows (one connection, five reads)."""
    async with pool.acquire() as conn:
        syms = await conn.fetch("SELECT * FROM paper_symbols WHERE account=$1", account)
        poss = await conn.fetch("SELECT * FROM paper_positions WHERE account=$1", account)
        ords = await conn.fetch("SELECT * FROM paper_orders WHERE account=$1 ORDER BY exchange_order_id", account)
        trades = await conn.fetch("SELECT * FROM paper_trades WHERE account=$1 ORDER BY trade_id", account)
        funding = await conn.fetch("SELECT * FROM paper_funding WHERE account=$1", account)
    return {
        "symbols": [SymbolMarks(r["symbol"], int(r["leverage"]), _f(r["last_price"]), _i(r["last_time_ms"]),
                                _i(r["funded_until_ms"]), _i(r["bar_until_ms"])) for r in syms],
        "positions": [BookPosition(r["symbol"], Side(r["side"]), float(r["quantity"]), float(r["entry_price"]),
                                   int(r["leverage"]), float(r["isolated_margin"]), _f(r["liquidation_price"]))
                      for r in poss],
        "orders": [BookOrder(r["client_order_id"], int(r["exchange_order_id"]), r["symbol"], r["side"], r["type"],
                             bool(r["reduce_only"]), float(r["quantity"]), _f(r["stop_price"]),
                             OrderState(r["state"]), int(r["time_ms"]), float(r["filled_quantity"]),
                             _f(r["average_price"]), _i(r["closed_ms"])) for r in ords],
        "trades": [BookTrade(int(r["trade_id"]), r["client_order_id"], r["symbol"], r["side"], float(r["quantity"]),
                             float(r["price"]), float(r["fee"]), float(r["realized_pnl"]), r["reason"],
                             int(r["time_ms"]), r["liquidity"]) for r in trades],
        "funding": [BookFunding(r["symbol"], int(r["time_ms"]), float(r["rate"]), float(r["mark_price"]),
                                float(r["quantity"]), float(r["amount"])) for r in funding],
    }


async def reserve_ids(pool: asyncpg.Pool, n: int = ID_BLOCK) -> tuple[list[int], list[int]]:
    """`n` new order ids and `n` new trade ids from the tables' sequences (one round trip)."""
    rows = await pool.fetch(
        """SELECT nextval(pg_get_serial_sequence('paper_orders', 'exchange_order_id')) AS o,
                  nextval(pg_get_serial_sequence('paper_trades', 'trade_id')) AS t FROM generate_series(1, $1)""", n)
    return [int(r["o"]) for r in rows], [int(r["t"]) for r in rows]


def _order_row(o: BookOrder) -> dict[str, Any]:
    row = asdict(o)
    row["state"] = o.state.value
    return row


async def apply_changes(pool: asyncpg.Pool, account: str, c: BookChanges) -> None:
    """Write one change set of the book in one statement."""
    positions = [dict(asdict(p), side=p.side.value) for p in c.positions]
    await pool.execute(
        _APPLY, account, c.wallet or 0.0, c.wallet is not None, [asdict(s) for s in c.symbols],
        c.closed_positions, positions, [_order_row(o) for o in c.orders], [asdict(t) for t in c.trades],
        [asdict(f) for f in c.funding])
