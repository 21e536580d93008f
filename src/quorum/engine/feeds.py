"""`VenueFeed`s: how a paper venue is shown the market (a real venue needs none).

- `ReplayPaperFeed` (backtest / demo on files): each closed execution bar goes to
  `PaperExchange.on_bar`; at time T the venue's price becomes the OPEN of the bar that opens at
  T — the price at that instant, so decisions taken at T fill at the next bar's open (and funding
  due at T is settled at it first, on what is held at T).
- `LivePaperFeed` (paper trading on live data): the closed bars of the monitor stream (1m) and,
  at T, the close of the bar that closed at T (during a catch-up, that old bar's close; at a
  decision time, the live feed's last price).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np

from quorum.domain.models import Candle
from quorum.market.data_files import CandleSeries

if TYPE_CHECKING:
    from quorum.execution.paper import PaperExchange
    from quorum.ports import MarketData


class PaperFeed:
    """What every paper venue is shown and asked, whatever the data: closed bars, its progress,
    the end of a step, its funding sources. Subclasses say where the price at T comes from."""

    def __init__(self, exchange: PaperExchange) -> None:
        self.exchange = exchange

    async def bar_closed(self, symbol: str, bar: Candle, timeframe_ms: int) -> None:
        await self.exchange.on_bar(symbol, bar, timeframe_ms)

    async def step_done(self) -> None:
        await self.exchange.flush()

    async def held(self) -> dict[str, int | None]:
        return await self.exchange.held()

    def funding_info(self) -> dict[str, Any] | None:
        return {**self.exchange.funding_stats, "fallback_rate": self.exchange.funding_rate}


class ReplayPaperFeed(PaperFeed):
    def __init__(self, exchange: PaperExchange, series: Mapping[str, CandleSeries]) -> None:
        super().__init__(exchange)
        self.series = dict(series)

    async def price_now(self, symbol: str, time_ms: int, bar: Candle | None = None) -> None:
        s = self.series.get(symbol)
        if s is None:
            return
        i = int(np.searchsorted(s.open_ms, time_ms, side="left"))
        if i < len(s) and int(s.open_ms[i]) == time_ms:
            await self.exchange.on_price(symbol, float(s.open[i]), time_ms)


class LivePaperFeed(PaperFeed):
    def __init__(self, exchange: PaperExchange, market: MarketData) -> None:
        super().__init__(exchange)
        self.market = market

    async def price_now(self, symbol: str, time_ms: int, bar: Candle | None = None) -> None:
        price = bar.close if bar is not None else await self.market.last_price(symbol)
        if price is not None and price > 0:
            await self.exchange.on_price(symbol, float(price), time_ms)
