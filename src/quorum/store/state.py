"""Bot state (key → JSON value), alerts and go-live overrides (equity history: `store.equity`)."""

from __future__ import annotations

from typing import Any

import asyncpg

from quorum.store.equity import EquityRepository  # the equity history lives in store.equity


class StateRepository:
    """Key/value state in `bot_state` (JSON values)."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    async def get(self, key: str, default: Any = None) -> Any:
        value = await self._pool.fetchval("SELECT value FROM bot_state WHERE key = $1", key)
        return default if value is None else value

    async def set(self, key: str, value: Any, conn: asyncpg.Connection | None = None) -> None:
        await (conn or self._pool).execute(
            """INSERT INTO bot_state (key, value, updated_at) VALUES ($1, $2, now())
               ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value, updated_at = now()""",
            key, value,
        )

    async def delete(self, key: str) -> None:
        await self._pool.execute("DELETE FROM bot_state WHERE key = $1", key)


class AlertRepository:
    """Alerts with a severity; an unresolved critical alert blocks the go-live gate."""

    def __init__(self, pool: asyncpg.Pool, mode: str) -> None:
        self._pool = pool
        self.mode = mode

    async def raise_alert(self, severity: str, kind: str, message: str, *, symbol: str | None = None,
                          details: dict[str, Any] | None = None) -> int:
        alert_id: int = await self._pool.fetchval(
            """INSERT INTO alerts (mode, severity, kind, symbol, message, details)
               VALUES ($1, $2, $3, $4, $5, $6) RETURNING id""",
            self.mode, severity, kind, symbol, message, details or {},
        )
        return alert_id

    async def resolve(self, alert_id: int) -> None:
        await self._pool.execute("UPDATE alerts SET resolved_at = now() WHERE id = $1", alert_id)

    async def open_alerts(self, severity: str | None = None) -> list[dict[str, Any]]:
        rows = await self._pool.fetch(
            """SELECT * FROM alerts WHERE mode = $1 AND resolved_at IS NULL
                 AND ($2::text IS NULL OR severity = $2) ORDER BY id""",
            self.mode, severity,
        )
        return [dict(r) for r in rows]


class OverrideRepository:
    """Go-live overrides: who forced live trading past the gate, when and why."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    async def record(self, who: str, why: str, gate_report: dict[str, Any]) -> int:
        oid: int = await self._pool.fetchval(
            "INSERT INTO live_overrides (who, why, gate_report) VALUES ($1, $2, $3) RETURNING id",
            who, why, gate_report,
        )
        return oid

    async def latest(self) -> dict[str, Any] | None:
        row = await self._pool.fetchrow("SELECT * FROM live_overrides ORDER BY id DESC LIMIT 1")
        return dict(row) if row else None

    async def latest_brief(self) -> dict[str, Any] | None:
        """Who, why and when of the latest override (no gate report), or None."""
        row = await self._pool.fetchrow("SELECT who, why, at FROM live_overrides ORDER BY id DESC LIMIT 1")
        return dict(row) if row else None

    async def brief(self, override_id: int) -> dict[str, Any] | None:
        """Id, who, why and when of one override (no gate report), or None."""
        row = await self._pool.fetchrow("SELECT id, who, why, at FROM live_overrides WHERE id = $1", override_id)
        return dict(row) if row else None


__all__ = ["AlertRepository", "EquityRepository", "OverrideRepository", "StateRepository"]
