"""ccxt plumbing for live market data: the market-data client (at BINANCE_FAPI_URL /
BINANCE_FSTREAM_URL, or any host: fakes, proxies) and the closed-bar buffer of one kline stream."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import ccxt.pro as ccxtpro
import numpy as np

from quorum.config import Settings
from quorum.market.binance_rest import RequestNoting, configure_endpoints, linear_ws_url
from quorum.market.data_files import CandleSeries, timeframe_ms

HISTORY_LIMIT = 499  # klines weight 2 (limit < 500): the most bars per unit of weight
__all__ = ["HISTORY_LIMIT", "CandleBuffer", "MarketClient", "configure_endpoints", "make_exchange", "market_exchange"]


class MarketClient(RequestNoting, ccxtpro.binanceusdm):  # type: ignore[misc]
    """ccxt.pro binanceusdm whose requests can be described after a failure (see binance_rest)."""


def make_exchange(rest_root: str | None = None, ws_root: str | None = None, **config: Any) -> Any:
    """A ccxt.pro binanceusdm for public market data (no keys needed); `rest_root` / `ws_root`
    as in `configure_endpoints` (None: Binance's production hosts)."""
    ex = MarketClient({"enableRateLimit": True, **config})
    if rest_root or ws_root:
        configure_endpoints(ex, rest_root, ws_root)
    return ex


def market_exchange(settings: Settings, **config: Any) -> Any:
    """The market-data client of `settings`: REST at BINANCE_FAPI_URL, kline streams at
    BINANCE_FSTREAM_URL."""
    return make_exchange(settings.binance_fapi_url, linear_ws_url(settings.binance_fstream_url), **config)


class CandleBuffer:
    """Closed bars of one stream, keyed by open time; keeps the newest `maxlen`."""

    def __init__(self, symbol: str, timeframe: str, maxlen: int = 1000) -> None:
        self.symbol, self.timeframe, self.maxlen = symbol, timeframe, maxlen
        self.tf_ms = timeframe_ms(timeframe)
        self.rows: dict[int, tuple[float, float, float, float, float]] = {}

    def add(self, candle: Sequence[Any], now_ms: int, overwrite: bool = True) -> bool:
        """Store a candle if it is closed at `now_ms`; returns whether it was stored."""
        t = int(candle[0])
        if t + self.tf_ms > now_ms or any(v is None for v in candle[1:6]):
            return False
        if not overwrite and t in self.rows:
            return False
        self.rows[t] = (float(candle[1]), float(candle[2]), float(candle[3]), float(candle[4]), float(candle[5]))
        if len(self.rows) > self.maxlen:
            for k in sorted(self.rows)[: len(self.rows) - self.maxlen]:
                del self.rows[k]
        return True

    @property
    def last_open(self) -> int | None:
        return max(self.rows) if self.rows else None

    def series(self) -> CandleSeries:
        keys = sorted(self.rows)
        arr = np.array([self.rows[k] for k in keys], dtype=np.float64).reshape(len(keys), 5)
        return CandleSeries(self.symbol, self.timeframe, np.array(keys, dtype=np.int64), arr[:, 0].copy(),
                            arr[:, 1].copy(), arr[:, 2].copy(), arr[:, 3].copy(), arr[:, 4].copy(), source="live")
