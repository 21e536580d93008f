"""The FastAPI app: GET /health, /health/live, /status, /metrics; POST /control/{pause,resume,kill}
and the operator controls of `quorum.api.controls` (breaker resets, close a position, pause a
symbol, acknowledge/resolve an alert). Every control is recorded in `operator_actions`.
HEAD /health and HEAD /health/live answer as GET does (same status and headers, no body).

Controls need `Authorization: Bearer <API_TOKEN>` (constant-time comparison). Without a
configured API_TOKEN every control request is refused. Request bodies larger than
`MAX_BODY_BYTES` get 413 before any route runs; unknown routes 404, wrong methods 405; errors
never echo exceptions, headers or tokens.
"""

from __future__ import annotations

import dataclasses
import hmac
import json
from collections.abc import Callable, Iterable
from typing import Any

import asyncpg
import structlog
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST
from prometheus_client.core import Metric
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Receive, Scope, Send

from quorum.api.controls import add_control_routes
from quorum.api.health import IoChecks, run_checks
from quorum.api.metrics_view import RecordView, local_families, render
from quorum.api.scrubbing import ScrubResponses
from quorum.api.status import build_status, jsonable
from quorum.cache import Cache
from quorum.config import Settings
from quorum.engine.runtime import RuntimeState
from quorum.logging import register_secrets
from quorum.operator import record_done
from quorum.scrub import scrub_value

log = structlog.get_logger(__name__)

MAX_BODY_BYTES = 16 * 1024


class BodyLimitMiddleware:
    """413 for a declared Content-Length over the limit, or a streamed body that exceeds it."""

    def __init__(self, app: ASGIApp, limit: int = MAX_BODY_BYTES) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        for name, value in scope.get("headers", []):
            if name == b"content-length":
                try:
                    too_big = int(value) > self.limit
                except ValueError:
                    await JSONResponse({"detail": "invalid Content-Length"}, status_code=400)(scope, receive, send)
                    return
                if too_big:
                    await _too_large(scope, receive, send)
                    return
        seen = 0

        async def limited_receive() -> Any:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.limit:
                    raise _BodyTooLarge
            return message

        try:
            await self.app(scope, limited_receive, send)
        except _BodyTooLarge:
            await _too_large(scope, receive, send)


class _BodyTooLarge(Exception):
    pass


async def _too_large(scope: Scope, receive: Receive, send: Send) -> None:
    log.info("api.body_too_large", path=scope.get("path"))
    await JSONResponse({"detail": "request body too large"}, status_code=413)(scope, receive, send)


def _authorize(settings: Settings, request: Request) -> JSONResponse | None:
    """None when the bearer token matches; otherwise the 401/403 response (never echoing it)."""
    expected = settings.api_token.get_secret_value() if settings.api_token else ""
    if not expected:
        return JSONResponse({"detail": "controls disabled: API_TOKEN is not set"}, status_code=403)
    header = request.headers.get("authorization")
    if header is None:
        return JSONResponse({"detail": "missing bearer token"}, status_code=401,
                            headers={"WWW-Authenticate": "Bearer"})
    scheme, _, token = header.strip().partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token or " " in token:
        return JSONResponse({"detail": "malformed Authorization header; expected 'Bearer <token>'"},
                            status_code=401, headers={"WWW-Authenticate": "Bearer"})
    if not hmac.compare_digest(token.encode("utf-8", "surrogateescape"), expected.encode("utf-8")):
        return JSONResponse({"detail": "invalid token"}, status_code=403)
    return None


def safe_json(body: Any, status_code: int = 200) -> Response:
    """JSON with key-like material replaced by *** (`quorum.scrub`: engine-supplied texts such as
    provider errors could carry a key)."""
    text = json.dumps(scrub_value(jsonable(body)), separators=(",", ":"), allow_nan=False, default=str)
    return Response(text, status_code=status_code, media_type="application/json")


