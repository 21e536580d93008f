"""Serve an aiohttp app on 127.0.0.1 at an ephemeral port (every wire-level fake uses this)."""

from __future__ import annotations

from typing import Any

from aiohttp import web


async def serve_on_loopback(app: web.Application, **runner_kw: Any) -> tuple[web.AppRunner, int]:
    """Start `app`; return its runner (to clean up) and the port the OS chose."""
    runner = web.AppRunner(app, **runner_kw)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    server = site._server
    assert server is not None
    return runner, server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
