"""Operator controls in Postgres: `operator_actions` (every control, who/surface/why/when, and
what came of it), alert acknowledgement and resolution, the per-symbol entry pause
(`bot_state` key `controls.paused_symbols.<mode>`) and `drawdown_resets`.

Any process may write a request (the CLI, the API's own process, Telegram); the engine that
trades `mode` picks up the pending ones at its next step (`EngineControls`) and finishes them.

    store = ControlStore(pool, "paper")
    aid = await store.request("alice", "cli", "close_position", "BTCUSDT", "news")
    row = await store.wait(aid, timeout_s=15)   # status pending | done | noop | failed
"""

from __future__ import annotations

import asyncio
import time
from datetime import datetime
from typing import Any

import asyncpg

from quorum.domain.controls import ACK_ALERT, RESOLVE_ALERT, ControlError, clean_text
from quorum.logging import redact

RECENT_KEYS = ("id", "who", "surface", "action", "target", "reason", "status", "result", "at", "applied_at")


class ControlStore:
    """Controls of one trading mode (see the module docstring)."""

    def __init__(self, pool: asyncpg.Pool, mode: str) -> None:
        self._pool = pool
        self.mode = mode

    @property
    def paused_key(self) -> str:
        return f"controls.paused_symbols.{self.mode}"

    async def request(self, who: str, surface: str, action: str, target: str | None = None,
                      reason: str | None = None, *, status: str = "pending",
                      result: dict[str, Any] | None = None) -> int:
        """Record a control (pending unless `status` says it is already done); returns its id."""
        aid: int = await self._pool.fetchval(
            """INSERT INTO operator_actions (mode, who, surface, action, target, reason, status, result, applied_at)
               VALUES ($1,$2,$3,$4,$5,$6,$7,$8, CASE WHEN $7 = 'pending' THEN NULL ELSE now() END) RETURNING id""",
            self.mode, clean_text(who, 100) or "unknown", surface, action, target,
            redact(clean_text(reason) or "") or None, status, result or {})
        return aid

    async def pending(self) -> list[dict[str, Any]]:
        rows = await self._pool.fetch(
            "SELECT * FROM operator_actions WHERE mode = $1 AND status = 'pending' ORDER BY id", self.mode)
        return [dict(r) for r in rows]

    async def finish(self, action_id: int, status: str, result: dict[str, Any] | None = None,
                     conn: asyncpg.Connection | None = None) -> None:
        await (conn or self._pool).execute(
            "UPDATE operator_actions SET status = $2, result = $3, applied_at = now() WHERE id = $1",
            action_id, status, result or {})

    async def get(self, action_id: int) -> dict[str, Any] | None:
        row = await self._pool.fetchrow("SELECT * FROM operator_actions WHERE id = $1", action_id)
        return dict(row) if row else None

    async def wait(self, action_id: int, timeout_s: float, poll_s: float = 0.2) -> dict[str, Any]:
        """The action's row once the engine has finished it, or as it stands after `timeout_s`."""
        deadline = time.monotonic() + timeout_s
        while True:
            row = await self.get(action_id)
            if row is None:
                raise ControlError(f"no operator action {action_id}")
            if row["status"] != "pending" or time.monotonic() >= deadline:
                return row
            await asyncio.sleep(poll_s)

    async def recent(self, limit: int = 10) -> list[dict[str, Any]]:
        rows = await self._pool.fetch(
            "SELECT * FROM operator_actions WHERE mode = $1 ORDER BY id DESC LIMIT $2", self.mode, limit)
        return [{k: r[k] for k in RECENT_KEYS} for r in rows]

    # --- alerts (applied at once) ---------------------------------------------------------------
    async def open_alerts(self) -> list[dict[str, Any]]:
        rows = await self._pool.fetch(
            """SELECT id, mode, severity, kind, symbol, message, at, acknowledged_at, acknowledged_by
               FROM alerts WHERE resolved_at IS NULL AND mode <> 'backtest' ORDER BY id""")
        return [dict(r) for r in rows]

    async def ack_alert(self, alert_id: int, who: str, surface: str, reason: str | None = None) -> dict[str, Any]:
        """Acknowledge an alert (seen; it keeps blocking the gate until resolved)."""
        return await self._alert(alert_id, who, surface, reason, ACK_ALERT)

    async def resolve_alert(self, alert_id: int, who: str, surface: str, reason: str | None = None) -> dict[str, Any]:
        """Resolve an alert: it no longer blocks the go-live gate; the row stays as history."""
        return await self._alert(alert_id, who, surface, reason, RESOLVE_ALERT)

    async def _alert(self, alert_id: int, who: str, surface: str, reason: str | None, action: str) -> dict[str, Any]:
        who_c = clean_text(who, 100) or "unknown"
        async with self._pool.acquire() as conn, conn.transaction():
            row = await conn.fetchrow("SELECT * FROM alerts WHERE id = $1 FOR UPDATE", alert_id)
            if row is None:
                raise ControlError(f"no alert {alert_id}")
            if action == ACK_ALERT:
                changed = row["acknowledged_at"] is None and row["resolved_at"] is None
                if changed:
                    await conn.execute("UPDATE alerts SET acknowledged_at = now(), acknowledged_by = $2 WHERE id = $1",
                                       alert_id, who_c)
            else:
                changed = row["resolved_at"] is None
                if changed:
                    await conn.execute(
                        """UPDATE alerts SET resolved_at = now(), resolved_by = $2, resolution = $3,
                               acknowledged_at = coalesce(acknowledged_at, now()),
                               acknowledged_by = coalesce(acknowledged_by, $2) WHERE id = $1""",
                        alert_id, who_c, redact(clean_text(reason) or "") or None)
            result = {"alert_id": alert_id, "severity": row["severity"], "kind": row["kind"],
                      "detail": None if changed else ("already resolved" if row["resolved_at"] else
                                                      "already acknowledged")}
            aid = await conn.fetchval(
                """INSERT INTO operator_actions (mode, who, surface, action, target, reason, status, result, applied_at)
                   VALUES ($1,$2,$3,$4,$5,$6,$7,$8, now()) RETURNING id""",
                row["mode"], who_c, surface, action, str(alert_id), redact(clean_text(reason) or "") or None,
                "done" if changed else "noop", result)
        return {"id": aid, "action": action, "status": "done" if changed else "noop", "result": result}

    async def open_positions_on(self, symbol: str | None) -> int:
        """How many open positions this mode holds on `symbol` (a close needs one)."""
        n: int = await self._pool.fetchval(
            "SELECT count(*) FROM positions WHERE mode = $1 AND symbol = $2 AND status = 'open'", self.mode, symbol)
        return n

    # --- the engine's side ------------------------------------------------------------------------
    async def paused_symbols(self) -> set[str]:
        value = await self._pool.fetchval("SELECT value FROM bot_state WHERE key = $1", self.paused_key)
        return set(value or [])

    async def save_paused_symbols(self, symbols: set[str], conn: asyncpg.Connection | None = None) -> None:
        await (conn or self._pool).execute(
            """INSERT INTO bot_state (key, value, updated_at) VALUES ($1, $2, now())
               ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value, updated_at = now()""",
            self.paused_key, sorted(symbols))

    async def record_drawdown_reset(self, *, record_at: datetime, peak_before: float | None,
                                    equity_at_reset: float | None, drawdown_pct_before: float | None,
                                    action_id: int | None, who: str) -> None:
        await self._pool.execute(
            """INSERT INTO drawdown_resets (mode, record_at, peak_before, equity_at_reset, drawdown_pct_before,
                   operator_action_id, who) VALUES ($1,$2,$3,$4,$5,$6,$7)""",
            self.mode, record_at, peak_before, equity_at_reset, drawdown_pct_before, action_id, who)

    async def last_drawdown_reset(self) -> dict[str, Any] | None:
        """The latest drawdown reset of this mode (its `record_at` is where the peak restarts)."""
        row = await self._pool.fetchrow(
            "SELECT * FROM drawdown_resets WHERE mode = $1 ORDER BY record_at DESC, id DESC LIMIT 1", self.mode)
        return dict(row) if row else None
