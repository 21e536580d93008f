"""structlog setup: JSON in containers (or LOG_FORMAT=json), readable on a terminal, and a
processor that passes every value through `quorum.scrub` (configured secrets and key-like
material become ***), and a stdlib formatter that does the same to every formatted record."""

from __future__ import annotations

import logging
import sys
from collections.abc import MutableMapping
from typing import Any

import structlog

from quorum.scrub import register_secrets as _register_secrets
from quorum.scrub import scrub, scrub_value

# kept under their historical names for the modules that import them from here
register_secrets = _register_secrets
redact = scrub


def redact_processor(_: Any, __: str, event_dict: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    """structlog processor: every value of the event (strings, nested containers, exceptions)
    goes through `quorum.scrub`; exception tracebacks are scrubbed when they are formatted."""
    for key in list(event_dict):
        if key != "exc_info":
            event_dict[key] = scrub_value(event_dict[key])
    return event_dict


def _scrub_rendered(_: Any, __: str, event_dict: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    """After `format_exc_info`: the formatted traceback text is scrubbed too."""
    if isinstance(event_dict.get("exception"), str):
        event_dict["exception"] = scrub(event_dict["exception"])
    return event_dict


class _StderrLogger:
    """structlog logger writing to the *current* sys.stderr (looked up per call, so a replaced
    or closed stream from an earlier configuration is never used)."""

    def msg(self, message: str) -> None:
        print(message, file=sys.stderr, flush=True)

    log = debug = info = warn = warning = err = error = critical = exception = fatal = failure = msg


class _StderrHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """StreamHandler bound to whatever sys.stderr is at emit time."""

    @property  # type: ignore[override]
    def stream(self) -> Any:
        return sys.stderr

    @stream.setter
    def stream(self, _value: Any) -> None:
        pass


class _RedactingFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return scrub(super().format(record))


def configure_logging(settings: Any | None = None, *, level: str | None = None, fmt: str | None = None) -> None:
    """Configure structlog and stdlib logging once per process (idempotent)."""
    if settings is not None:
        register_secrets(settings.secret_values())
        level = level or settings.log_level
        fmt = fmt or settings.log_format
    level = level or "INFO"
    fmt = fmt or "auto"
    json_output = fmt == "json" or (fmt == "auto" and not sys.stderr.isatty())
    renderer: Any = structlog.processors.JSONRenderer() if json_output else structlog.dev.ConsoleRenderer()
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            redact_processor,
            structlog.processors.format_exc_info,
            _scrub_rendered,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(getattr(logging, level)),
        logger_factory=lambda *_: _StderrLogger(),
        cache_logger_on_first_use=False,
    )
    handler = _StderrHandler()
    handler.setFormatter(_RedactingFormatter("%(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(getattr(logging, level))
    for noisy in ("httpx", "httpcore", "asyncio", "openai", "anthropic", "pgserver"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, getattr(logging, level)))
