"""The one CLI, `quorum`. Each area registers its commands from `quorum.commands.<area>`."""

from __future__ import annotations

import importlib
import signal
import sys

import typer

from quorum.foreseen import describe, one_line

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


def _version(value: bool) -> None:
    if value:
        from importlib.metadata import PackageNotFoundError, version

        try:
            print(f"quorum {version('quorum')}")
        except PackageNotFoundError:  # running from a source tree that is not installed
            from quorum import __version__

            print(f"quorum {__version__}")
        raise typer.Exit(0)


@app.callback()
def _options(
    version: bool = typer.Option(False, "--version", is_eager=True, callback=_version,
                                 help="Print the version and exit."),
) -> None:
    """AI-consensus leverage trading for Binance USDⓈ-M perpetuals. Paper first; measured, not claimed."""


def main() -> None:
    """Console entry point. Foreseen conditions (`quorum.foreseen`: a bad setting, option, data
    file or output path; Postgres, the exchange or the API port unavailable) end as one line on
    stderr naming what failed and what to do, exit code 2 for bad input and 1 for an unavailable
    dependency; a bad command line too (exit 2). On the way out the embedded Postgres this command
    started (if any) is let go of: stopped, unless another Quorum process still uses it.

    SIGTERM ends a command cleanly from its first moment (exit 143; `run` and `demo` replace this
    with their own stop once their loop runs): as PID 1 in a container a signal left to its default
    action is ignored, and the container would only stop when killed."""
    signal.signal(signal.SIGTERM, _terminate)
    try:
        code = app(standalone_mode=False)
    except _COMMAND_LINE_ERRORS as exc:  # a bad command line: unknown option, bad value, missing argument
        print(f"error: {_usage_line(exc)}", file=sys.stderr)
        raise SystemExit(getattr(exc, "exit_code", 2)) from None
    except typer.Abort:
        raise SystemExit(130) from None
    except Exception as exc:
        foreseen = describe(exc)
        if foreseen is None:
            raise
        print(foreseen.line, file=sys.stderr)
        raise SystemExit(foreseen.code) from None
    finally:
        release_embedded_postgres()
    raise SystemExit(code if isinstance(code, int) else 0)


# click's usage errors (typer vendors its own click: its classes are not `click`'s)
_COMMAND_LINE_ERRORS: tuple[type[Exception], ...] = tuple(
    c for c in typer.BadParameter.__mro__ if c.__name__ == "ClickException")


def _usage_line(exc: Exception) -> str:
    ctx = getattr(exc, "ctx", None)
    where = f" (see `{ctx.command_path} --help`)" if ctx is not None else ""
    return one_line(exc.format_message() if hasattr(exc, "format_message") else str(exc)) + where


def _terminate(signum: int, frame: object) -> None:
    raise SystemExit(128 + signum)


def release_embedded_postgres() -> None:
    db = sys.modules.get("quorum.store.db")  # imported only by commands that use a database
    if db is not None:
        db.stop_embedded_postgres()
