"""Risk persistence: verdicts (`risk_verdicts`), breaker events (`breaker_events`) and the
breaker book (`bot_state`, key `risk.breakers.<mode>`), plus the exposure facts the verdict
needs that are already in `positions` (recent opens, last exit per symbol)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import asyncpg

from quorum.domain.breakers import BreakerBook, BreakerEvent
from quorum.domain.models import canonical
from quorum.domain.risk import RiskVerdict
from quorum.store.positions import dt_to_ms, ms_to_dt


def _num(x: float | None) -> float | None:
    return None if x is None or x != x or x in (float("inf"), float("-inf")) else x


class RiskStore:
    """All risk rows of one trading mode."""

    def __init__(self, pool: asyncpg.Pool, mode: str) -> None:
        self._pool = pool
        self.mode = mode

    @property
    def book_key(self) -> str:
        return f"risk.breakers.{self.mode}"

    async def record_verdict(self, verdict: RiskVerdict, *, at_ms: int, decision_id: str | None = None,
                             proposal_id: int | None = None, conn: asyncpg.Connection | None = None) -> int:
        details = canonical({**verdict.details, "mode": self.mode, "take_profits": list(verdict.take_profits),
                             "margin": verdict.margin})
        vid: int = await (conn or self._pool).fetchval(
            """INSERT INTO risk_verdicts (decision_id, proposal_id, symbol, status, reason_codes, side, quantity,
                   notional, leverage, entry_price, stop_price, take_profit, liquidation_price, risk_usd, details, at)
               VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12,$13,$14,$15,$16) RETURNING id""",
            decision_id, proposal_id, verdict.symbol, verdict.status, list(verdict.reasons),
            verdict.side.value if verdict.side else None, _num(verdict.quantity), _num(verdict.notional),
            _num(verdict.leverage), _num(verdict.entry_price), _num(verdict.stop_price), _num(verdict.take_profit),
            _num(verdict.liquidation_price), _num(verdict.risk_usd), details, ms_to_dt(at_ms),
        )
        return vid

    async def verdicts(self, symbol: str | None = None, limit: int = 100) -> list[dict[str, Any]]:
        rows = await self._pool.fetch(
            """SELECT * FROM risk_verdicts WHERE ($1::text IS NULL OR symbol = $1)
               AND coalesce(details->>'mode', $2) = $2 ORDER BY id DESC LIMIT $3""",
            symbol, self.mode, limit,
        )
        return [dict(r) for r in rows]

    async def record_breaker_events(self, events: tuple[BreakerEvent, ...] | list[BreakerEvent],
                                    conn: asyncpg.Connection | None = None) -> None:
        for e in events:
            await (conn or self._pool).execute(
                """INSERT INTO breaker_events (mode, breaker, event, symbol, reason, value, threshold, until, actor, at)
                   VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10)""",
                self.mode, e.breaker, e.event, e.symbol, e.reason, _num(e.value), _num(e.threshold),
                ms_to_dt(e.until_ms) if e.until_ms is not None else None, e.actor, ms_to_dt(e.at_ms),
            )

    async def breaker_events(self, breaker: str | None = None) -> list[dict[str, Any]]:
        rows = await self._pool.fetch(
            """SELECT * FROM breaker_events WHERE mode = $1 AND ($2::text IS NULL OR breaker = $2) ORDER BY id""",
            self.mode, breaker,
        )
        return [dict(r) for r in rows]

    async def load_book(self) -> BreakerBook:
        value = await self._pool.fetchval("SELECT value FROM bot_state WHERE key = $1", self.book_key)
        return BreakerBook.from_json(value)

    async def save_book(self, book: BreakerBook, conn: asyncpg.Connection | None = None) -> None:
        await (conn or self._pool).execute(
            """INSERT INTO bot_state (key, value, updated_at) VALUES ($1, $2, now())
               ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value, updated_at = now()""",
            self.book_key, book.to_json(),
        )

    async def save_transition(self, book: BreakerBook, events: tuple[BreakerEvent, ...]) -> None:
        """Store the new book and its events atomically (so a crash cannot lose one of them)."""
        async with self._pool.acquire() as conn, conn.transaction():
            await self.record_breaker_events(events, conn)
            await self.save_book(book, conn)

    async def recent_open_ms(self, since_ms: int) -> list[int]:
        rows = await self._pool.fetch(
            "SELECT opened_at FROM positions WHERE mode = $1 AND opened_at > $2 ORDER BY opened_at",
            self.mode, ms_to_dt(since_ms),
        )
        return [dt_to_ms(r["opened_at"]) for r in rows]

    async def last_exit_ms(self) -> dict[str, int]:
        rows = await self._pool.fetch(
            """SELECT symbol, max(closed_at) AS at FROM positions
               WHERE mode = $1 AND status = 'closed' GROUP BY symbol""",
            self.mode,
        )
        return {r["symbol"]: dt_to_ms(r["at"]) for r in rows if isinstance(r["at"], datetime)}
