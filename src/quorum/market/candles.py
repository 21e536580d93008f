"""ccxt plumbing for live market data: endpoint override (fakes, proxies) and the closed-bar
buffer of one kline stream."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import ccxt.pro as ccxtpro
import numpy as np

from quorum.market.data_files import CandleSeries, timeframe_ms

HISTORY_LIMIT = 499  # klines weight 2 (limit < 500): the most bars per unit of weight


def configure_endpoints(exchange: Any, rest_root: str, ws_root: str | None = None) -> None:
    """Point a ccxt (pro) binanceusdm at another host, e.g. a fake on 127.0.0.1.

    `rest_root` replaces `https://fapi.binance.com` in every fapi* URL; `ws_root` (e.g.
    `ws://127.0.0.1:PORT/ws`) becomes the linear websocket base (ccxt appends /market/ws/<n>).
    """
    api = dict(exchange.urls["api"])
    for key, url in list(api.items()):
        if key.startswith("fapi") and isinstance(url, str):
            api[key] = url.replace("https://fapi.binance.com", rest_root.rstrip("/"))
    if ws_root is not None and isinstance(api.get("ws"), dict):
        ws = dict(api["ws"])
        ws["linear"] = ws_root
        api["ws"] = ws
    exchange.urls["api"] = api


def make_exchange(rest_root: str | None = None, ws_root: str | None = None, **config: Any) -> Any:
    """A ccxt.pro binanceusdm for public market data (no keys needed)."""
    ex = ccxtpro.binanceusdm({"enableRateLimit": True, **config})
    if rest_root:
        configure_endpoints(ex, rest_root, ws_root)
    return ex


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
