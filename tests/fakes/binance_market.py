"""A wire-level fake of Binance USDⓈ-M MARKET DATA (REST + kline websocket) on 127.0.0.1.

Point the real ccxt client at it with `quorum.market.live.configure_endpoints(exchange,
server.rest_root, server.ws_root)`. It serves:

- REST `/fapi/v1/`: exchangeInfo, time, ping, klines, ticker/24hr, ticker/bookTicker,
  premiumIndex, fundingRate, openInterest, depth — with Binance's request weights, counted per
  wall minute and returned in `X-MBX-USED-WEIGHT-1M` on every response.
- WS `/market/ws/<n>` (what ccxt.pro uses for linear klines; also `/ws/<n>`): SUBSCRIBE /
  UNSUBSCRIBE requests and kline events pushed by `advance_to()` / `push_kline()`.

The server has its own notion of "now" (`now_ms`): REST klines include the still-open bar
(as Binance does) with PARTIAL values (close = open, half volume, marked in `partial_bars`) so
a client that keeps it is caught. Failures are injectable: `fail_next(status, retry_after,
count, paths)` answers the next REST calls with 429/418 (+ Retry-After) and body code -1003;
`code`/`msg` give another Binance error body (e.g. 500 + -1001, 503 + -1007), `body` a raw
non-JSON one (a gateway's page), and `delay_s` makes the answer arrive that late (a status
below 400 then serves the normal reply, late: a client timeout). `drop_websockets()` closes
every websocket. Every REST request is recorded in `requests`.
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from aiohttp import WSMsgType, web

from quorum.config import timeframe_seconds
from quorum.market.data_files import CandleSeries
from tests.fakes.loopback import serve_on_loopback


@dataclass
class Recorded:
    path: str
    params: dict[str, str]
    weight: int
    status: int
    at: float


RATE_LIMIT_MSG = "Too many requests; current limit is 2400 request weight per 1 MINUTE."


@dataclass
class Failure:
    status: int
    retry_after: int | None
    count: int
    paths: tuple[str, ...] = ()
    code: int = -1003
    msg: str = RATE_LIMIT_MSG
    body: str | None = None  # a raw (non-JSON) body instead of Binance's {"code", "msg"}
    delay_s: float = 0.0
    until: float | None = None  # time.monotonic() after which what is left of the burst is dropped


@dataclass
class SymbolInfo:
    quote_volume: float = 1e9
    funding_rate: float = 0.0001
    open_interest: float = 12345.0
    bid_qty: float = 3.0
    ask_qty: float = 1.0
    status: str = "TRADING"
    contract_type: str = "PERPETUAL"
    quote: str = "USDT"
    funding: list[tuple[int, float]] = field(default_factory=list)


def kline_weight(limit: int) -> int:
    return 1 if limit < 100 else 2 if limit < 500 else 5 if limit <= 1000 else 10


def _f(x: float) -> str:
    return repr(float(x))


class FakeBinanceMarket:
    """The fake server. `candles[(symbol, tf)]` holds full bars; only bars open at `now_ms` are
    served (the last one partially, while it is still open)."""

    def __init__(self, now_ms: int = 0) -> None:
        self.now_ms = now_ms
        self.candles: dict[tuple[str, str], CandleSeries] = {}
        self.symbols: dict[str, SymbolInfo] = {}
        self.requests: list[Recorded] = []
        self.failures: list[Failure] = []
        self.ws_clients: set[web.WebSocketResponse] = set()
        self.subscriptions: dict[web.WebSocketResponse, set[str]] = {}
        self.ws_connects = 0
        self.ws_messages_sent = 0
        self.ws_enabled = True
        self.partial_bars: set[tuple[str, str, int]] = set()
        self._weight_minute = -1
        self._weight_used = 0
        self._runner: web.AppRunner | None = None
        self.port = 0

    # --- setup ----------------------------------------------------------------------------
    def add_symbol(self, symbol: str, info: SymbolInfo | None = None, **series: CandleSeries) -> None:
        """Register a symbol; keyword args map timeframe → CandleSeries (`**{"5m": s}`)."""
        self.symbols[symbol] = info or SymbolInfo()
        for tf, s in series.items():
            self.candles[(symbol, tf)] = s

    def fail_next(self, status: int = 429, retry_after: int | None = 1, count: int = 1,
                  paths: tuple[str, ...] = (), *, code: int | None = None, msg: str | None = None,
                  body: str | None = None, delay_s: float = 0.0, for_s: float | None = None) -> None:
        """Answer the next `count` REST calls (to `paths`, or any) with `status` after `delay_s`
        (see the module doc); `code`/`msg` default to the rate limit's -1003. With `for_s`, the
        burst ends after that many seconds even if fewer calls came (a sick server recovers)."""
        until = None if for_s is None else time.monotonic() + for_s
        self.failures.append(Failure(status, retry_after, count, paths, -1003 if code is None else code,
                                     RATE_LIMIT_MSG if msg is None else msg, body, delay_s, until))

    @property
    def rest_root(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws_root(self) -> str:
        return f"ws://127.0.0.1:{self.port}/ws"

    def paths(self, endpoint: str) -> list[Recorded]:
        return [r for r in self.requests if r.path.endswith(endpoint)]

    def total_weight(self) -> int:
        return sum(r.weight for r in self.requests if r.status == 200)

    # --- lifecycle ------------------------------------------------------------------------
    async def start(self) -> FakeBinanceMarket:
        app = web.Application()
        r = app.router
        r.add_get("/fapi/v1/{endpoint:.*}", self._rest)
        r.add_get("/market/ws/{stream}", self._ws)
        r.add_get("/public/ws/{stream}", self._ws)
        r.add_get("/ws/{stream}", self._ws)
        self._runner, self.port = await serve_on_loopback(app, access_log=None)
        return self

    async def stop(self) -> None:
        await self.drop_websockets()
        if self._runner is not None:
            await self._runner.cleanup()

    async def __aenter__(self) -> FakeBinanceMarket:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # --- REST -----------------------------------------------------------------------------
    def _charge(self, weight: int) -> int:
        minute = int(time.time() // 60)
        if minute != self._weight_minute:
            self._weight_minute, self._weight_used = minute, 0
        self._weight_used += weight
        return self._weight_used

    def _json(self, body: Any, weight: int, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
        used = self._charge(weight)
        h = {"X-MBX-USED-WEIGHT-1M": str(used), **(headers or {})}
        return web.Response(text=json.dumps(body), status=status, headers=h, content_type="application/json")

    async def _rest(self, request: web.Request) -> web.Response:
        endpoint = request.match_info["endpoint"]
        params = dict(request.query)
        weight = self._weight(endpoint, params)
        late = 0.0
        now = time.monotonic()
        for f in self.failures:
            if f.count > 0 and (f.until is None or now < f.until) and (not f.paths or endpoint in f.paths):
                f.count -= 1
                self.requests.append(Recorded(endpoint, params, weight, f.status, time.monotonic()))
                if f.delay_s > 0:
                    await asyncio.sleep(f.delay_s)
                if f.status < 400:  # only late: the normal reply follows
                    late = f.delay_s
                    break
                hdr = {"Retry-After": str(f.retry_after)} if f.retry_after is not None else {}
                if f.body is not None:
                    self._charge(weight)
                    return web.Response(text=f.body, status=f.status, headers=hdr, content_type="text/html")
                return self._json({"code": f.code, "msg": f.msg}, weight, f.status, hdr)
        if not late:
            self.requests.append(Recorded(endpoint, params, weight, 200, time.monotonic()))
        handler = getattr(self, "_get_" + endpoint.replace("/", "_"), None)
        if handler is None:
            return self._json({"code": -5000, "msg": f"fake has no {endpoint}"}, 1, 404)
        try:
            body = handler(params)
        except KeyError as exc:
            return self._json({"code": -1121, "msg": f"Invalid symbol. {exc}"}, weight, 400)
        return self._json(body, weight)

    @staticmethod
    def _weight(endpoint: str, p: dict[str, str]) -> int:
        if endpoint == "klines":
            return kline_weight(int(p.get("limit", 500)))
        if endpoint == "ticker/24hr":
            return 1 if "symbol" in p else 40
        if endpoint == "premiumIndex":
            return 1 if "symbol" in p else 10
        if endpoint == "ticker/bookTicker":
            return 2 if "symbol" in p else 5
        if endpoint == "depth":
            lim = int(p.get("limit", 500))
            return 2 if lim <= 50 else 5 if lim <= 100 else 10 if lim <= 500 else 20
        return 1

    def _get_ping(self, p: dict[str, str]) -> Any:
        return {}

    def _get_time(self, p: dict[str, str]) -> Any:
        return {"serverTime": self.now_ms}

    def _get_exchangeInfo(self, p: dict[str, str]) -> Any:
        out = []
        for sym, info in self.symbols.items():
            base = sym[: -len(info.quote)]
            out.append({
                "symbol": sym, "pair": sym, "contractType": info.contract_type, "deliveryDate": 4133404800000,
                "onboardDate": 1569398400000, "status": info.status, "baseAsset": base, "quoteAsset": info.quote,
                "marginAsset": info.quote, "pricePrecision": 2, "quantityPrecision": 3, "baseAssetPrecision": 8,
                "quotePrecision": 8, "underlyingType": "COIN", "underlyingSubType": [], "triggerProtect": "0.0500",
                "liquidationFee": "0.012500", "marketTakeBound": "0.05", "maxMoveOrderLimit": 10000,
                "filters": [
                    {"filterType": "PRICE_FILTER", "minPrice": "0.01", "maxPrice": "4529764", "tickSize": "0.01"},
                    {"filterType": "LOT_SIZE", "minQty": "0.001", "maxQty": "1000", "stepSize": "0.001"},
                    {"filterType": "MARKET_LOT_SIZE", "minQty": "0.001", "maxQty": "120", "stepSize": "0.001"},
                    {"filterType": "MAX_NUM_ORDERS", "limit": 200},
                    {"filterType": "MIN_NOTIONAL", "notional": "5"},
                    {"filterType": "PERCENT_PRICE", "multiplierUp": "1.0500", "multiplierDown": "0.9500",
                     "multiplierDecimal": "4"},
                ],
                "orderTypes": ["LIMIT", "MARKET", "STOP", "STOP_MARKET", "TAKE_PROFIT", "TAKE_PROFIT_MARKET",
                               "TRAILING_STOP_MARKET"],
                "timeInForce": ["GTC", "IOC", "FOK", "GTX"],
            })
        return {"timezone": "UTC", "serverTime": self.now_ms, "rateLimits": [
            {"rateLimitType": "REQUEST_WEIGHT", "interval": "MINUTE", "intervalNum": 1, "limit": 2400}],
            "exchangeFilters": [], "assets": [], "symbols": out}

    def _bar(self, sym: str, tf: str, i: int) -> tuple[list[Any], bool]:
        s = self.candles[(sym, tf)]
        tf_ms = timeframe_seconds(tf) * 1000
        t = int(s.open_ms[i])
        o, h, lo, c, v = (float(a[i]) for a in (s.open, s.high, s.low, s.close, s.volume))
        partial = t + tf_ms > self.now_ms
        if partial:
            self.partial_bars.add((sym, tf, t))
            h, lo, c, v = max(o, o), min(o, o), o, v / 2
        return [t, _f(o), _f(h), _f(lo), _f(c), _f(v), t + tf_ms - 1, _f(v * c), 100, _f(v / 2), _f(v * c / 2),
                "0"], partial

    def _get_klines(self, p: dict[str, str]) -> Any:
        sym, tf = p["symbol"], p["interval"]
        s = self.candles[(sym, tf)]
        limit = min(int(p.get("limit", 500)), 1500)
        last = int(np.searchsorted(s.open_ms, self.now_ms, side="right"))  # bars opened by now
        start = int(np.searchsorted(s.open_ms, int(p["startTime"]), side="left")) if "startTime" in p else None
        end = int(np.searchsorted(s.open_ms, int(p["endTime"]), side="right")) if "endTime" in p else last
        end = min(end, last)
        if start is None:
            start = max(0, end - limit)
        stop = min(end, start + limit)
        return [self._bar(sym, tf, i)[0] for i in range(start, stop)]

    def _ticker(self, sym: str) -> dict[str, Any]:
        info = self.symbols[sym]
        last = 100.0
        s = self.candles.get((sym, "5m")) or next((v for (k, _), v in self.candles.items() if k == sym), None)
        if s is not None and len(s):
            i = max(0, int(np.searchsorted(s.open_ms, self.now_ms, side="right")) - 1)
            last = float(s.close[i])
        return {"symbol": sym, "priceChange": "0", "priceChangePercent": "1.0", "weightedAvgPrice": _f(last),
                "lastPrice": _f(last), "lastQty": "1", "openPrice": _f(last), "highPrice": _f(last),
                "lowPrice": _f(last), "volume": _f(info.quote_volume / last), "quoteVolume": _f(info.quote_volume),
                "openTime": self.now_ms - 86_400_000, "closeTime": self.now_ms, "firstId": 1, "lastId": 2,
                "count": 2}

    def _get_ticker_24hr(self, p: dict[str, str]) -> Any:
        if "symbol" in p:
            return self._ticker(p["symbol"])
        return [self._ticker(s) for s in self.symbols]

    def _book(self, sym: str) -> dict[str, Any]:
        info = self.symbols[sym]
        px = float(self._ticker(sym)["lastPrice"])
        return {"symbol": sym, "bidPrice": _f(px * 0.9999), "bidQty": _f(info.bid_qty), "askPrice": _f(px * 1.0001),
                "askQty": _f(info.ask_qty), "time": self.now_ms}

    def _get_ticker_bookTicker(self, p: dict[str, str]) -> Any:
        if "symbol" in p:
            return self._book(p["symbol"])
        return [self._book(s) for s in self.symbols]

    def _premium(self, sym: str) -> dict[str, Any]:
        info = self.symbols[sym]
        px = self._ticker(sym)["lastPrice"]
        nxt = (self.now_ms // 28_800_000 + 1) * 28_800_000
        return {"symbol": sym, "markPrice": px, "indexPrice": px, "estimatedSettlePrice": px,
                "lastFundingRate": _f(info.funding_rate), "interestRate": "0.0001", "nextFundingTime": nxt,
                "time": self.now_ms}

    def _get_premiumIndex(self, p: dict[str, str]) -> Any:
        if "symbol" in p:
            return self._premium(p["symbol"])
        return [self._premium(s) for s in self.symbols]

    def _get_fundingRate(self, p: dict[str, str]) -> Any:
        info = self.symbols[p["symbol"]]
        start = int(p.get("startTime", 0))
        limit = int(p.get("limit", 100))
        rows = [(t, r) for t, r in info.funding if t >= start and t <= self.now_ms][:limit]
        return [{"symbol": p["symbol"], "fundingTime": t, "fundingRate": _f(r), "markPrice": "100"} for t, r in rows]

    def _get_openInterest(self, p: dict[str, str]) -> Any:
        info = self.symbols[p["symbol"]]
        return {"symbol": p["symbol"], "openInterest": _f(info.open_interest), "time": self.now_ms}

    def _get_depth(self, p: dict[str, str]) -> Any:
        info = self.symbols[p["symbol"]]
        px = float(self._ticker(p["symbol"])["lastPrice"])
        lim = int(p.get("limit", 5))
        bids = [[_f(px * (1 - 0.0001 * (k + 1))), _f(info.bid_qty)] for k in range(lim)]
        asks = [[_f(px * (1 + 0.0001 * (k + 1))), _f(info.ask_qty)] for k in range(lim)]
        return {"lastUpdateId": 1, "E": self.now_ms, "T": self.now_ms, "bids": bids, "asks": asks}

    # --- websocket ------------------------------------------------------------------------
    async def _ws(self, request: web.Request) -> web.StreamResponse:
        if not self.ws_enabled:
            return web.Response(status=503, text="websocket disabled")
        ws = web.WebSocketResponse(heartbeat=None)
        await ws.prepare(request)
        self.ws_connects += 1
        self.ws_clients.add(ws)
        self.subscriptions[ws] = set()
        try:
            async for msg in ws:
                if msg.type != WSMsgType.TEXT:
                    continue
                data = json.loads(msg.data)
                method, params = data.get("method"), data.get("params") or []
                if method == "SUBSCRIBE":
                    self.subscriptions[ws].update(params)
                elif method == "UNSUBSCRIBE":
                    self.subscriptions[ws].difference_update(params)
                await ws.send_str(json.dumps({"result": None, "id": data.get("id")}))
        finally:
            self.ws_clients.discard(ws)
            self.subscriptions.pop(ws, None)
        return ws

    def subscribed(self) -> set[str]:
        out: set[str] = set()
        for subs in self.subscriptions.values():
            out |= subs
        return out

    async def push_kline(self, symbol: str, tf: str, open_ms: int, closed: bool) -> int:
        """Send one kline event (final values when `closed`, partial otherwise) to subscribers."""
        s = self.candles[(symbol, tf)]
        i = int(np.searchsorted(s.open_ms, open_ms))
        if i >= len(s) or int(s.open_ms[i]) != open_ms:
            return 0
        tf_ms = timeframe_seconds(tf) * 1000
        o, h, lo, c, v = (float(a[i]) for a in (s.open, s.high, s.low, s.close, s.volume))
        if not closed:
            h, lo, c, v = o, o, o, v / 2
        k = {"t": open_ms, "T": open_ms + tf_ms - 1, "s": symbol, "i": tf, "f": 1, "L": 2, "o": _f(o), "c": _f(c),
             "h": _f(h), "l": _f(lo), "v": _f(v), "n": 10, "x": closed, "q": _f(v * c), "V": "0", "Q": "0", "B": "0"}
        msg = json.dumps({"e": "kline", "E": self.now_ms, "s": symbol, "k": k})
        stream = f"{symbol.lower()}@kline_{tf}"
        sent = 0
        for ws, subs in list(self.subscriptions.items()):
            if stream in subs and not ws.closed:
                await ws.send_str(msg)
                sent += 1
        self.ws_messages_sent += sent
        return sent

    async def advance_to(self, now_ms: int) -> None:
        """Move the server clock; for every subscribed stream, send the final update of each bar
        that closed and a first (partial) update of the bar that opened, like Binance."""
        old, self.now_ms = self.now_ms, now_ms
        for (sym, tf), s in self.candles.items():
            if f"{sym.lower()}@kline_{tf}" not in self.subscribed():
                continue
            tf_ms = timeframe_seconds(tf) * 1000
            a = int(np.searchsorted(s.open_ms, old - tf_ms, side="right"))
            b = int(np.searchsorted(s.open_ms, now_ms - tf_ms, side="right"))
            for i in range(a, b):
                await self.push_kline(sym, tf, int(s.open_ms[i]), closed=True)
            cur = now_ms // tf_ms * tf_ms
            if cur > old // tf_ms * tf_ms or a < b:
                await self.push_kline(sym, tf, cur, closed=False)

    async def drop_websockets(self) -> None:
        for ws in list(self.ws_clients):
            await ws.close()
        self.ws_clients.clear()
        self.subscriptions.clear()
        await asyncio.sleep(0)
