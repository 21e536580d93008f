"""The mark-to-market equity history in `equity_snapshots` (migrations 001, 007).

Account level only: wallet, unrealised P&L, equity, open positions and gross exposure of the
whole account — no per-position rows (a position's own path is in its fills, funding payments
and the price files). Rows are written by the engine (`engine.equity`) at every
execution-bar close and right after every fill.

Retention (`compact`, run by the engine every hour of record time): rows younger than
`FULL_RESOLUTION_MS` (7 days) stay as written; each older UTC hour becomes one `hour` row that
keeps the hour's minimum and maximum equity and its inner drawdown, so drawdown measured on the
history is the same as before compaction (`quorum.domain.equity`).

`drawdown_since(pool, mode, since_ms)` is the one place drawdown is read from Postgres: the
report, the go-live gate, /status and /metrics use it; a drawdown breaker reset re-bases the
peak by measuring from the reset's time (`drawdown_base_ms`).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg

from quorum.domain.equity import FULL_RESOLUTION_MS, Drawdown, Segment, hour_of, merge
from quorum.store.positions import dt_to_ms, ms_to_dt


@dataclass(frozen=True, slots=True)
class AccountSnapshot:
    """The account at one instant (what a row of the history holds)."""

    at_ms: int
    wallet_balance: float
    unrealized_pnl: float
    open_positions: int
    gross_exposure: float

    @property
    def equity(self) -> float:
        return self.wallet_balance + self.unrealized_pnl


_DRAWDOWN_SQL = """
WITH s AS (
    SELECT at, id, equity, coalesce(equity_min, equity) AS lo, coalesce(equity_max, equity) AS hi,
           drawdown_pct AS inner_dd,
           max(coalesce(equity_max, equity)) OVER (ORDER BY at, id ROWS BETWEEN UNBOUNDED PRECEDING
                                                   AND 1 PRECEDING) AS before_peak
    FROM equity_snapshots WHERE mode = $1 AND ($2::timestamptz IS NULL OR at >= $2)
), d AS (
    SELECT at, id, equity, hi, greatest(inner_dd, CASE WHEN p > 0 AND lo < p THEN (p - lo) / p * 100 ELSE 0 END) AS dd
    FROM (SELECT *, greatest(before_peak, $3::numeric) AS p FROM s) x
)
SELECT (SELECT coalesce(max(dd), 0) FROM d) AS max_pct,
       (SELECT greatest(max(hi), $3::numeric) FROM d) AS peak,
       (SELECT equity FROM d ORDER BY at DESC, id DESC LIMIT 1) AS equity,
       (SELECT count(*) FROM d) AS rows
