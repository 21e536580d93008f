"""Read-only views of the trading record, for `quorum report`, the go-live gate, /status, /metrics
and Telegram: closed trades (view `closed_trades`, with the voters behind each from view
`trade_voters`), their fills and funding payments, the record's span and totals, the `win_rate`
view, and — for /status without an engine in reach — the open positions, breaker states and last
decisions as Postgres has them. Nothing here writes.
"""

from __future__ import annotations

from typing import Any

import asyncpg

from quorum.domain.models import ClosedTrade, Side
from quorum.store.positions import dt_to_ms

# --- closed trades ---------------------------------------------------------------------------------


async def closed_trades(pool: asyncpg.Pool, mode: str) -> list[ClosedTrade]:
    """Closed positions of `mode` as `ClosedTrade`s (net of fees and funding), oldest first,
    each with the voters whose vote backed it (view `trade_voters`)."""
    rows = await pool.fetch(
        """SELECT ct.*, coalesce(array_agg(tv.voter ORDER BY tv.voter)
                  FILTER (WHERE tv.voter IS NOT NULL), '{}') AS voters
           FROM closed_trades ct LEFT JOIN trade_voters tv ON tv.position_id = ct.position_id
           WHERE ct.mode = $1
           GROUP BY ct.position_id, ct.mode, ct.symbol, ct.side, ct.opened_at, ct.closed_at,
                    ct.entry_price, ct.exit_price, ct.quantity, ct.leverage, ct.fees, ct.funding,
                    ct.gross_pnl, ct.net_pnl, ct.exit_reason, ct.risk_usd, ct.decision_id,
                    ct.is_win, ct.day
           ORDER BY ct.closed_at, ct.position_id""",
        mode,
    )
    return [
        ClosedTrade(
            symbol=r["symbol"], side=Side(r["side"]),
            entry_ms=dt_to_ms(r["opened_at"]), exit_ms=dt_to_ms(r["closed_at"]),
            entry_price=float(r["entry_price"]), exit_price=float(r["exit_price"] or 0.0),
            quantity=float(r["quantity"]), leverage=float(r["leverage"]),
            fees=float(r["fees"]), funding=float(r["funding"]),
            gross_pnl=float(r["gross_pnl"] or 0.0), net_pnl=float(r["net_pnl"]),
            exit_reason=r["exit_reason"] or "", risk_usd=None if r["risk_usd"] is None else float(r["risk_usd"]),
            decision_id=r["decision_id"], voters=tuple(r["voters"]),
        )
        for r in rows
    ]


async def closed_trade_rows(pool: asyncpg.Pool, mode: str) -> list[asyncpg.Record]:
    """The `closed_trades` rows of `mode`, oldest first."""
    rows: list[asyncpg.Record] = await pool.fetch(
        "SELECT * FROM closed_trades WHERE mode = $1 ORDER BY closed_at, position_id", mode)
    return rows


async def closed_trade_fills(pool: asyncpg.Pool, mode: str) -> list[asyncpg.Record]:
    """Every fill of the closed positions of `mode` (with its order's `purpose`), in time order."""
    rows: list[asyncpg.Record] = await pool.fetch(
        """SELECT f.*, o.purpose FROM fills f JOIN orders o ON o.client_order_id = f.client_order_id
           JOIN positions p ON p.id = f.position_id WHERE p.mode = $1 AND p.status = 'closed'
           ORDER BY f.at, f.id""", mode)
    return rows


async def closed_trade_funding(pool: asyncpg.Pool, mode: str) -> list[asyncpg.Record]:
    """Every funding payment of the closed positions of `mode`, in time order."""
    rows: list[asyncpg.Record] = await pool.fetch(
        """SELECT fp.* FROM funding_payments fp JOIN positions p ON p.id = fp.position_id
           WHERE p.mode = $1 AND p.status = 'closed' ORDER BY fp.at, fp.id""", mode)
    return rows


