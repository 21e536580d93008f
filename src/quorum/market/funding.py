"""Funding rates Binance published, for the paper venue on live data.

`PublishedFunding` answers "what rate did Binance settle for SYMBOL at funding time T?" from
`GET /fapi/v1/fundingRate` (ccxt `fetch_funding_rate_history`), cached per symbol. The paper
venue calls `prefetch` before it settles a bar (never inside its database transaction) and
`rate` inside; when no published rate is known, the venue falls back to PAPER_FUNDING_RATE and
counts it (shown on /status).
"""

from __future__ import annotations

from typing import Any

import structlog

from quorum.market.ratelimit import WEIGHTS

log = structlog.get_logger(__name__)

MINUTE_MS = 60_000
PAGE = 1000  # the endpoint's largest page


def _key(time_ms: int) -> int:
    """Binance's fundingTime can be a few ms off the grid: key by the nearest minute."""
    return (int(time_ms) + MINUTE_MS // 2) // MINUTE_MS * MINUTE_MS


class PublishedFunding:
    """See the module docstring. `market` is a `LiveMarketData` (its ccxt client, weight budget
    and transient-error retries are reused)."""

    def __init__(self, market: Any, interval_ms: int = 8 * 3_600_000) -> None:
        self.market = market
        self.interval_ms = interval_ms
        self._rates: dict[str, dict[int, float]] = {}
        self._fetched_until: dict[str, int] = {}  # the newest funding time asked about, per symbol

    async def prefetch(self, symbol: str, start_ms: int, end_ms: int) -> None:
        """Make the rates of funding times in (start_ms, end_ms] known, if Binance has them."""
        have = self._fetched_until.get(symbol)
        if have is not None and (have // self.interval_ms + 1) * self.interval_ms > end_ms:
            return  # no funding time after what we know, up to end_ms
        since = max(start_ms + 1, (have + 1) if have is not None else start_ms + 1)
        unified = self.market.unified(symbol)
        rates = self._rates.setdefault(symbol, {})
        while since <= end_ms:
            rows = await self.market._rest(WEIGHTS["fundingRate"], lambda s=since: self.market.exchange
                                           .fetch_funding_rate_history(unified, since=s, limit=PAGE))
            got = [r for r in rows if r.get("timestamp") is not None and r.get("fundingRate") is not None]
            for r in got:
                rates[_key(r["timestamp"])] = float(r["fundingRate"])
            if len(got) < PAGE:
                break
            since = max(int(r["timestamp"]) for r in got) + 1
        # only what lies in the past is final: a funding time not published yet is asked again
        self._fetched_until[symbol] = min(end_ms, max(rates, default=start_ms))

    def rate(self, symbol: str, time_ms: int) -> float | None:
        return self._rates.get(symbol, {}).get(_key(time_ms))
