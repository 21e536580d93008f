"""Operator controls (pure): the actions an operator can take and the checks on their targets.

Every control becomes one `operator_actions` row (see `quorum.store.controls`). The engine
carries out the ones in `ENGINE_ACTIONS` at its next step; alert controls are applied at once.
Targets: a breaker key (`drawdown`, `daily_loss`, `loss_streak`, `symbol_cooldown:BTCUSDT`), a
symbol (close, pause_symbol, resume_symbol) or an alert id.
"""

from __future__ import annotations

import re

from quorum.domain.breakers import DAILY_LOSS, DRAWDOWN, LOSS_STREAK, SYMBOL_COOLDOWN

RESET_BREAKER = "reset_breaker"
CLOSE_POSITION = "close_position"
PAUSE_SYMBOL = "pause_symbol"
RESUME_SYMBOL = "resume_symbol"
PAUSE = "pause"
RESUME = "resume"
KILL = "kill"
ACK_ALERT = "ack_alert"
RESOLVE_ALERT = "resolve_alert"

ENGINE_ACTIONS = frozenset({RESET_BREAKER, CLOSE_POSITION, PAUSE_SYMBOL, RESUME_SYMBOL, PAUSE, RESUME})
SURFACES = ("cli", "api", "telegram")
BREAKERS = (DRAWDOWN, DAILY_LOSS, LOSS_STREAK, SYMBOL_COOLDOWN)
_SYMBOL = re.compile(r"^[A-Z0-9]{2,30}$")


class ControlError(ValueError):
    """A control that cannot be taken as asked (unknown breaker, bad symbol, ...); one line."""


def symbol_target(symbol: str) -> str:
    """The normalised symbol (`btcusdt` → `BTCUSDT`); ControlError for anything else."""
    s = (symbol or "").strip().upper()
    if not _SYMBOL.match(s):
        raise ControlError(f"not a symbol: {symbol!r}")
    return s


def breaker_target(name: str, symbol: str | None = None) -> str:
    """The breaker key to reset: `drawdown`, `daily_loss`, `loss_streak` or
    `symbol_cooldown:SYMBOL` (the cool-down needs its symbol; `cooldown` is accepted for it)."""
    n = (name or "").strip().lower().replace("-", "_")
    if ":" in n and symbol is None:
        n, symbol = n.split(":", 1)
    n = {"cooldown": SYMBOL_COOLDOWN, "streak": LOSS_STREAK, "losing_streak": LOSS_STREAK,
         "daily": DAILY_LOSS}.get(n, n)
    if n not in BREAKERS:
        raise ControlError(f"unknown breaker {name!r}: one of {', '.join(BREAKERS)}")
    if n == SYMBOL_COOLDOWN:
        if not symbol:
            raise ControlError("symbol_cooldown needs a symbol (e.g. symbol_cooldown:BTCUSDT)")
        return f"{n}:{symbol_target(symbol)}"
    if symbol:
        raise ControlError(f"{n} is account-wide: no symbol")
    return n


def split_breaker(target: str) -> tuple[str, str | None]:
    """`symbol_cooldown:BTCUSDT` → ('symbol_cooldown', 'BTCUSDT'); `drawdown` → ('drawdown', None)."""
    name, _, symbol = target.partition(":")
    return name, symbol or None


def clean_text(text: str | None, limit: int = 500) -> str | None:
    """A who/why text as stored: stripped, control characters removed, bounded; None if empty."""
    if text is None:
        return None
    t = "".join(ch for ch in str(text) if ch.isprintable()).strip()
    return t[:limit] or None
