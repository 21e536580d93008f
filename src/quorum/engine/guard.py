"""What keeps the engine's loop alive through faults (DESIGN principle 9: degrade, never die).

`StepGuard` is told how every engine step ended and decides what that means:

- a step that failed because **Postgres** is gone (its probe fails too) is not counted as a
  failure: the loop waits for the database with capped backoff (`wait_for_database`) and then
  repeats the same step, so no paper fill and no entry happens while it is gone and nothing is
  skipped when it returns;
- an **exchange / market-data** error that survived the adapter's retries marks the component
  degraded (`/health` names it), raises one alert, and the loop goes on; the first step that
  reaches the exchange again clears it and says so;
- any other exception is logged once with its traceback (identical repeats in one line — the
  engine asks `first_of_kind`), counted, alerted, and the loop goes on with the next step.
  `max_failures` failed steps in a row block new entries with a critical alert; as many
  successful steps in a row lift the block (recorded as an alert of its own) while the
  critical alert stays until someone resolves it.

The guard never raises: recording an alert needs the database, and the database may be the
thing that is down, so alerts that cannot be stored are logged and told to listeners only.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

import structlog

from quorum import metrics
from quorum.engine.runtime import RuntimeState
from quorum.execution.exchange import ExchangeError
from quorum.logging import redact

log = structlog.get_logger(__name__)

STEP_FAILURES = "step_failures"  # the entry block's name in runtime.breakers
DB_BACKOFF_FIRST_S = 0.5
DB_BACKOFF_MAX_S = 15.0


def is_exchange_error(exc: BaseException) -> bool:
    """Venue or market-data trouble (ours or ccxt's), as opposed to a bug."""
    if isinstance(exc, ExchangeError):
        return True
    try:
        import ccxt
    except ImportError:  # pragma: no cover - ccxt is a dependency
        return False
    return isinstance(exc, ccxt.BaseError)


def short_reason(exc: BaseException) -> str:
    return redact(f"{type(exc).__name__}: {exc}")[:200]


class StepGuard:
    """See the module docstring. `probe()` raises when the database cannot answer; `alerts` is an
    `AlertRepository`-like object (raise_alert / resolve), or None."""

    def __init__(self, runtime: RuntimeState, *, probe: Callable[[], Awaitable[Any]] | None, alerts: Any,
                 max_failures: int = 5, sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep) -> None:
        self.runtime = runtime
        self.probe = probe
        self.alerts = alerts
        self.max_failures = max_failures
        self.sleep = sleep
        self.consecutive_failures = 0
        self.consecutive_ok = 0
        self.failed_steps = 0
        self.database_outages = 0
        self.blocked: str | None = None
        self._component_alerts: dict[str, int | None] = {}
        self._seen_errors: dict[str, int] = {}

    # --- entries -----------------------------------------------------------------------------
    @property
    def entry_block(self) -> str | None:
        """Why new entries are blocked by the guard (None when they are not)."""
        return self.blocked

    # --- outcomes ------------------------------------------------------------------------------
    async def database_down(self, exc: BaseException) -> bool:
        """True when `exc` came with the database gone (the probe fails too)."""
        if self.probe is None:
            return False
        try:
            await asyncio.wait_for(self.probe(), 3.0)
        except Exception:
            return True
        return False

    async def succeeded(self) -> None:
        self.consecutive_failures = 0
        self.consecutive_ok += 1
        if self.blocked is not None and self.consecutive_ok >= self.max_failures:
            self.blocked = None
            self.runtime.set_breaker(STEP_FAILURES, None)
            log.warning("engine.entries_resumed", successful_steps=self.consecutive_ok)
            await self._alert("info", "entries_resumed",
                              f"new entries resumed after {self.consecutive_ok} successful steps in a row "
                              "(the critical step_failures alert stays until resolved)", resolved=True)
            await self.runtime.emit("recovered", {"component": "engine", "detail": "entries resumed"})

    async def failed(self, exc: BaseException) -> None:
        """A step failed for a reason other than the database (the engine has logged it): count
        it, degrade the exchange component for venue trouble, and block entries after
        `max_failures` in a row (critical alert)."""
        self.consecutive_ok = 0
        self.consecutive_failures += 1
        self.failed_steps += 1
        metrics.STEP_FAILURES.labels("step", type(exc).__name__).inc()
        if is_exchange_error(exc):
            await self.component_failed("exchange", exc)
        if self.blocked is None and self.consecutive_failures >= self.max_failures:
            self.blocked = (f"{self.consecutive_failures} engine steps failed in a row "
                            f"(last: {short_reason(exc)})")
            self.runtime.set_breaker(STEP_FAILURES, self.blocked)
            log.error("engine.entries_blocked", reason=self.blocked)
            await self._alert("critical", STEP_FAILURES, f"new entries paused: {self.blocked}")
            await self.runtime.emit("degraded", {"component": "engine", "detail": self.blocked})

    def first_of_kind(self, what: str, exc: BaseException) -> bool:
        """True the first time this (where, error type) is seen: that one is logged with its
        traceback and alerted; repeats are one-line warnings."""
        signature = f"{what}:{type(exc).__name__}"
        seen = self._seen_errors.get(signature, 0)
        self._seen_errors[signature] = seen + 1
        return seen == 0

    async def unexpected(self, what: str, exc: BaseException) -> None:
        """Store one alert for the first unexpected error of a kind."""
        await self._alert("warning", "engine_error", f"{what}: {short_reason(exc)}")

    # --- components (exchange, market data) -----------------------------------------------------
    async def component_failed(self, component: str, exc: BaseException) -> None:
        """The component is unusable after the adapter's retries: degrade visibly, alert once."""
        reason = short_reason(exc)
        self.runtime.mark_exchange(False, reason)
        if component in self._component_alerts:
            log.warning(f"{component}.still_unavailable", error=reason)
            return
        log.warning(f"{component}.unavailable", error=reason,
                    action="the affected work is skipped and retried; check the exchange host and network")
        self._component_alerts[component] = await self._alert(
            "warning", f"{component}_unavailable", f"{component} unavailable: {reason}")
        await self.runtime.emit("degraded", {"component": component, "detail": reason})

    async def component_ok(self, component: str) -> None:
        if component not in self._component_alerts and self.runtime.exchange_ok:
            return
        self.runtime.mark_exchange(True)
        if component in self._component_alerts:
            alert_id = self._component_alerts.pop(component)
            log.info(f"{component}.recovered")
            if alert_id is not None and self.alerts is not None:
                try:
                    await self.alerts.resolve(alert_id)
                except Exception as exc:
                    log.warning("alert.resolve_failed", error=type(exc).__name__)
            await self.runtime.emit("recovered", {"component": component, "detail": "answering again"})

    # --- the database ------------------------------------------------------------------------
    async def wait_for_database(self, stopping: Callable[[], bool]) -> float:
        """Wait (capped backoff) until the database answers or `stopping()`; returns the outage's
        wall seconds. Nothing else runs meanwhile: no fills, no entries."""
        started = time.monotonic()
        self.database_outages += 1
        self.runtime.database_ok = False
        log.error("database.unavailable", action="no fills or entries until it returns; retrying with backoff")
        await self.runtime.emit("degraded", {"component": "database", "detail": "unreachable; trading suspended"})
        delay = DB_BACKOFF_FIRST_S
        while not stopping():
            await self.sleep(delay)
            try:
                assert self.probe is not None
                await asyncio.wait_for(self.probe(), 3.0)
                break
            except Exception as exc:
                self.runtime.database_error = short_reason(exc)
                delay = min(delay * 2, DB_BACKOFF_MAX_S)
        seconds = time.monotonic() - started
        if stopping():
            return seconds
        self.runtime.database_ok = True
        self.runtime.database_error = None
        log.warning("database.recovered", outage_s=round(seconds, 1), action="resuming where the engine stopped")
        await self._alert("warning", "database_outage", f"the database was unreachable for {seconds:.0f} s; "
                          "trading was suspended meanwhile and resumed where it stopped", resolved=True)
        await self.runtime.emit("recovered", {"component": "database", "detail": f"back after {seconds:.0f} s"})
        return seconds

    async def _alert(self, severity: str, kind: str, message: str, *, resolved: bool = False) -> int | None:
        if self.alerts is None:
            return None
        try:
            alert_id: int = await self.alerts.raise_alert(severity, kind, message)
            if resolved:
                await self.alerts.resolve(alert_id)
            return alert_id
        except Exception as exc:  # the database may be what is failing
            log.warning("alert.not_stored", kind=kind, error=type(exc).__name__)
            return None
