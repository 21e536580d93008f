"""The REST reads of the live market data adapter (`quorum.market.live.LiveMarketData`).

Stateless helpers, each given the adapter's budgeted REST call (`RestCall`) and the ccxt
client: kline pages for a stream's backfill, for the gap since its last closed bar (resync) and
for a time range (catch-up beyond the buffer), plus the per-cycle extras (funding,
top-of-book imbalance, open interest). Caching, streams and the websocket stay in `live`.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Protocol, TypeVar

from quorum.market.candles import HISTORY_LIMIT, CandleBuffer
from quorum.market.data_files import CandleSeries, timeframe_ms
from quorum.market.ratelimit import WEIGHTS, klines_weight

T = TypeVar("T")
# A REST kline counts as closed only if it closed this long before the request was sent: the
# server answers later than we ask, and its clock may be a little behind ours.
CLOSE_MARGIN_MS = 1_000


class RestCall(Protocol):
    """One REST read within the weight budget, retried (`LiveMarketData._rest`)."""

    def __call__(self, weight: int, call: Callable[[], Awaitable[T]], attempts: int | None = None) -> Awaitable[T]: ...


async def backfill_pages(rest: RestCall, exchange: Any, market: str, buf: CandleBuffer, pages: int, now: int) -> None:
    """Up to `pages` pages of 499 bars (weight 2 each) into `buf`, newest page first; `market` is
    the ccxt unified symbol of the buffer's stream."""
    since: int | None = None
    for _ in range(pages):
        rows = await rest(
            klines_weight(HISTORY_LIMIT),
            functools.partial(exchange.fetch_ohlcv, market, buf.timeframe, since=since, limit=HISTORY_LIMIT),
        )
        stored = sum(buf.add(r, now - CLOSE_MARGIN_MS) for r in rows)
        if not rows or (not stored and since is not None):
            break
        first = min(int(r[0]) for r in rows)
        since = first - HISTORY_LIMIT * buf.tf_ms
        if len(rows) < HISTORY_LIMIT:
            break


async def resync(rest: RestCall, exchange: Any, market: str, buf: CandleBuffer, now: int) -> int:
    """Fetch the bars missing since the buffer's last closed bar (small limit = weight 1)."""
    now -= CLOSE_MARGIN_MS
    last = buf.last_open
    expected_last = now // buf.tf_ms * buf.tf_ms - buf.tf_ms
    if last is not None and last >= expected_last:
        return 0
    missing = HISTORY_LIMIT if last is None else (expected_last - last) // buf.tf_ms + 1
    limit = int(min(HISTORY_LIMIT, missing + 1))
    since = None if last is None else last + buf.tf_ms
    tf = buf.timeframe
    rows = await rest(klines_weight(limit), lambda: exchange.fetch_ohlcv(market, tf, since=since, limit=limit))
    return sum(buf.add(r, now) for r in rows)


async def fetch_range(rest: RestCall, exchange: Any, market: str, symbol: str, timeframe: str, first_open: int,
                      until_ms: int) -> CandleSeries:
    """Every closed bar opening in [first_open, until_ms - one bar], fetched by range in pages."""
    tf = timeframe_ms(timeframe)
    rows: dict[int, tuple[float, float, float, float, float]] = {}
    since = first_open
    while since <= until_ms - tf:
        limit = int(min(HISTORY_LIMIT, (until_ms - since) // tf + 1))
        page = await rest(klines_weight(limit), functools.partial(
            exchange.fetch_ohlcv, market, timeframe, since=since, limit=limit))
        got = [r for r in page if r[0] is not None and since <= int(r[0]) <= until_ms - tf]
        for r in got:
            rows[int(r[0])] = (float(r[1]), float(r[2]), float(r[3]), float(r[4]), float(r[5]))
        if not got:
            break
        since = max(int(r[0]) for r in got) + tf
    side = CandleBuffer(symbol, timeframe, maxlen=len(rows) + 1)
    for t, v in rows.items():
        side.add((t, *v), until_ms)
    return side.series()


async def fetch_extras(rest: RestCall, exchange: Any, symbols: Sequence[str], unified: Callable[[str], str],
                       oi_max: int) -> dict[str, dict[str, Any]]:
    """Funding rate + next funding time, book imbalance and open interest (the first `oi_max`
    symbols) of `symbols`; `unified` maps a symbol to its ccxt unified symbol."""
    out: dict[str, dict[str, Any]] = {s: {} for s in symbols}
    uni = [unified(s) for s in symbols]
    by_uni = dict(zip(uni, symbols, strict=True))
    rates = await rest(WEIGHTS["premiumIndex_all"], lambda: exchange.fetch_funding_rates(uni))
    for u, r in rates.items():
        if u in by_uni:
            out[by_uni[u]]["funding_rate"] = r.get("fundingRate")
            out[by_uni[u]]["next_funding_ms"] = r.get("nextFundingTimestamp") or r.get("fundingTimestamp")
    books = await rest(WEIGHTS["bookTicker_all"], lambda: exchange.fetch_bids_asks(uni))
    for u, b in books.items():
        if u in by_uni:
            bid, ask = b.get("bidVolume") or 0.0, b.get("askVolume") or 0.0
            out[by_uni[u]]["book_imbalance"] = (bid - ask) / (bid + ask) if bid + ask > 0 else None
    gate = asyncio.Semaphore(8)

    async def one(sym: str) -> None:
        async with gate:
            oi = await rest(WEIGHTS["openInterest"], lambda: exchange.fetch_open_interest(unified(sym)))
        out[sym]["open_interest"] = oi.get("openInterestAmount")

    await asyncio.gather(*(one(sym) for sym in list(symbols)[:oi_max]))
    return out
