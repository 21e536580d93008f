"""A live-style fake Binance USDⓈ-M market-data server that serves the REAL data files as if live.

Built on `FakeBinanceMarket` (its REST routes, weights, websocket SUBSCRIBE handling, `fail_next`):

- **"now" follows a clock** (`clock.now_ms()`: a `ScaledClock` in the soak, a `WallClock` in the
  smoke test), so the fake and the service — another process given the same clock spec — agree on
  the time without talking. `shift_ms` (a multiple of 4 h, so bars stay on the UTC grid) moves the
  data in time: every served timestamp (klines, funding, serverTime, premiumIndex, websocket
  events) = data timestamp + shift_ms.
- **Timeframes** 1m (derived, below), 5m (the files), 15m/1h/4h (resampled from the 5m). The
  still-open bar is served partially from the path elapsed so far (open, running high/low, the
  price now, pro-rata volume); ticker, bookTicker and premiumIndex prices are the path now
  (`last_price`). Derived prices are not rounded to the tick size.
- **Real funding**: `fundingRate` history from `*-funding.csv.gz` (only events at or before now,
  `markPrice` = the 5m close at that instant); `premiumIndex.lastFundingRate` is the rate of the
  NEXT event in the file (Binance shows the current estimate), `nextFundingTime` its time.
- **Websocket pump** (`binance_stream.KlinePump`): final updates of closed bars, never before
  their close, in time order across timeframes, then partial updates of the open bar.
- **Faults and control API** (`binance_faults.FaultInjection`); the standalone process is
  `python -m tests.fakes.binance_live ...` (`binance_live_cli`).

THE 1-MINUTE PATH (the soak's checker re-implements it; keep the two in step). Within each 5m bar
(o, h, l, c, v) the price moves linearly through these points (minutes after the bar's open):

    t=0: o      t=1: N      t=3: F      t=5: c

where N, the NEARER extreme, is l when |o − l| ≤ |h − o|, else h, and F is the other extreme; so
t=2 is (N + F) / 2 and t=4 is (F + c) / 2. 1m bar i (i = 0..4) opens at path(i) and closes at
path(i+1); its high/low are the max/min of those two points. Volume: bars 0–3 get
q = floor(v / ulp(v) / 5) · ulp(v) (v/5 in whole units of v's last binary place, `math.ulp`), bar 4
gets v − 4q, so the five add back to v exactly in any order of summation. The five 1m bars
aggregate exactly to the 5m bar (open o, max high h, min low l, close c, sum v).
"""

from __future__ import annotations

import math
import sys
from collections import deque
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np
from aiohttp import web

from quorum.market.data_files import CandleSeries, DataFileError, FundingSeries, load_candles, load_funding, resample
from tests.fakes.binance_faults import BinanceError, FaultInjection
from tests.fakes.binance_market import FakeBinanceMarket, SymbolInfo, _f
from tests.fakes.binance_stream import KlinePump

MINUTE_MS = 60_000
FIVE_MS = 5 * MINUTE_MS
HOUR_MS = 60 * MINUTE_MS
SHIFT_UNIT_MS = 4 * HOUR_MS
FUNDING_GRID_MS = 8 * HOUR_MS
TIMEFRAMES = ("1m", "5m", "15m", "1h", "4h")
TF_MS = {"1m": MINUTE_MS, "5m": FIVE_MS, "15m": 15 * MINUTE_MS, "1h": HOUR_MS, "4h": 4 * HOUR_MS}
DEFAULT_SYMBOLS = ("BTCUSDT", "ETHUSDT", "SOLUSDT", "BNBUSDT", "XRPUSDT", "DOGEUSDT")
Bar = tuple[float, float, float, float, float]

