"""The retry policy for model calls (tenacity).

Retry only what can succeed on a second try: timeouts, connection errors, 429 (honouring
`retry-after-ms` / `Retry-After`), 5xx, Anthropic 529 "overloaded". Never 400/401/403/404/422.
Waits are exponential with jitter; every parameter, and the sleep function itself, is
injectable so tests run fast and can see the waits that were chosen.
"""

from __future__ import annotations

import asyncio
import random
import sys
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import Any, TypeVar

from tenacity import AsyncRetrying, RetryCallState, retry_if_exception, stop_after_attempt

T = TypeVar("T")

_RETRYABLE_STATUS = {408, 409, 429}


def _sdk_errors(name: str) -> tuple[type[BaseException], ...]:
    """The providers' SDK exception classes called `name` — of the SDKs already imported: an
    exception can only come from a loaded SDK, and a backtest without models never loads them."""
    found = []
    for sdk in ("openai", "anthropic"):
        cls = getattr(sys.modules.get(sdk), name, None)
        if isinstance(cls, type) and issubclass(cls, BaseException):
            found.append(cls)
    return tuple(found)


def status_of(exc: BaseException) -> int | None:
    code = getattr(exc, "status_code", None)
    return code if isinstance(code, int) else None


def is_retryable(exc: BaseException) -> bool:
    """True for transient failures (see module docstring)."""
    if isinstance(exc, (*_sdk_errors("APIConnectionError"), asyncio.TimeoutError, TimeoutError)):
        return True  # includes the SDKs' APITimeoutError
    if isinstance(exc, ConnectionError):
        return True
    status = status_of(exc)
    if status is None:
        return False
    return status in _RETRYABLE_STATUS or status >= 500


def error_kind(exc: BaseException) -> str:
    """A low-cardinality label for metrics and audit rows."""
    if isinstance(exc, (*_sdk_errors("APITimeoutError"), asyncio.TimeoutError, TimeoutError)):
        return "timeout"
    if isinstance(exc, (*_sdk_errors("APIConnectionError"), ConnectionError)):
        return "connection"
    status = status_of(exc)
    if status == 429:
        return "rate_limit"
    if status == 529:
        return "overloaded"
    if status in (401, 403):
        return "auth"
    if status is not None and status >= 500:
        return "server"
    if status is not None:
        return "client"
    return "other"


def retry_after_seconds(exc: BaseException) -> float | None:
    """The server's requested wait (`retry-after-ms`, then `Retry-After` seconds or HTTP date)."""
    response = getattr(exc, "response", None)
    headers = getattr(response, "headers", None)
    if headers is None:
        return None
    ms = headers.get("retry-after-ms")
    if ms:
        try:
            return max(0.0, float(ms) / 1000.0)
        except ValueError:
            pass
    value = headers.get("retry-after")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        from datetime import UTC, datetime

        return max(0.0, (parsedate_to_datetime(value) - datetime.now(UTC)).total_seconds())
    except (TypeError, ValueError):
        return None


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """attempts = total tries; wait = min(max_wait, initial · 2^(n−1)) · (1 ± jitter), or the
    server's Retry-After capped at `retry_after_cap`."""

    attempts: int = 3
    initial_wait: float = 0.5
    max_wait: float = 8.0
    jitter: float = 0.25
    retry_after_cap: float = 30.0
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep

    def wait_for(self, state: RetryCallState) -> float:
        exc = state.outcome.exception() if state.outcome else None
        if exc is not None:
            ra = retry_after_seconds(exc)
            if ra is not None:
                return float(min(ra, self.retry_after_cap))
        base = min(self.max_wait, self.initial_wait * (2 ** (state.attempt_number - 1)))
        return float(max(0.0, base * (1 + random.uniform(-self.jitter, self.jitter))))

    async def call(self, fn: Callable[[], Awaitable[T]],
                   on_retry: Callable[[BaseException, int], Any] | None = None) -> T:
        """Run `fn` under the policy; the last error is re-raised unchanged."""

        def before_sleep(state: RetryCallState) -> None:
            if on_retry is not None and state.outcome is not None:
                exc = state.outcome.exception()
                if exc is not None:
                    on_retry(exc, state.attempt_number)

        retrying = AsyncRetrying(
            stop=stop_after_attempt(self.attempts),
            wait=self.wait_for,
            retry=retry_if_exception(is_retryable),
            reraise=True,
            sleep=self.sleep,
            before_sleep=before_sleep,
        )
        return await retrying(fn)
