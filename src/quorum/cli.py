"""The one CLI, `quorum`. Each area registers its commands from `quorum.commands.<area>`."""

from __future__ import annotations

import importlib
import signal
import sys

import typer

from quorum.config import ConfigError

app = typer.Typer(
    name="quorum",
    help="AI-consensus leverage trading for Binance USDⓈ-M perpetuals. Paper first; measured, not claimed.",
    no_args_is_help=False,
    add_completion=False,
)

# Modules under quorum.commands that define `register(app)`; each is owned by one area.
COMMAND_MODULES = ("db", "market", "decide", "backtest", "service", "report", "controls")


def _register_all() -> None:
    for name in COMMAND_MODULES:
        qualified = f"quorum.commands.{name}"
        try:
            module = importlib.import_module(qualified)
        except ModuleNotFoundError as exc:
            if exc.name == qualified:
                continue  # area not built yet
            raise
        module.register(app)


_register_all()


def main() -> None:
    """Console entry point: config problems become one clear line and exit code 2. On the way out
    the embedded Postgres this command started (if any) is let go of: stopped, unless another
    Quorum process still uses it.

    SIGTERM ends a command cleanly from its first moment (exit 143; `run` and `demo` replace this
    with their own stop once their loop runs): as PID 1 in a container a signal left to its default
    action is ignored, and the container would only stop when killed."""
    signal.signal(signal.SIGTERM, _terminate)
    try:
        app()
    except ConfigError as exc:
        print(f"configuration error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    finally:
        release_embedded_postgres()


def _terminate(signum: int, frame: object) -> None:
    raise SystemExit(128 + signum)


def release_embedded_postgres() -> None:
    db = sys.modules.get("quorum.store.db")  # imported only by commands that use a database
    if db is not None:
        db.stop_embedded_postgres()
