"""The events the engine tells `RuntimeState` listeners about, and their payloads.

The engine emits (`await runtime.emit(kind, payload)`):

- `trade_opened`  symbol, side, quantity, price
- `trade_closed`  symbol, net_pnl, exit_reason
- `stop_moved`    symbol, side, old_stop, new_stop, reason (trailing_stop | break_even_stop), status
- `breaker_tripped` / `breaker_reset`  breaker, symbol (per-symbol breakers), reason, value,
  threshold, until (UTC ISO time of a timed trip), actor (resets)
- `reconciliation` a reconciliation run that made corrections: ok, count, kinds {kind: n},
  symbols, error (failed run)
- `error`         where, symbol, error ("Type: message", secrets redacted), fatal, repeats
- `control`       an operator control the engine carried out: action, target, who, via (cli | api |
  telegram), status (done | noop | failed), detail  (`quorum.engine.controls`; only when an
  operator acts, so not among the trading `EVENT_KINDS`)

Payloads are plain JSON-able dicts (the Telegram notifier prints them as `key: value` lines).
Building them lives here so the engine stays short and every emitter says the same thing.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from quorum.logging import redact

EVENT_KINDS = ("trade_opened", "trade_closed", "stop_moved", "breaker_tripped", "breaker_reset",
               "reconciliation", "error")
HOUR_MS = 3_600_000


def iso_ms(ms: int | None) -> str | None:
    """UTC ISO time ('2025-10-06T12:00:00Z') of epoch ms, None for None."""
    if ms is None:
        return None
    return datetime.fromtimestamp(ms / 1000, tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def stop_moved_payload(symbol: str, side: str, old_stop: float | None, new_stop: float | None, reason: str,
                       status: str | None = None) -> dict[str, Any]:
    return {"symbol": symbol, "side": side, "old_stop": old_stop, "new_stop": new_stop, "reason": reason,
            "status": status}


def breaker_payload(event: Any) -> tuple[str, dict[str, Any]]:
    """(kind, payload) for a `domain.breakers.BreakerEvent` (event "trip" or "reset")."""
    kind = "breaker_tripped" if event.event == "trip" else "breaker_reset"
    payload: dict[str, Any] = {"breaker": event.breaker, "symbol": event.symbol, "reason": event.reason,
                               "value": event.value, "threshold": event.threshold,
                               "until": iso_ms(event.until_ms), "at": iso_ms(event.at_ms)}
    if kind == "breaker_reset":
        payload["actor"] = event.actor
    return kind, payload


def reconciliation_payload(report: Any) -> dict[str, Any] | None:
    """The payload for a reconciliation report with corrections (None when it made none)."""
    corrections: list[Mapping[str, Any]] = list(getattr(report, "corrections", None) or [])
    if not corrections:
        return None
    kinds = Counter(str(c.get("kind")) for c in corrections)
    symbols = sorted({str(c["symbol"]) for c in corrections if c.get("symbol")})
    error = getattr(report, "error", None)
    return {"ok": bool(getattr(report, "ok", False)), "count": len(corrections),
            "kinds": ", ".join(f"{k} x{n}" for k, n in sorted(kinds.items())),
            "symbols": ", ".join(symbols) or None, "error": redact(str(error))[:300] if error else None}


def error_text(exc: BaseException) -> str:
    """'Type: message', secrets redacted, at most 300 characters."""
    return redact(f"{type(exc).__name__}: {exc}")[:300]


@dataclass
class ErrorThrottle:
    """Lets the first error of a kind through and holds back identical repeats (same where,
    symbol and exception type) for `window_ms` of clock time, so an outage does not flood the
    chat; the next one let through carries how many were held back (`repeats`)."""

    window_ms: int = HOUR_MS
    _last: dict[tuple[str, str | None, str], int] = field(default_factory=dict)
    _held: dict[tuple[str, str | None, str], int] = field(default_factory=dict)

    def admit(self, where: str, symbol: str | None, exc: BaseException, now_ms: int) -> int | None:
        """Held-back repeat count to report when this error should be emitted, else None."""
        key = (where, symbol, type(exc).__name__)
        last = self._last.get(key)
        if last is not None and now_ms - last < self.window_ms:
            self._held[key] = self._held.get(key, 0) + 1
            return None
        self._last[key] = now_ms
        return self._held.pop(key, 0)


def error_payload(where: str, symbol: str | None, exc: BaseException, *, fatal: bool = False,
                  repeats: int = 0) -> dict[str, Any]:
    return {"where": where, "symbol": symbol, "error": error_text(exc), "fatal": fatal or None,
            "repeats": repeats or None}

