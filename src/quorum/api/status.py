"""GET /status body and the cheap record refresh behind GET /metrics.

/status prefers the engine's in-process `RuntimeState`; when no engine runs in this process
(`health_server.py` alone) it reads open positions, equity, breakers and the last decisions
from Postgres. It only ever contains trading state — never settings, URLs or keys.
"""

from __future__ import annotations

import asyncio
import math
import time
from datetime import datetime
from decimal import Decimal
from typing import Any

import asyncpg
import structlog

from quorum import metrics
from quorum.api.health import Component
from quorum.runtime import RuntimeState, wall_ms
from quorum.store.positions import dt_to_ms

log = structlog.get_logger(__name__)

DB_TIMEOUT_S = 2.0  # /status and /metrics never wait longer on Postgres

POSITION_KEYS = ("symbol", "side", "entry_price", "mark_price", "quantity", "leverage", "pnl",
                 "stop_price", "liquidation_price", "take_profit", "trailing_active", "trailing_stop",
                 "peak_price", "opened_ms")


def jsonable(v: Any) -> Any:
    """JSON-ready copy: datetimes as ISO text, Decimals as floats, NaN/inf as null."""
    if isinstance(v, float):
        return v if math.isfinite(v) else None
    if isinstance(v, datetime):
        return v.isoformat()
    if isinstance(v, dict):
        return {str(k): jsonable(x) for k, x in v.items()}
    if isinstance(v, list | tuple):
        return [jsonable(x) for x in v]
    if isinstance(v, Decimal):
        return jsonable(float(v))
    return v


def _position(p: dict[str, Any]) -> dict[str, Any]:
    return {k: jsonable(p.get(k)) for k in POSITION_KEYS}


async def _db_positions(pool: asyncpg.Pool, mode: str) -> list[dict[str, Any]]:
    rows = await pool.fetch(
        "SELECT * FROM positions WHERE mode = $1 AND status = 'open' ORDER BY opened_at", mode)
    return [
        _position({
            "symbol": r["symbol"], "side": r["side"], "entry_price": r["entry_price"], "mark_price": None,
            "quantity": r["quantity"], "leverage": r["leverage"], "pnl": None, "stop_price": r["stop_price"],
            "liquidation_price": r["liquidation_price"], "take_profit": r["take_profit"],
            "trailing_active": r["trailing_active"], "trailing_stop": r["stop_price"] if r["trailing_active"] else None,
            "peak_price": r["peak_price"], "opened_ms": dt_to_ms(r["opened_at"]),
        })
        for r in rows
    ]