async def last_closed_trades(pool: asyncpg.Pool, mode: str, limit: int) -> list[asyncpg.Record]:
    """The `limit` latest closed trades of `mode`, newest first (symbol, side, times, prices,
    net P&L, exit reason)."""
    rows: list[asyncpg.Record] = await pool.fetch(
        """SELECT symbol, side, closed_at, entry_price, exit_price, net_pnl, exit_reason FROM closed_trades
           WHERE mode = $1 ORDER BY closed_at DESC, position_id DESC LIMIT $2""", mode, limit)
    return rows


async def profit_totals(pool: asyncpg.Pool, mode: str) -> asyncpg.Record:
    """Totals of the closed trades of `mode`: n, wins, net, fees, funding, won, lost."""
    row: asyncpg.Record | None = await pool.fetchrow(
        """SELECT count(*) AS n, count(*) FILTER (WHERE is_win) AS wins, coalesce(sum(net_pnl), 0) AS net,
                  coalesce(sum(fees), 0) AS fees, coalesce(sum(funding), 0) AS funding,
                  coalesce(sum(net_pnl) FILTER (WHERE net_pnl > 0), 0) AS won,
                  coalesce(-sum(net_pnl) FILTER (WHERE net_pnl < 0), 0) AS lost
           FROM closed_trades WHERE mode = $1""", mode)
    assert row is not None
    return row


async def daily_pnl(pool: asyncpg.Pool, mode: str, days: int) -> list[asyncpg.Record]:
    """Closed trades of `mode` per UTC day (day, n, wins, net), the latest `days` days first."""
    rows: list[asyncpg.Record] = await pool.fetch(
        """SELECT day, count(*) AS n, count(*) FILTER (WHERE is_win) AS wins, sum(net_pnl) AS net
           FROM closed_trades WHERE mode = $1 GROUP BY day ORDER BY day DESC LIMIT $2""", mode, days)
    return rows


async def pnl_by_symbol(pool: asyncpg.Pool, mode: str) -> list[asyncpg.Record]:
    """Closed trades of `mode` per symbol (symbol, n, wins, net), the most profitable first."""
    rows: list[asyncpg.Record] = await pool.fetch(
        """SELECT symbol, count(*) AS n, count(*) FILTER (WHERE is_win) AS wins, sum(net_pnl) AS net
           FROM closed_trades WHERE mode = $1 GROUP BY symbol ORDER BY sum(net_pnl) DESC""", mode)
    return rows


async def win_rate_rows(pool: asyncpg.Pool) -> list[dict[str, Any]]:
    """`SELECT * FROM win_rate` as dicts (the SQL view people query themselves)."""
    return [dict(r) for r in await pool.fetch("SELECT * FROM win_rate ORDER BY mode")]


# --- the record as a whole -------------------------------------------------------------------------


async def record_span(pool: asyncpg.Pool, mode: str) -> tuple[int | None, int | None]:
    """First and last event time of the record (positions, equity snapshots, decisions), in
    record time — so a replayed paper session counts its simulated span, a wall-clock one its
    real span."""
    row = await pool.fetchrow(
        """SELECT least((SELECT min(opened_at) FROM positions WHERE mode = $1),
                        (SELECT min(at) FROM equity_snapshots WHERE mode = $1),
                        (SELECT min(at) FROM decisions WHERE mode = $1)) AS first,
                  greatest((SELECT max(coalesce(closed_at, opened_at)) FROM positions WHERE mode = $1),
                           (SELECT max(at) FROM equity_snapshots WHERE mode = $1),
                           (SELECT max(at) FROM decisions WHERE mode = $1)) AS last""",
        mode,
    )
    if row is None or row["first"] is None:
        return None, None
    return dt_to_ms(row["first"]), dt_to_ms(row["last"])


async def open_critical_alert_kinds(pool: asyncpg.Pool) -> list[str]:
    """The kind of every unresolved critical alert outside backtests, oldest first."""
    rows = await pool.fetch(
        "SELECT kind FROM alerts WHERE severity = 'critical' AND resolved_at IS NULL AND mode <> 'backtest' ORDER BY id"
    )
    return [r["kind"] for r in rows]


