"""Token-protected operator controls on the API (the same bearer check as /control/kill):

    POST /control/breakers/{name}/reset      body {"symbol"?, "who"?, "reason"?, "wait_s"?}
    POST /control/positions/{symbol}/close   body {"who"?, "reason"?, "wait_s"?}
    POST /control/symbols/{symbol}/pause     (entries on one symbol)
    POST /control/symbols/{symbol}/resume
    POST /control/alerts/{id}/ack            applied at once
    POST /control/alerts/{id}/resolve        applied at once; no longer blocks the go-live gate

Each is recorded in `operator_actions` (surface `api`). Engine controls are carried out by the
running engine at its next step; the request waits up to `wait_s` (default 5, at most 30) seconds
for it: 200 with the recorded action once finished (`status` done | noop | failed), 202 while it is
still pending. A bad target is 400, an unknown alert or no open position 404.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from typing import Any

import asyncpg
import structlog
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response

from quorum.api.status import jsonable
from quorum.domain import controls as c
from quorum.domain.controls import ControlError
from quorum.operator import describe, submit

log = structlog.get_logger(__name__)

Authorize = Callable[[Request], JSONResponse | None]
MAX_WAIT_S = 30.0


async def _body(request: Request) -> dict[str, Any] | None:
    raw = await request.body()
    if not raw.strip():
        return {}
    try:
        body = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        return None
    return body if isinstance(body, dict) else None


def add_control_routes(app: FastAPI, runtime_mode: Callable[[], str], pool: asyncpg.Pool | None,
                       authorize: Authorize, respond: Callable[[Any, int], Response]) -> None:
    """Register the routes above on `app`; `authorize(request)` is the bearer check (None = ok)."""

    async def control(request: Request, action: str, target: str | None, default_wait: float = 5.0) -> Response:
        denied = authorize(request)
        client = request.client.host if request.client else None
        if denied is not None:
            log.warning("control.rejected", action=action, status=denied.status_code, client=client)
            return denied
        if pool is None:
            return JSONResponse({"detail": "no database: controls are recorded in Postgres"}, status_code=503)
        body = await _body(request)
        if body is None:
            return JSONResponse({"detail": "body must be a JSON object"}, status_code=400)
        wait = body.get("wait_s", default_wait)
        if not isinstance(wait, int | float) or isinstance(wait, bool) or not math.isfinite(wait) or wait < 0:
            return JSONResponse({"detail": "wait_s must be a number of seconds ≥ 0"}, status_code=400)
        if action == c.RESET_BREAKER and body.get("symbol"):
            target = f"{target}:{body['symbol']}"
        who, reason = body.get("who"), body.get("reason")
        if not isinstance(who, str | None) or not isinstance(reason, str | None):
            return JSONResponse({"detail": "who and reason must be text"}, status_code=400)
        try:
            row = await submit(pool, runtime_mode(), who=who or f"api:{client or 'unknown'}", surface="api",
                               action=action, target=target, reason=reason, wait_s=min(float(wait), MAX_WAIT_S))
        except ControlError as exc:
            status = 404 if str(exc).startswith("no ") else 400
            return JSONResponse({"detail": str(exc)}, status_code=status)
        log.warning("control.accepted", action=action, target=row["target"], id=row["id"], client=client)
        return respond({"ok": row["status"] in ("done", "noop", "pending"), "summary": describe(row),
                        "action": jsonable(row)}, 202 if row["status"] == "pending" else 200)

    @app.post("/control/breakers/{name}/reset")
    async def reset_breaker(name: str, request: Request) -> Response:
        return await control(request, c.RESET_BREAKER, name)

    @app.post("/control/positions/{symbol}/close")
    async def close_position(symbol: str, request: Request) -> Response:
        return await control(request, c.CLOSE_POSITION, symbol)

    @app.post("/control/symbols/{symbol}/pause")
    async def pause_symbol(symbol: str, request: Request) -> Response:
        return await control(request, c.PAUSE_SYMBOL, symbol)

    @app.post("/control/symbols/{symbol}/resume")
    async def resume_symbol(symbol: str, request: Request) -> Response:
        return await control(request, c.RESUME_SYMBOL, symbol)

    @app.post("/control/alerts/{alert_id}/ack")
    async def ack_alert(alert_id: str, request: Request) -> Response:
        return await control(request, c.ACK_ALERT, alert_id, 0.0)

    @app.post("/control/alerts/{alert_id}/resolve")
    async def resolve_alert(alert_id: str, request: Request) -> Response:
        return await control(request, c.RESOLVE_ALERT, alert_id, 0.0)