def create_app(settings: Settings, runtime: RuntimeState, pool: asyncpg.Pool | None,
               cache: Cache | None, *, check_ttl_s: float = 1.0, record_ttl_s: float = 1.0,
               process_metrics: Callable[[], Iterable[Metric]] = local_families) -> FastAPI:
    """Build the API around a shared `RuntimeState`, a Postgres pool and the cache. The database
    and cache probes behind /health are reused for `check_ttl_s` seconds (0 = every request), the
    record totals behind /status and /metrics for `record_ttl_s`. `process_metrics`: the engine
    process's counters (this process's REGISTRY by default; the API process passes what the
    engine process publishes). /health: 200 "ok", 200 "degraded" (a component on its fallback,
    listed under `degraded`) or 503 "fail" (components listed under `failing`)."""
    register_secrets(settings.secret_values())
    app = FastAPI(title="Quorum", docs_url=None, redoc_url=None, openapi_url=None)
    app.add_middleware(BodyLimitMiddleware)
    app.add_middleware(ScrubResponses)  # outermost: every body of every route is scrubbed
    record = RecordView(record_ttl_s)
    io_checks = IoChecks(check_ttl_s)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        detail = {404: "not found", 405: "method not allowed"}.get(exc.status_code, "request error")
        return JSONResponse({"detail": detail}, status_code=exc.status_code, headers=exc.headers)

    @app.exception_handler(Exception)
    async def internal_error(request: Request, exc: Exception) -> JSONResponse:
        log.error("api.internal_error", path=request.url.path, error=type(exc).__name__)
        return JSONResponse({"detail": "internal error"}, status_code=500)

    @app.api_route("/health", methods=["GET", "HEAD"])
    async def health() -> Response:
        checks = await run_checks(settings, runtime, pool, cache, io_checks)
        failing = [name for name, c in checks.items() if not c.ok]
        degraded = [name for name, c in checks.items() if c.ok and c.degraded]
        body = {
            "status": "fail" if failing else "degraded" if degraded else "ok",
            "failing": failing,
            "degraded": degraded,
            "mode": runtime.mode,
            "uptime_s": round(runtime.uptime_s(), 1),
            "components": {name: c.as_dict() for name, c in checks.items()},
        }
        return safe_json(body, status_code=200 if not failing else 503)

    @app.api_route("/health/live", methods=["GET", "HEAD"])
    async def live() -> dict[str, Any]:
        """Liveness only: the process answers (use /health for readiness to trade)."""
        return {"status": "ok", "uptime_s": round(runtime.uptime_s(), 1)}

    @app.get("/status")
    async def status() -> Response:
        database, _ = await io_checks.get(pool, cache)  # the /health probe: /status never waits on a dead server
        return safe_json(await build_status(runtime, pool, database=database, record=record))

    @app.get("/metrics")
    async def prometheus_metrics() -> Response:
        """Record families from Postgres, state families from the /status body, the engine
        process's counters (quorum.api.metrics_view)."""
        database, _ = await io_checks.get(pool, cache)
        body = jsonable(await build_status(runtime, pool, database=database, record=record))
        return Response(render(body, record.last, process_metrics), media_type=CONTENT_TYPE_LATEST)

    async def _control(request: Request, action: str) -> Response:
        denied = _authorize(settings, request)
        client = request.client.host if request.client else None
        if denied is not None:
            log.warning("control.rejected", action=action, status=denied.status_code, client=client)
            return denied
        log.warning("control.accepted", action=action, client=client)
        who = await _who(request, client)
        result = await runtime.control(action)
        if action == "kill" and runtime.on_kill is None:
            await _record(action, who, "failed", {"detail": "no engine: nothing was flattened"})
            return JSONResponse({"action": "kill", "ok": False, "paused": True,
                                 "detail": "no engine runs in this process; nothing was flattened"},
                                status_code=503)
        await _record(action, who, "done", {"paused": runtime.paused})
        body: dict[str, Any] = {"action": action, "ok": True, "paused": runtime.paused,
                                "kill_requested": runtime.kill_requested}
        if dataclasses.is_dataclass(result) and not isinstance(result, type):
            result = dataclasses.asdict(result)
        if isinstance(result, dict):
            body["result"] = jsonable(result)
        return safe_json(body)

    async def _who(request: Request, client: str | None) -> str:
        try:
            body = json.loads(await request.body() or b"{}")
        except (ValueError, UnicodeDecodeError):
            body = {}
        who = body.get("who") if isinstance(body, dict) else None
        return who if isinstance(who, str) and who.strip() else f"api:{client or 'unknown'}"

    async def _record(action: str, who: str, status: str, result: dict[str, Any]) -> None:
        if pool is None:
            return
        try:  # the record of a control never stands in the way of the control itself
            await record_done(pool, runtime.mode, who=who, surface="api", action=action, status=status,
                              result=result)
        except Exception as exc:
            log.warning("control.record_failed", action=action, error=type(exc).__name__)

    add_control_routes(app, lambda: runtime.mode, pool, lambda r: _authorize(settings, r),
                       lambda body, code: safe_json(body, status_code=code))

    @app.post("/control/pause")
    async def pause(request: Request) -> Response:
        return await _control(request, "pause")

    @app.post("/control/resume")
    async def resume(request: Request) -> Response:
        return await _control(request, "resume")

    @app.post("/control/kill")
    async def kill(request: Request) -> Response:
        return await _control(request, "kill")

    return app