_TOTALS_SQL = (
    """SELECT symbol, side, count(*) AS trades, count(*) FILTER (WHERE is_win) AS wins,
              coalesce(sum(net_pnl), 0) AS net_pnl
       FROM closed_trades WHERE mode = $1 GROUP BY symbol, side ORDER BY symbol, side""",
    """SELECT (SELECT coalesce(sum(fee), 0) FROM fills WHERE mode = $1) AS fees,
              (SELECT coalesce(sum(amount) FILTER (WHERE amount > 0), 0) FROM funding_payments WHERE mode = $1)
                  AS funding_paid,
              (SELECT coalesce(-sum(amount) FILTER (WHERE amount < 0), 0) FROM funding_payments WHERE mode = $1)
                  AS funding_received""",
    """SELECT breaker, count(*) AS trips FROM breaker_events WHERE mode = $1 AND event = 'trip'
       GROUP BY breaker ORDER BY breaker""",
)


async def record_totals(pool: asyncpg.Pool, mode: str
                        ) -> tuple[list[asyncpg.Record], asyncpg.Record, list[asyncpg.Record]]:
    """The record's totals for `mode` in one read-only snapshot (repeatable read): closed trades
    by (symbol, side) with trades, wins and net P&L; fees, funding paid and funding received;
    breaker trips by breaker."""
    async with pool.acquire() as conn, conn.transaction(isolation="repeatable_read", readonly=True):
        rows = await conn.fetch(_TOTALS_SQL[0], mode)
        costs = await conn.fetchrow(_TOTALS_SQL[1], mode)
        trips = await conn.fetch(_TOTALS_SQL[2], mode)
    assert costs is not None
    return rows, costs, trips


# --- /status without an engine ---------------------------------------------------------------------


async def open_positions(pool: asyncpg.Pool, mode: str) -> list[asyncpg.Record]:
    """The open position rows of `mode` as Postgres has them, oldest first (read from the table,
    not `PositionRepository`'s cache: the process reading them is not the one trading)."""
    rows: list[asyncpg.Record] = await pool.fetch(
        "SELECT * FROM positions WHERE mode = $1 AND status = 'open' ORDER BY opened_at", mode)
    return rows


async def latest_breaker_events(pool: asyncpg.Pool, mode: str) -> list[asyncpg.Record]:
    """The latest event of each (breaker, symbol) of `mode`: breaker, symbol, event, reason, until."""
    rows: list[asyncpg.Record] = await pool.fetch(
        """SELECT DISTINCT ON (breaker, coalesce(symbol, '')) breaker, symbol, event, reason, until
           FROM breaker_events WHERE mode = $1 ORDER BY breaker, coalesce(symbol, ''), id DESC""",
        mode,
    )
    return rows


async def last_decisions(pool: asyncpg.Pool, mode: str, limit: int = 10) -> list[asyncpg.Record]:
    """The `limit` latest decisions of `mode`, oldest first, each with its votes (JSON list of
    voter, action, confidence, abstain_reason)."""
    rows: list[asyncpg.Record] = await pool.fetch(
        """SELECT d.id, d.symbol, d.at, d.action, d.confidence, d.analyst, d.reason,
                  coalesce(json_agg(json_build_object('voter', v.voter, 'action', v.action,
                       'confidence', v.confidence, 'abstain_reason', v.abstain_reason))
                       FILTER (WHERE v.id IS NOT NULL), '[]') AS votes
           FROM (SELECT * FROM decisions WHERE mode = $1 ORDER BY at DESC, id DESC LIMIT $2) d
           LEFT JOIN model_votes v ON v.decision_id = d.id
           GROUP BY d.id, d.symbol, d.at, d.action, d.confidence, d.analyst, d.reason
           ORDER BY d.at, d.id""",
        mode, limit,
    )
    return rows