# tickSize, stepSize, min notional (close to Binance's USDⓈ-M filters in 2025)
FILTERS = {"BTCUSDT": ("0.10", "0.001", "100"), "ETHUSDT": ("0.01", "0.001", "20"),
           "SOLUSDT": ("0.0100", "1", "5"), "BNBUSDT": ("0.010", "0.01", "5"),
           "XRPUSDT": ("0.0001", "0.1", "5"), "DOGEUSDT": ("0.000010", "1", "5")}


# --- the 1-minute path (pure; see the module docstring) ------------------------------------------
def path_points(o: float, h: float, lo: float, c: float) -> tuple[float, float, float, float, float, float]:
    """The price at minutes 0..5 of a 5m bar."""
    near, far = (lo, h) if abs(o - lo) <= abs(h - o) else (h, lo)
    return (o, near, (near + far) / 2, far, (far + c) / 2, c)


def one_minute_path(o: float, h: float, lo: float, c: float, v: float) -> list[Bar]:
    """The five 1m bars (o, h, l, c, v) derived from one 5m bar; they aggregate back to it exactly."""
    p = path_points(o, h, lo, c)
    unit = math.ulp(v)
    q = (int(v / unit) // 5) * unit  # v/5 in whole units of v's last place: the five add back to v exactly
    vols = [q, q, q, q, v - 4 * q]
    return [(p[i], max(p[i], p[i + 1]), min(p[i], p[i + 1]), p[i + 1], vols[i]) for i in range(5)]


def price_at(o: float, h: float, lo: float, c: float, elapsed_ms: float) -> float:
    """The price on the path `elapsed_ms` after the bar's open (clamped to the bar)."""
    p = path_points(o, h, lo, c)
    x = min(max(elapsed_ms / MINUTE_MS, 0.0), 5.0)
    i = min(int(x), 4)
    frac = x - i
    return p[i] if frac == 0 else p[i] + (p[i + 1] - p[i]) * frac


def path_so_far(o: float, h: float, lo: float, c: float, v: float, from_minute: int, elapsed_ms: float) -> Bar:
    """(open, high, low, close, volume) of the path from minute `from_minute` to `elapsed_ms` after
    the 5m bar's open: the partial bar a client sees while that stretch is still running."""
    p = path_points(o, h, lo, c)
    bars = one_minute_path(o, h, lo, c, v)
    elapsed = min(max(float(elapsed_ms), from_minute * MINUTE_MS), float(FIVE_MS))
    full = min(int(elapsed // MINUTE_MS), 5)
    last = price_at(o, h, lo, c, elapsed)
    seen = [*p[from_minute:full + 1], last]
    vol = sum(b[4] for b in bars[from_minute:full])
    if full < 5:
        vol += bars[full][4] * (elapsed - full * MINUTE_MS) / MINUTE_MS
    return (p[from_minute], max(seen), min(seen), last, vol)


def shift_to_now(start_ms: int, now_ms: int, unit_ms: int = FUNDING_GRID_MS) -> int:
    """The shift (a multiple of `unit_ms`) that serves the data instant `start_ms` at `now_ms`,
    rounded down so the data instant served now lies in [start_ms, start_ms + unit_ms)."""
    return (now_ms - start_ms) // unit_ms * unit_ms


def _decimals(step: str) -> int:
    return len(step.split(".")[1].rstrip("0")) if "." in step else 0


class NowClock(Protocol):
    def now_ms(self) -> int: ...


class LiveBinanceMarket(KlinePump, FaultInjection, FakeBinanceMarket):
    """The fake. `load(data_dir, symbols)` reads the files; `start()` serves them (host/port
    optional) and runs the websocket pump; `stop()` ends both."""

    def __init__(self, clock: NowClock, *, shift_ms: int = 0, tick_s: float = 0.025,
                 partial_every_s: float | None = 0.25, max_recorded: int = 20_000) -> None:
        if shift_ms % SHIFT_UNIT_MS:
            raise ValueError(f"shift_ms={shift_ms} is not a multiple of 4 h: bars would leave the UTC grid")
        self.clock = clock
        self._frozen_now: int | None = None
        self._ready = False
        super().__init__(0)
        self._init_faults()
        self.shift_ms = int(shift_ms)
        self._init_pump(tick_s, partial_every_s, max_recorded)
        self.timeframes = TIMEFRAMES
        self.requests = deque(maxlen=max_recorded)  # type: ignore[assignment]
        self.five: dict[str, CandleSeries] = {}
        self.funding: dict[str, FundingSeries] = {}
        self._site: web.TCPSite | None = None
        self.host = "127.0.0.1"
        self._ready = True

    # --- now follows the clock ----------------------------------------------------------------
    @property  # type: ignore[override]
    def now_ms(self) -> int:
        return self._frozen_now if self._frozen_now is not None else int(self.clock.now_ms())

    @now_ms.setter
    def now_ms(self, value: int) -> None:
        if self._ready:
            raise AttributeError("LiveBinanceMarket's now follows its clock; it cannot be set")

    def _at_one_instant(self, fn: Callable[[], Any]) -> Any:
        """Run a synchronous handler with "now" frozen, so one answer is consistent in itself."""
        if self._frozen_now is not None:
            return fn()
        self._frozen_now = int(self.clock.now_ms())
        try:
            return fn()
        finally:
            self._frozen_now = None

    @property
    def rest_root(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def ws_root(self) -> str:
        """ccxt's linear websocket URL (for `make_exchange`/`configure_endpoints`)."""
        return f"ws://{self.host}:{self.port}/ws"

    @property
    def fstream_root(self) -> str:
        """The service's BINANCE_FSTREAM_URL (ccxt's linear URL is this + "/ws" = `ws_root`)."""
        return f"ws://{self.host}:{self.port}"

    # --- data -----------------------------------------------------------------------------------
    def load(self, data_dir: Path | str, symbols: Sequence[str] = DEFAULT_SYMBOLS) -> LiveBinanceMarket:
        """Read `SYMBOL-futures-5m.csv.gz` (+ `SYMBOL-funding.csv.gz` when present) per symbol."""
        data_dir = Path(data_dir)
        for sym in symbols:
            path = next((p for p in (data_dir / f"{sym}-futures-5m.csv.gz", data_dir / f"{sym}-futures-5m.csv")
                         if p.exists()), None)
            if path is None:
                raise DataFileError(f"{data_dir}: no {sym}-futures-5m.csv.gz (check --data and --symbols)")
            fpath = data_dir / f"{sym}-funding.csv.gz"
            self.add_series(load_candles(path), load_funding(fpath) if fpath.exists() else None)
        return self

    def add_series(self, five: CandleSeries, funding: FundingSeries | None = None) -> None:
        """Serve one symbol from its 5m series (data time; shifted here) and funding events."""
        sym, d = five.symbol, self.shift_ms
        five = CandleSeries(sym, "5m", five.open_ms + d, five.open, five.high, five.low, five.close, five.volume,
                            source=five.source)
        self.five[sym] = five
        self.add_symbol(sym, SymbolInfo(open_interest=1e5), **{tf: resample(five, tf) for tf in TIMEFRAMES[1:]})
        if funding is not None:
            self.funding[sym] = FundingSeries(sym, funding.time_ms + d, funding.rate, funding.interval_ms)

    def _bar5(self, sym: str, t: int) -> int | None:
        """Index of the 5m bar containing instant t."""
        s = self.five[sym]
        k = int(np.searchsorted(s.open_ms, t, side="right")) - 1
        return k if k >= 0 and t < int(s.open_ms[k]) + FIVE_MS else None

    def _five(self, sym: str, k: int) -> Bar:
        s = self.five[sym]
        return float(s.open[k]), float(s.high[k]), float(s.low[k]), float(s.close[k]), float(s.volume[k])

    def count_opened(self, sym: str, tf: str, t: int) -> int:
        """Number of `tf` bars with open time <= t."""
        if tf != "1m":
            return int(np.searchsorted(self.candles[(sym, tf)].open_ms, t, side="right"))
        s = self.five[sym]
        k = int(np.searchsorted(s.open_ms, t, side="right")) - 1
        return 0 if k < 0 else 5 * k + min(5, (t - int(s.open_ms[k])) // MINUTE_MS + 1)

    def open_time(self, sym: str, tf: str, i: int) -> int:
        if tf != "1m":
            return int(self.candles[(sym, tf)].open_ms[i])
        return int(self.five[sym].open_ms[i // 5]) + (i % 5) * MINUTE_MS

    def bar_values(self, sym: str, tf: str, t: int, now: int) -> tuple[Bar, bool] | None:
        """(o, h, l, c, v) of the bar opening at t as seen at `now`, and whether it is partial."""
        tf_ms = TF_MS[tf]
        if t > now:
            return None
        if tf == "1m":
            k = self._bar5(sym, t)
            if k is None:
                return None
            m = (t - int(self.five[sym].open_ms[k])) // MINUTE_MS
            if t + MINUTE_MS <= now:
                return one_minute_path(*self._five(sym, k))[m], False
            return path_so_far(*self._five(sym, k), m, now - (t - m * MINUTE_MS)), True
        s = self.candles[(sym, tf)]
        i = int(np.searchsorted(s.open_ms, t))
        if i >= len(s) or int(s.open_ms[i]) != t:
            return None
        if t + tf_ms <= now:
            return (float(s.open[i]), float(s.high[i]), float(s.low[i]), float(s.close[i]),
                    float(s.volume[i])), False
        five = self.five[sym]
        k0 = int(np.searchsorted(five.open_ms, t))
        k = int(np.searchsorted(five.open_ms, now, side="right")) - 1
        o, h, lo, c, v = self._five(sym, k)
        sf = path_so_far(o, h, lo, c, v, 0, now - int(five.open_ms[k])) if now < int(five.open_ms[k]) + FIVE_MS \
            else (o, h, lo, c, v)
        hi, low, vol = sf[1], sf[2], sf[4]
        if k > k0:
            hi = max(hi, float(five.high[k0:k].max()))
            low = min(low, float(five.low[k0:k].min()))
            vol += float(five.volume[k0:k].sum())
        return (float(five.open[k0]), hi, low, sf[3], vol), True

    def last_price(self, sym: str, now: int | None = None) -> float:
        """The price on the 1m path at `now` (the last close once the data has ended)."""
        now = self.now_ms if now is None else now
        s = self.five[sym]
        k = int(np.searchsorted(s.open_ms, now, side="right")) - 1
        if k < 0:
            return float(s.open[0])
        o, h, lo, c, _ = self._five(sym, k)
        return price_at(o, h, lo, c, now - int(s.open_ms[k]))

    # --- REST -----------------------------------------------------------------------------------
    def _kline_row(self, sym: str, tf: str, t: int, now: int) -> list[Any] | None:
        got = self.bar_values(sym, tf, t, now)
        if got is None:
            return None
        (o, h, lo, c, v), _ = got
        return [t, _f(o), _f(h), _f(lo), _f(c), _f(v), t + TF_MS[tf] - 1, _f(v * c), 100, _f(v / 2),
                _f(v * c / 2), "0"]

    def _get_klines(self, p: dict[str, str]) -> Any:
        return self._at_one_instant(lambda: self._klines(p))

    def _klines(self, p: dict[str, str]) -> Any:
        sym, tf = p["symbol"], p.get("interval", "")
        if sym not in self.five:
            raise KeyError(sym)
        if tf not in TF_MS:
            raise BinanceError(400, -1120, "Invalid interval.")
        limit = min(max(int(p.get("limit", 500)), 1), 1500)
        now = self.now_ms
        opened = self.count_opened(sym, tf, now)
        end = min(opened, self.count_opened(sym, tf, int(p["endTime"]))) if "endTime" in p else opened
        if "startTime" in p:
            start = self.count_opened(sym, tf, int(p["startTime"]) - 1)
            stop = min(end, start + limit)
        else:
            start, stop = max(0, end - limit), end
        rows = (self._kline_row(sym, tf, self.open_time(sym, tf, i), now) for i in range(start, stop))
        return [r for r in rows if r is not None]

    def _ticker(self, sym: str) -> dict[str, Any]:
        now, s = self.now_ms, self.five[sym]
        last = self.last_price(sym, now)
        a = int(np.searchsorted(s.open_ms, now - 86_400_000, side="left"))
        b = int(np.searchsorted(s.open_ms, now - FIVE_MS, side="right"))  # closed bars in the window
        opened = self.last_price(sym, now - 86_400_000)
        hi = max([last, *([float(s.high[a:b].max())] if b > a else [])])
        lo = min([last, *([float(s.low[a:b].min())] if b > a else [])])
        vol = float(s.volume[a:b].sum())
        qvol = float((s.volume[a:b] * s.close[a:b]).sum())
        change = last - opened
        return {"symbol": sym, "priceChange": _f(change), "priceChangePercent": _f(100 * change / opened),
                "weightedAvgPrice": _f(qvol / vol if vol else last), "lastPrice": _f(last), "lastQty": "1",
                "openPrice": _f(opened), "highPrice": _f(hi), "lowPrice": _f(lo), "volume": _f(vol),
                "quoteVolume": _f(qvol), "openTime": now - 86_400_000, "closeTime": now, "firstId": 1,
                "lastId": 2, "count": max(b - a, 1)}

    def _get_ticker_24hr(self, p: dict[str, str]) -> Any:
        return self._at_one_instant(lambda: FakeBinanceMarket._get_ticker_24hr(self, p))

    def _book(self, sym: str) -> dict[str, Any]:
        info, px = self.symbols[sym], self.last_price(sym)
        return {"symbol": sym, "bidPrice": _f(px * 0.9999), "bidQty": _f(info.bid_qty), "askPrice": _f(px * 1.0001),
                "askQty": _f(info.ask_qty), "time": self.now_ms}

    def _get_ticker_bookTicker(self, p: dict[str, str]) -> Any:
        return self._at_one_instant(lambda: FakeBinanceMarket._get_ticker_bookTicker(self, p))

    def next_funding(self, sym: str, now: int) -> tuple[int, float | None]:
        """(time, rate) of the next funding event after `now` (rate None past the file's end)."""
        f = self.funding.get(sym)
        if f is None or len(f) == 0:
            return (now // FUNDING_GRID_MS + 1) * FUNDING_GRID_MS, None
        j = int(np.searchsorted(f.time_ms, now, side="right"))
        if j < len(f):
            return int(f.time_ms[j]), float(f.rate[j])
        return f.next_funding_ms(now) or now, None

    def _premium(self, sym: str) -> dict[str, Any]:
        now = self.now_ms
        px = _f(self.last_price(sym, now))
        nxt, rate = self.next_funding(sym, now)
        if rate is None:
            f = self.funding.get(sym)
            rate = (f.last_rate(now) if f is not None else None) or 0.0
        return {"symbol": sym, "markPrice": px, "indexPrice": px, "estimatedSettlePrice": px,
                "lastFundingRate": f"{rate:.8f}", "interestRate": "0.00010000", "nextFundingTime": nxt, "time": now}

    def _get_premiumIndex(self, p: dict[str, str]) -> Any:
        return self._at_one_instant(lambda: FakeBinanceMarket._get_premiumIndex(self, p))

    def _get_fundingRate(self, p: dict[str, str]) -> Any:
        return self._at_one_instant(lambda: self._funding_rows(p))

    def _funding_rows(self, p: dict[str, str]) -> Any:
        now = self.now_ms
        syms = [p["symbol"]] if "symbol" in p else list(self.funding)
        if any(s not in self.symbols for s in syms):
            raise KeyError(p.get("symbol"))
        limit = min(max(int(p.get("limit", 100)), 1), 1000)
        start, end = int(p.get("startTime", 0)), min(int(p.get("endTime", now)), now)
        rows: list[dict[str, Any]] = []
        for sym in syms:
            f = self.funding.get(sym)
            if f is None:
                continue
            a = int(np.searchsorted(f.time_ms, start, side="left"))
            b = int(np.searchsorted(f.time_ms, end, side="right"))
            for j in range(a, b):
                t = int(f.time_ms[j])
                k = self._bar5(sym, t - FIVE_MS)
                mark = float(self.five[sym].close[k]) if k is not None else self.last_price(sym, t)
                rows.append({"symbol": sym, "fundingTime": t, "fundingRate": f"{float(f.rate[j]):.8f}",
                             "markPrice": _f(mark)})
        rows.sort(key=lambda r: r["fundingTime"])
        return rows[:limit] if "startTime" in p else rows[-limit:]

    def _get_exchangeInfo(self, p: dict[str, str]) -> Any:
        info = super()._get_exchangeInfo(p)
        for m in info["symbols"]:
            sym = m["symbol"]
            px = self.last_price(sym) if sym in self.five else 100.0
            tick, step, notional = FILTERS.get(sym) or (f"{10.0 ** (math.floor(math.log10(px)) - 4):.10f}",
                                                        "0.001", "5")
            m["pricePrecision"], m["quantityPrecision"] = _decimals(tick), _decimals(step)
            for flt in m["filters"]:
                if flt["filterType"] == "PRICE_FILTER":
                    flt.update(tickSize=tick, minPrice=tick, maxPrice="10000000")
                elif flt["filterType"] in ("LOT_SIZE", "MARKET_LOT_SIZE"):
                    flt.update(stepSize=step, minQty=step, maxQty="100000000")
                elif flt["filterType"] == "MIN_NOTIONAL":
                    flt["notional"] = notional
        return info

    # --- lifecycle ------------------------------------------------------------------------------
    async def start(self, host: str = "127.0.0.1", port: int = 0) -> LiveBinanceMarket:  # type: ignore[override]
        """Serve on host:port (0 = a free port) and start the websocket pump."""
        app = web.Application()
        r = app.router
        r.add_get("/fapi/v1/{endpoint:.*}", self._rest)
        for prefix in ("/market/ws", "/public/ws", "/ws"):
            r.add_get(prefix + "/{stream}", self._ws)
        self.add_control_routes(app)
        self.host = host
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=2.0)
        await self._runner.setup()
        self._site = web.TCPSite(self._runner, host, port)
        await self._site.start()
        server = self._site._server
        assert server is not None
        self.port = server.sockets[0].getsockname()[1]  # type: ignore[attr-defined]
        self.start_pump()
        return self

    async def stop(self) -> None:
        self._closing.set()
        await self.stop_pump()
        await FakeBinanceMarket.drop_websockets(self)
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def _stop_listening(self) -> None:
        if self._site is not None:
            await self._site.stop()
            self._site = None
        if self._runner is not None and self._runner.server is not None:
            for conn in self._runner.server.connections:
                conn.force_close()  # idle keep-alive connections too: nothing gets through

    async def _start_listening(self) -> None:
        if self._site is None and self._runner is not None and not self._closing.is_set():
            self._site = web.TCPSite(self._runner, self.host, self.port)
            await self._site.start()

    def stats(self) -> dict[str, Any]:
        return {**super().stats(), "now_ms": self.now_ms, "shift_ms": self.shift_ms, "pump_ticks": self.pump_ticks,
                "pump_errors": list(self.pump_errors), "symbols": sorted(self.five)}


if __name__ == "__main__":
    from tests.fakes.binance_live_cli import main

    sys.exit(main())
