"""Binance request-weight accounting: stay under a share of the 2400/min budget, back off on
429/418 honouring Retry-After.

Binance counts weight per IP per wall-clock minute and reports the running total in
`X-MBX-USED-WEIGHT-1M`. `WeightBudget` keeps its own estimate (what we sent this minute), raises
it to what the server reports (other processes may share the IP), and makes callers wait for
the next minute rather than exceed `share × limit`. After a 429 it blocks every call for
Retry-After seconds (or an exponential backoff when absent); a 418 (IP ban) likewise with a
longer default.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Mapping

import structlog

from quorum import metrics

log = structlog.get_logger(__name__)

BINANCE_WEIGHT_LIMIT = 2400


def klines_weight(limit: int) -> int:
    """Weight of GET /fapi/v1/klines by `limit` (Binance USDⓈ-M)."""
    return 1 if limit < 100 else 2 if limit < 500 else 5 if limit <= 1000 else 10


# Weights of the market-data endpoints we use (all symbols variants where relevant).
WEIGHTS = {
    "exchangeInfo": 1,
    "ticker24hr_all": 40,
    "ticker24hr": 1,
    "premiumIndex_all": 10,
    "premiumIndex": 1,
    "bookTicker_all": 5,
    "bookTicker": 2,
    "openInterest": 1,
    "fundingRate": 1,
    "depth5": 2,
}


class WeightBudget:
    """Shared by every REST call of one process (see module doc)."""

    def __init__(
        self,
        share: float = 0.5,
        limit_per_minute: int = BINANCE_WEIGHT_LIMIT,
        *,
        now: Callable[[], float] = time.time,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        max_backoff_s: float = 300.0,
    ) -> None:
        self.budget = max(1, int(share * limit_per_minute))
        self._now = now
        self._sleep = sleep
        self._minute = -1
        self.used = 0  # this minute, our estimate raised to the server's figure
        self.server_used: int | None = None
        self.spent_total = 0  # everything we were allowed to send since start
        self.blocked_until = 0.0
        self.backoffs: list[float] = []  # seconds waited for each 429/418 (for tests and status)
        self._strikes = 0
        self._max_backoff = max_backoff_s
        self._lock = asyncio.Lock()

    def _roll(self) -> None:
        minute = int(self._now() // 60)
        if minute != self._minute:
            self._minute, self.used = minute, 0

    async def acquire(self, weight: int) -> None:
        """Wait until `weight` fits in this minute's budget and no backoff is active."""
        async with self._lock:
            while True:
                now = self._now()
                if now < self.blocked_until:
                    await self._sleep(self.blocked_until - now)
                    continue
                self._roll()
                if self.used + weight <= self.budget or self.used == 0:
                    self.used += weight
                    self.spent_total += weight
                    return
                wait = (self._minute + 1) * 60 - now + 0.05
                log.info("weight_budget_wait", used=self.used, budget=self.budget, wait_s=round(wait, 2))
                await self._sleep(max(wait, 0.05))

    def observe(self, headers: Mapping[str, str] | None) -> None:
        """Take the server's `X-MBX-USED-WEIGHT-1M` into account."""
        if not headers:
            return
        raw = None
        for k, v in headers.items():
            if k.lower() == "x-mbx-used-weight-1m":
                raw = v
                break
        if raw is None:
            return
        try:
            used = int(raw)
        except (TypeError, ValueError):
            return
        self._roll()
        self.server_used = used
        self.used = max(self.used, used)
        metrics.EXCHANGE_WEIGHT.set(used)

    def penalize(self, status: int, retry_after: str | float | None) -> float:
        """Block all calls after a 429 (rate limited) or 418 (banned); returns the wait in s."""
        self._strikes += 1
        wait: float
        try:
            wait = float(retry_after) if retry_after is not None else -1.0
        except (TypeError, ValueError):
            wait = -1.0
        if wait < 0:
            base = 60.0 if status == 418 else 1.0
            wait = min(self._max_backoff, base * 2 ** (self._strikes - 1))
        self.blocked_until = max(self.blocked_until, self._now() + wait)
        self.backoffs.append(wait)
        log.warning("binance_rate_limited", status=status, retry_after_s=wait, strikes=self._strikes)
        return wait

    def succeeded(self) -> None:
        self._strikes = 0

    async def pause(self, seconds: float) -> None:
        """Sleep on the budget's clock (a retry's backoff; tests inject `sleep`)."""
        await self._sleep(seconds)


def retry_after_of(headers: Mapping[str, str] | None) -> str | None:
    if not headers:
        return None
    for k, v in headers.items():
        if k.lower() == "retry-after":
            return v
    return None
