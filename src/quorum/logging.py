"""structlog setup: JSON in containers (or LOG_FORMAT=json), readable on a terminal, and a
processor that replaces every configured secret with *** wherever it appears."""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterable, MutableMapping
from typing import Any

import structlog

_secrets: list[str] = []


def register_secrets(values: Iterable[str]) -> None:
    """Add values (API keys, tokens, passwords) that must never be logged."""
    for v in values:
        if v and len(v) >= 4 and v not in _secrets:
            _secrets.append(v)


def redact(text: str) -> str:
    for s in _secrets:
        if s in text:
            text = text.replace(s, "***")
    return text


def _redact_value(value: Any) -> Any:
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, dict):
        return {k: _redact_value(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(_redact_value(v) for v in value)
    if isinstance(value, BaseException):
        return redact(f"{type(value).__name__}: {value}")
    return value


def redact_processor(_: Any, __: str, event_dict: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    if not _secrets:
        return event_dict
    for key in list(event_dict):
        event_dict[key] = _redact_value(event_dict[key])
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
        return redact(super().format(record))


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
