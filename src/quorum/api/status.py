"""GET /status body (GET /metrics renders its state families from the same body).

/status prefers the engine's `RuntimeState` (in this process, or mirrored from the engine
process); when no engine is in reach (`health_server.py` alone) it reads open positions, equity,
drawdown, breakers and the last decisions from Postgres. Given a `RecordView` it adds the
record's totals (trades, wins, P&L, fees, funding) read from Postgres. It only ever contains
trading state — never settings, URLs or keys.
"""

from __future__ import annotations

import asyncio
import math
import time
from datetime import datetime
from decimal import Decimal
from typing import Any

import asyncpg

from quorum.api.health import Component
from quorum.api.metrics_view import RecordView
from quorum.engine.runtime import RuntimeState, wall_ms
from quorum.store.controls import ControlStore
from quorum.store.equity import EquityRepository, drawdown_base_ms, drawdown_since
from quorum.store.positions import dt_to_ms
from quorum.store.reports import last_decisions, latest_breaker_events, open_positions
from quorum.store.state import OverrideRepository

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
    rows = await open_positions(pool, mode)
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
    rows = await last_decisions(pool, mode, limit)
    return [
        {"id": r["id"], "symbol": r["symbol"], "time_ms": dt_to_ms(r["at"]), "action": r["action"],
         "confidence": jsonable(r["confidence"]), "analyst": r["analyst"], "reason": r["reason"][:300],
         "votes": jsonable(r["votes"])}
        for r in rows
    ]


async def _db_breakers(pool: asyncpg.Pool, mode: str) -> dict[str, str]:
    """Breakers whose latest event is a trip that has not expired."""
    rows = await latest_breaker_events(pool, mode)
    now = time.time()
    out = {}
    for r in rows:
        if r["event"] == "trip" and (r["until"] is None or r["until"].timestamp() > now):
            out[r["breaker"] + (f":{r['symbol']}" if r["symbol"] else "")] = r["reason"]
    return out


async def build_status(runtime: RuntimeState, pool: asyncpg.Pool | None, *,
                       database: Component | None = None, record: RecordView | None = None) -> dict[str, Any]:
    """The /status body. `database`: the latest /health database probe, when the caller has one;
    a failing probe (or the engine reporting its database gone) marks `database` unavailable
    and skips every query, so /status keeps answering from the engine's state in an outage (the
    `record` section is then the last one read, its `as_of_ms` saying when)."""
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
        "unrealized_pnl": runtime.unrealized_pnl,
        "drawdown_pct": runtime.drawdown_pct,
        "day_pnl": runtime.day_pnl,
        "open_positions": [_position(p) for p in runtime.positions],
        "breakers": [{"name": k, "reason": v} for k, v in sorted(runtime.breakers.items())],
        "paused_symbols": list(runtime.paused_symbols),
        "last_scan_ms": runtime.last_scan_ms,
        "last_decisions": [jsonable(d) for d in list(runtime.last_decisions)[-10:]],
        "live_override": jsonable(runtime.live_override),
        "exchange": {"ok": runtime.exchange_ok, "error": runtime.exchange_error},
        # loop counters (steps, failed steps, skipped cycles, catch-up bars, outages, entry block, lag)
        "engine": jsonable(runtime.engine),
        # paper funding by rate source: the rate Binance published, or the PAPER_FUNDING_RATE fallback
        "funding": jsonable(runtime.funding),
        # from the mark-to-market equity history in Postgres (unrealised P&L included)
        "drawdown": None,
        "database": "ok",
    }
    if record is not None and record.last is not None:
        body["record"] = record.last.summary()
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
    if record is not None:
        fresh = await record.get(pool, runtime.mode)
        if fresh is not None:
            body["record"] = fresh.summary()
    return body


async def history_drawdown(pool: asyncpg.Pool, mode: str) -> dict[str, Any]:
    """Drawdown from the equity history: `current_pct` from the peak since the last drawdown
    breaker reset (`since_ms`, None without one) to the last equity; `max_pct` over the whole
    record (a reset never erases it); `rows` of history."""
    base = await drawdown_base_ms(pool, mode)
    now = await drawdown_since(pool, mode, base)
    record = now if base is None else await drawdown_since(pool, mode)
    return {"current_pct": now.current_pct, "max_pct": record.max_pct, "peak": now.peak, "equity": now.equity,
            "since_ms": base, "rows": record.rows}


async def _from_database(body: dict[str, Any], runtime: RuntimeState, pool: asyncpg.Pool, engine: bool) -> None:
    """Fill in from Postgres what no engine in reach provides (and a live override's record)."""
    try:
        body["drawdown"] = jsonable(await history_drawdown(pool, runtime.mode))
    except (asyncpg.UndefinedTableError, asyncpg.UndefinedColumnError):  # the engine side has not migrated yet
        body["drawdown"] = None
    if body["live_override"] is None and runtime.mode == "live":
        row = await OverrideRepository(pool).latest_brief()
        if row is not None:
            body["live_override"] = jsonable(row)
    controls = ControlStore(pool, runtime.mode)
    try:
        body["operator_actions"] = jsonable(await controls.recent(10))  # newest first
        body["open_alerts"] = jsonable(await controls.open_alerts())
        reset = await controls.last_drawdown_reset()  # where the drawdown breaker's peak restarted
    except asyncpg.UndefinedTableError:  # the API is up before the engine side has migrated
        body["operator_actions"], body["open_alerts"], reset = [], [], None
    body["last_drawdown_reset"] = None if reset is None else jsonable(
        {k: reset[k] for k in ("record_at", "peak_before", "equity_at_reset", "drawdown_pct_before", "who", "at")})
    if not engine:
        body["paused_symbols"] = sorted(await controls.paused_symbols())
        body["open_positions"] = await _db_positions(pool, runtime.mode)
        body["last_decisions"] = await _db_decisions(pool, runtime.mode)
        body["breakers"] = [{"name": k, "reason": v}
                            for k, v in sorted((await _db_breakers(pool, runtime.mode)).items())]
        eq = await EquityRepository(pool, runtime.mode).latest()
        if eq is not None:
            body["equity"], body["wallet_balance"] = float(eq["equity"]), float(eq["wallet_balance"])
            body["unrealized_pnl"] = float(eq["unrealized_pnl"])
    dd = body["drawdown"]  # without an engine, the history's current drawdown (an engine publishes its own)
    if body.get("drawdown_pct") is None and dd and dd.get("rows") and dd.get("current_pct") is not None:
        body["drawdown_pct"] = max(0.0, float(dd["current_pct"]))
