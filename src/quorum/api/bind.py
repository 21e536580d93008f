"""Bind safety at start-up: the API serves beyond this machine only with API_TOKEN set
(`Settings.check_bind`), and when it does, one warning names every endpoint it exposes."""

from __future__ import annotations

import structlog
from fastapi.routing import APIRoute

from quorum.config import Settings
from quorum.engine.runtime import RuntimeState

log = structlog.get_logger(__name__)


def exposed_endpoints(settings: Settings) -> list[str]:
    """'METHOD /path' of every route the API serves (read from the app itself, so new routes are named)."""
    from quorum.api.app import create_app

    app = create_app(settings, RuntimeState(mode=settings.trading_mode.value), None, None)
    return sorted(f"{method} {route.path}" for route in app.routes if isinstance(route, APIRoute)
                  for method in sorted(route.methods or ()) if method != "HEAD")


def guard_bind(settings: Settings, port: int | None = None) -> None:
    """Raise `ConfigError` for a non-loopback API_HOST without API_TOKEN; log the exposure otherwise."""
    settings.check_bind()
    if not settings.api_is_loopback:
        log.warning("api.exposed", host=settings.api_host, port=port if port is not None else settings.api_port,
                    endpoints=exposed_endpoints(settings),
                    note="reachable from other machines: GET endpoints are unauthenticated, "
                         "every other method needs Authorization: Bearer <API_TOKEN>")