"""


async def drawdown_since(pool: asyncpg.Pool | asyncpg.Connection, mode: str, since_ms: int | None = None,
                         start_peak: float | None = None) -> Drawdown:
    """Drawdown of the `mode` history from `since_ms` on (all of it when None), unrealised P&L
    included; `start_peak` (e.g. the initial capital) counts as a peak before the first row.
    Exact on compacted hours (see `quorum.domain.equity`). One query, computed in Postgres."""
    row = await pool.fetchrow(_DRAWDOWN_SQL, mode, None if since_ms is None else ms_to_dt(since_ms), start_peak)
    assert row is not None
    peak = None if row["peak"] is None else float(row["peak"])
    equity = None if row["equity"] is None else float(row["equity"])
    current = (peak - equity) / peak * 100.0 if peak and equity is not None and peak > 0 and equity < peak else 0.0
    return Drawdown(float(row["max_pct"]), current, peak, equity, int(row["rows"]))


async def drawdown_base_ms(pool: asyncpg.Pool | asyncpg.Connection, mode: str) -> int | None:
    """Time of the last operator reset of the drawdown breaker (the current drawdown is measured
    from it: the reset re-bases the peak), or None."""
    at = await pool.fetchval(
        """SELECT max(at) FROM breaker_events WHERE mode = $1 AND breaker = 'drawdown' AND event = 'reset'""", mode)
    return None if at is None else dt_to_ms(at)


class EquityRepository:
    """Read and write the equity history of one mode (see the module docstring)."""

    def __init__(self, pool: asyncpg.Pool, mode: str) -> None:
        self._pool = pool
        self.mode = mode

    async def record(self, at: datetime, equity: float, wallet_balance: float, unrealized_pnl: float = 0.0,
                     open_positions: int = 0, *, gross_exposure: float = 0.0, kind: str = "bar",
                     fill_id: int | None = None) -> bool:
        """One row; False when that bar close or that fill already has its row."""
        inserted = await self._pool.fetchval(
            """INSERT INTO equity_snapshots (mode, at, equity, wallet_balance, unrealized_pnl, open_positions,
                   gross_exposure, equity_min, equity_max, kind, fill_id)
               VALUES ($1, $2, $3, $4, $5, $6, $7, $3, $3, $8, $9) ON CONFLICT DO NOTHING RETURNING 1""",
            self.mode, at, equity, wallet_balance, unrealized_pnl, open_positions, gross_exposure, kind, fill_id,
        )
        return bool(inserted)

    async def record_account(self, snap: AccountSnapshot, *, kind: str = "bar", fill_id: int | None = None) -> bool:
        return await self.record(ms_to_dt(snap.at_ms), snap.equity, snap.wallet_balance, snap.unrealized_pnl,
                                 snap.open_positions, gross_exposure=snap.gross_exposure, kind=kind, fill_id=fill_id)

    async def series(self) -> list[tuple[datetime, float]]:
        rows = await self._pool.fetch(
            "SELECT at, equity FROM equity_snapshots WHERE mode = $1 ORDER BY at, id", self.mode)
        return [(r["at"], float(r["equity"])) for r in rows]

    async def segments(self, since_ms: int | None = None) -> list[Segment]:
        rows = await self._pool.fetch(
            """SELECT at, equity, coalesce(equity_min, equity) AS lo, coalesce(equity_max, equity) AS hi,
                      drawdown_pct, samples FROM equity_snapshots
               WHERE mode = $1 AND ($2::timestamptz IS NULL OR at >= $2) ORDER BY at, id""",
            self.mode, None if since_ms is None else ms_to_dt(since_ms))
        return [Segment(dt_to_ms(r["at"]), float(r["equity"]), float(r["lo"]), float(r["hi"]),
                        float(r["drawdown_pct"]), int(r["samples"])) for r in rows]

    async def latest(self) -> dict[str, Any] | None:
        row = await self._pool.fetchrow(
            "SELECT * FROM equity_snapshots WHERE mode = $1 ORDER BY at DESC, id DESC LIMIT 1", self.mode)
        return dict(row) if row else None

    async def last_fill_id(self) -> int | None:
        """The last fill the history has a row for (hour rows keep the last fill they cover)."""
        v = await self._pool.fetchval(
            "SELECT max(fill_id) FROM equity_snapshots WHERE mode = $1 AND fill_id IS NOT NULL", self.mode)
        return None if v is None else int(v)

    async def new_fills(self, after_id: int) -> list[tuple[int, int]]:
        """(fill id, fill time ms) of this mode's fills stored after `after_id`, in order."""
        rows = await self._pool.fetch(
            "SELECT id, at FROM fills WHERE id > $1 AND mode = $2 ORDER BY id", after_id, self.mode)
        return [(int(r["id"]), dt_to_ms(r["at"])) for r in rows]

    async def max_fill_id(self) -> int:
        v = await self._pool.fetchval("SELECT max(id) FROM fills WHERE mode = $1", self.mode)
        return int(v or 0)

    async def count(self) -> dict[str, int]:
        rows = await self._pool.fetch(
            "SELECT kind, count(*) AS n FROM equity_snapshots WHERE mode = $1 GROUP BY kind", self.mode)
        return {r["kind"]: int(r["n"]) for r in rows}

    async def compact(self, now_ms: int, keep_ms: int = FULL_RESOLUTION_MS) -> tuple[int, int]:
        """Replace every UTC hour that ended before `now_ms − keep_ms` and still has rows as
        written by one `hour` row (see the module docstring). Returns (rows removed, hour rows
        written). Idempotent; one transaction."""
        cutoff = hour_of(now_ms - keep_ms)
        async with self._pool.acquire() as conn, conn.transaction():
            first = await conn.fetchval(
                "SELECT min(at) FROM equity_snapshots WHERE mode = $1 AND kind <> 'hour' AND at < $2",
                self.mode, ms_to_dt(cutoff))
            if first is None:
                return 0, 0
            rows = await conn.fetch(
                """SELECT * FROM equity_snapshots WHERE mode = $1 AND at >= $2 AND at < $3
                   ORDER BY at, id FOR UPDATE""",
                self.mode, ms_to_dt(hour_of(dt_to_ms(first))), ms_to_dt(cutoff))
            hours: dict[int, list[asyncpg.Record]] = {}
            for r in rows:
                hours.setdefault(hour_of(dt_to_ms(r["at"])), []).append(r)
            hours = {h: g for h, g in hours.items() if any(r["kind"] != "hour" for r in g)}
            for group in hours.values():
                seg = merge([Segment(dt_to_ms(r["at"]), float(r["equity"]),
                                     float(r["equity_min"] if r["equity_min"] is not None else r["equity"]),
                                     float(r["equity_max"] if r["equity_max"] is not None else r["equity"]),
                                     float(r["drawdown_pct"]), int(r["samples"])) for r in group])
                last = group[-1]
                fill_ids = [int(r["fill_id"]) for r in group if r["fill_id"] is not None]
                await conn.execute("DELETE FROM equity_snapshots WHERE id = ANY($1::bigint[])",
                                   [int(r["id"]) for r in group])
                await conn.execute(
                    """INSERT INTO equity_snapshots (mode, at, equity, wallet_balance, unrealized_pnl, open_positions,
                           gross_exposure, equity_min, equity_max, drawdown_pct, samples, fill_id, kind)
                       VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, 'hour')""",
                    self.mode, last["at"], seg.equity, last["wallet_balance"], last["unrealized_pnl"],
                    last["open_positions"], last["gross_exposure"], seg.low, seg.high, seg.inner_dd_pct,
                    seg.samples, max(fill_ids) if fill_ids else None)
        return sum(len(g) for g in hours.values()), len(hours)


__all__ = ["AccountSnapshot", "EquityRepository", "drawdown_base_ms", "drawdown_since"]