async def _db_decisions(pool: asyncpg.Pool, mode: str, limit: int = 10) -> list[dict[str, Any]]:
    rows = await pool.fetch(
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
    return [
        {"id": r["id"], "symbol": r["symbol"], "time_ms": dt_to_ms(r["at"]), "action": r["action"],
         "confidence": jsonable(r["confidence"]), "analyst": r["analyst"], "reason": r["reason"][:300],
         "votes": jsonable(r["votes"])}
        for r in rows
    ]


async def _db_breakers(pool: asyncpg.Pool, mode: str) -> dict[str, str]:
    """Breakers whose latest event is a trip that has not expired."""
    rows = await pool.fetch(
        """SELECT DISTINCT ON (breaker, coalesce(symbol, '')) breaker, symbol, event, reason, until
           FROM breaker_events WHERE mode = $1 ORDER BY breaker, coalesce(symbol, ''), id DESC""",
        mode,
    )
    now = time.time()
    out = {}
    for r in rows:
        if r["event"] == "trip" and (r["until"] is None or r["until"].timestamp() > now):
            out[r["breaker"] + (f":{r['symbol']}" if r["symbol"] else "")] = r["reason"]
    return out


async def build_status(runtime: RuntimeState, pool: asyncpg.Pool | None, *,
                       database: Component | None = None) -> dict[str, Any]:
    """The /status body. `database`: the latest /health database probe, when the caller has one;
    a failing probe (or the engine reporting its database gone) marks `database` unavailable
    and skips every query, so /status keeps answering from the engine's state in an outage."""
    now = wall_ms()
    engine = runtime.on_kill is not None or runtime.last_scan_ms is not None or runtime.equity is not None
    body: dict[str, Any] = {
        "mode": runtime.mode,
        "source": "engine" if engine else "database",
        "paused": runtime.paused,
        "kill_requested": runtime.kill_requested,
        "uptime_s": round(runtime.uptime_s(now), 1),
        "started_ms": runtime.started_ms,
        "sim_time_ms": runtime.sim_time_ms,
        "symbols": list(runtime.symbols),
        "equity": runtime.equity,
        "wallet_balance": runtime.wallet_balance,
        "day_pnl": runtime.day_pnl,
        "open_positions": [_position(p) for p in runtime.positions],
        "breakers": [{"name": k, "reason": v} for k, v in sorted(runtime.breakers.items())],
        "last_scan_ms": runtime.last_scan_ms,
        "last_decisions": [jsonable(d) for d in list(runtime.last_decisions)[-10:]],
        "live_override": jsonable(runtime.live_override),
        "exchange": {"ok": runtime.exchange_ok, "error": runtime.exchange_error},
        # loop counters (steps, failed steps, skipped cycles, catch-up bars, outages, entry block, lag)
        "engine": jsonable(runtime.engine),
        # paper funding by rate source: the rate Binance published, or the PAPER_FUNDING_RATE fallback
        "funding": jsonable(runtime.funding),
        "database": "ok",
    }
    if pool is None:
        body["database"] = "not configured"
        return body
    if database is not None and not database.ok:
        body["database"] = f"unavailable ({database.extra.get('error') or database.detail})"
        return body
    if not runtime.database_ok:
        body["database"] = f"unavailable (engine: {runtime.database_error or 'database unavailable'})"
        return body
    try:
        await asyncio.wait_for(_from_database(body, runtime, pool, engine), DB_TIMEOUT_S)
    except TimeoutError:
        body["database"] = f"unavailable (no answer within {DB_TIMEOUT_S:g}s)"
    except Exception as exc:
        body["database"] = f"unavailable ({type(exc).__name__})"
    return body


async def _from_database(body: dict[str, Any], runtime: RuntimeState, pool: asyncpg.Pool, engine: bool) -> None:
    """Fill in from Postgres what no engine in reach provides (and a live override's record)."""
    if body["live_override"] is None and runtime.mode == "live":
        row = await pool.fetchrow("SELECT who, why, at FROM live_overrides ORDER BY id DESC LIMIT 1")
        if row is not None:
            body["live_override"] = jsonable(dict(row))
    if not engine:
        body["open_positions"] = await _db_positions(pool, runtime.mode)
        body["last_decisions"] = await _db_decisions(pool, runtime.mode)
        body["breakers"] = [{"name": k, "reason": v}
                            for k, v in sorted((await _db_breakers(pool, runtime.mode)).items())]
        eq = await pool.fetchrow(
            "SELECT equity, wallet_balance FROM equity_snapshots WHERE mode = $1 ORDER BY at DESC, id DESC LIMIT 1",
            runtime.mode)
        if eq is not None:
            body["equity"], body["wallet_balance"] = float(eq["equity"]), float(eq["wallet_balance"])


class RecordGauges:
    """Refreshes the record gauges (win rate, realised P&L, drawdown, open positions, equity)
    from Postgres at most once per `min_interval_s`, so scrapes stay cheap."""

    def __init__(self, min_interval_s: float = 5.0) -> None:
        self.min_interval_s = min_interval_s
        self._last = 0.0
        self._failing = False  # log the first failure of an outage only, and the recovery

    async def refresh(self, runtime: RuntimeState, pool: asyncpg.Pool | None) -> None:
        if pool is None or time.monotonic() - self._last < self.min_interval_s:
            return
        self._last = time.monotonic()
        try:
            row = await asyncio.wait_for(pool.fetchrow(
                """SELECT (SELECT count(*) FROM closed_trades WHERE mode = $1) AS trades,
                          (SELECT count(*) FILTER (WHERE is_win) FROM closed_trades WHERE mode = $1) AS wins,
                          (SELECT coalesce(sum(net_pnl), 0) FROM closed_trades WHERE mode = $1) AS realized,
                          (SELECT count(*) FROM positions WHERE mode = $1 AND status = 'open') AS open_positions,
                          (SELECT max(equity) FROM equity_snapshots WHERE mode = $1) AS peak,
                          (SELECT equity FROM equity_snapshots WHERE mode = $1 ORDER BY at DESC, id DESC LIMIT 1)
                              AS last_equity""",
                runtime.mode,
            ), DB_TIMEOUT_S)
        except Exception as exc:
            if not self._failing:
                log.warning("metrics.refresh_failed", error=type(exc).__name__)
            self._failing = True
            return
        if self._failing:
            log.info("metrics.refresh_recovered")
            self._failing = False
        assert row is not None
        if row["trades"]:
            metrics.WIN_RATE.set(row["wins"] / row["trades"])
        metrics.REALIZED_PNL.set(float(row["realized"]))
        if runtime.equity is None:  # no engine here: the record is the source
            metrics.OPEN_POSITIONS.set(row["open_positions"])
            if row["last_equity"] is not None:
                metrics.EQUITY.set(float(row["last_equity"]))
        if row["peak"] is not None and row["last_equity"] is not None and float(row["peak"]) > 0:
            metrics.DRAWDOWN.set((float(row["peak"]) - float(row["last_equity"])) / float(row["peak"]) * 100.0)
