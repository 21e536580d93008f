"""Run the API with uvicorn inside an existing event loop (beside the engine) or alone."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator

import uvicorn
from fastapi import FastAPI


class _QuietServer(uvicorn.Server):
    """Leaves signal handling to the caller (the service owns graceful shutdown)."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def make_server(app: FastAPI, host: str, port: int, *, access_log: bool = False) -> uvicorn.Server:
    """A uvicorn server that does not install signal handlers (the caller owns shutdown)."""
    config = uvicorn.Config(app, host=host, port=port, log_config=None, access_log=access_log,
                            lifespan="off", loop="asyncio", http="h11", timeout_graceful_shutdown=2)
    return _QuietServer(config)


async def start_server(app: FastAPI, host: str, port: int) -> tuple[uvicorn.Server, asyncio.Task[None]]:
    """Start serving in a background task; return once the socket is bound (raises if not)."""
    server = make_server(app, host, port)
    task = asyncio.create_task(server.serve())
    while not server.started:
        if task.done():
            task.result()  # raises the bind error
            raise RuntimeError(f"API server on {host}:{port} stopped before it started")
        await asyncio.sleep(0.01)
    return server, task


async def stop_server(server: uvicorn.Server, task: asyncio.Task[None]) -> None:
    server.should_exit = True
    with contextlib.suppress(asyncio.CancelledError, Exception):
        await asyncio.wait_for(task, 5)


def bound_port(server: uvicorn.Server) -> int:
    """The actual port (useful when started on port 0)."""
    for s in server.servers:
        for sock in s.sockets:
            return int(sock.getsockname()[1])
    raise RuntimeError("server has no socket")
