"""Foreseen conditions become one line on stderr and an exit code, never a traceback.

`describe(exc)` classifies an exception that reached the top of a process (`quorum ...`,
`health_server.py`): bad input (a setting, an option, a data file, an output path) is exit code 2,
an unavailable dependency (Postgres, the exchange, the API port) is exit code 1. Anything else is
a bug and keeps its traceback (`describe` returns None).

The table names classes by module so that nothing is imported here: an exception can only be an
instance of a class whose module is already loaded, and `quorum --help` stays fast.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass

BAD_INPUT = 2
UNAVAILABLE = 1


@dataclass(frozen=True)
class Foreseen:
    code: int
    line: str


# (module, class name, exit code, prefix, what to do when the message does not already say)
_TABLE: tuple[tuple[str, str, int, str, str], ...] = (
    ("quorum.config.settings", "ConfigError", BAD_INPUT, "configuration error: ", ""),
    ("quorum.backtest.request", "BacktestInputError", BAD_INPUT, "error: ", ""),
    ("quorum.market.data_files", "DataFileError", BAD_INPUT, "error: ", "fix or remove the file"),
    ("quorum.commands.report_files", "OutputPathError", BAD_INPUT, "error: ", ""),
    ("quorum.store.db", "DatabaseUnavailable", UNAVAILABLE, "error: ", ""),
    ("quorum.store.migrate", "MigrationError", UNAVAILABLE, "error: ", ""),
    ("quorum.api.child", "ApiStartError", UNAVAILABLE, "error: ", ""),
    ("quorum.risk.gate", "GateRefused", UNAVAILABLE, "", ""),
    ("quorum.execution.exchange", "ExchangeUnavailable", UNAVAILABLE, "error: ",
     "check BINANCE_FAPI_URL and the network, then run again"),
    ("asyncpg.exceptions", "UndefinedTableError", UNAVAILABLE, "error: database not migrated: ",
     "run `quorum db upgrade`"),
    ("asyncpg.exceptions", "PostgresConnectionError", UNAVAILABLE, "error: Postgres connection lost: ",
     "check DATABASE_URL and that the server is up, then run again"),
)

# file-system errors that name a path (an option or a setting pointing at the wrong place)
_PATH_ERRORS = (FileNotFoundError, NotADirectoryError, IsADirectoryError, PermissionError, FileExistsError)


def one_line(text: str, limit: int = 600) -> str:
    """`text` on one line (newlines folded), at most `limit` characters."""
    flat = " ".join(part.strip() for part in str(text).splitlines() if part.strip())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def describe(exc: BaseException) -> Foreseen | None:
    """The one line and exit code for a foreseen condition; None for anything else (a bug)."""
    for module, name, code, prefix, hint in _TABLE:
        cls = getattr(sys.modules.get(module), name, None)
        if isinstance(cls, type) and isinstance(exc, cls):
            message = one_line(str(exc)) or type(exc).__name__
            if hint and hint not in message:
                message = f"{message}; {hint}"
            return Foreseen(code, prefix + message)
    if isinstance(exc, _PATH_ERRORS) and exc.filename is not None:
        return Foreseen(BAD_INPUT, f"error: cannot use {exc.filename}: {exc.strerror or type(exc).__name__}")
    return None


def check_timeframes_buildable(timeframes: list[str] | tuple[str, ...], base: str, base_name: str,
                               files: set[str] | frozenset[str] = frozenset()) -> None:
    """Raise `ConfigError` naming TIMEFRAMES when one of its indicator timeframes can be built
    neither from `base` bars (not a multiple of them) nor from a candle file of its own (`files`:
    the timeframes present). `base_name` says where `base` came from (`--timeframe`,
    `EXECUTION_TIMEFRAME`)."""
    from quorum.config import ConfigError, timeframe_seconds

    step = timeframe_seconds(base)
    bad = [tf for tf in timeframes if timeframe_seconds(tf) % step and tf not in files]
    if not bad:
        return
    usable = [tf for tf in timeframes if tf not in bad] or [base]
    raise ConfigError(
        f"TIMEFRAMES={','.join(timeframes)}: {', '.join(bad)} cannot be built from {base_name} {base} bars "
        f"(not a multiple of {base}); set TIMEFRAMES to multiples of {base}, e.g. TIMEFRAMES={','.join(usable)}")
