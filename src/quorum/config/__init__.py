"""Typed settings from environment variables and an optional `.env` file.

Every variable is documented in `.env.example`. `load_settings()` turns pydantic's validation
errors into one `ConfigError` line per bad variable that names the variable, what is wrong with
its value and the allowed range. Secrets are `SecretStr`: they never appear in `repr`, logs or
`public_view()`.

    settings.py    the model (`Settings`, `TradingMode`) and `load_settings`
    values.py      value parsers and validators, provider defaults, `ProviderConfig`, `.env`, `ConfigError`
    legacy.py      the earlier bots' setting names: honoured with their meaning or refused in one line
    timeframes.py  `KNOWN_TIMEFRAMES`, `timeframe_seconds`

Everything is imported from here (`from quorum.config import Settings, timeframe_seconds`).
"""

from __future__ import annotations

from quorum.config.settings import Settings, TradingMode, load_settings
from quorum.config.timeframes import KNOWN_TIMEFRAMES, timeframe_seconds
from quorum.config.values import (
    KEYLESS_PROVIDERS,
    KNOWN_PROVIDERS,
    OPENAI_COMPATIBLE_DEFAULTS,
    ConfigError,
    CsvList,
    ProviderConfig,
    check_host,
    is_loopback,
    parse_partial_exits,
)

__all__ = [
    "KEYLESS_PROVIDERS", "KNOWN_PROVIDERS", "KNOWN_TIMEFRAMES", "OPENAI_COMPATIBLE_DEFAULTS", "ConfigError", "CsvList",
    "ProviderConfig", "Settings", "TradingMode", "check_host", "is_loopback", "load_settings",
    "parse_partial_exits", "timeframe_seconds",
]
