"""Live market data: ccxt `binanceusdm` REST + ccxt.pro kline websockets, closed bars only.

Flow: `start()` loads markets, picks the universe, backfills every (symbol, timeframe) stream
with one REST call at `limit=499` (weight 2, the cheapest for that much history) and opens the
websocket kline streams (`watch_ohlcv_for_symbols`, one subscription per timeframe). A
websocket candle is taken as CLOSED only once a newer candle of the same stream has arrived
(Binance sends a bar's final update before the next bar's first one); the still-open bar is
never stored. `snapshots(t)` first makes sure every stream holds every bar closed by t —
waiting `ws_grace_s` for the websocket, then falling back to a small REST call — and fetches
funding (premiumIndex, all symbols), top-of-book imbalance (bookTicker, all symbols) and open
interest (one call per symbol) at most once per cycle.

After a websocket drop the stream's cached candles are discarded (the last one may be
partial), the loop reconnects with exponential backoff, and a REST resync fills what was
missed; meanwhile `snapshots()` uses REST. All REST calls go through one `WeightBudget`; the
reads themselves (kline pages, the per-cycle extras) are in `quorum.market.live_rest`.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar

import ccxt
import structlog

from quorum.config import Settings
from quorum.domain.models import Snapshot
from quorum.market.binance_rest import Backoff, budgeted_call
from quorum.market.candles import HISTORY_LIMIT, CandleBuffer, configure_endpoints, make_exchange, market_exchange
from quorum.market.data_files import CandleSeries, timeframe_ms
from quorum.market.indicators import IndicatorParams
from quorum.market.live_rest import CLOSE_MARGIN_MS, backfill_pages, fetch_extras, fetch_range, resync
from quorum.market.ratelimit import WEIGHTS, WeightBudget
from quorum.market.snapshot import SnapshotBuilder, build_snapshots
from quorum.market.universe import MarketInfo, select_universe

log = structlog.get_logger(__name__)
T = TypeVar("T")
__all__ = ["CLOSE_MARGIN_MS", "HISTORY_LIMIT", "CandleBuffer", "LiveMarketData", "configure_endpoints",
           "make_exchange"]


class LiveMarketData:
    """`MarketData` over Binance USDⓈ-M (see module doc). `clock` needs `now_ms()`."""

    streams_any_symbol = True

    def __init__(
        self,
        settings: Settings,
        *,
        exchange: Any | None = None,
        clock: Any | None = None,
        budget: WeightBudget | None = None,
        use_websocket: bool = True,
        ws_grace_s: float = 2.0,
        reconnect_delay_s: float = 1.0,
        open_interest_max_symbols: int = 100,
        universe_ttl_s: float = 3600.0,
        history_pages: int = 2,
        monitor_timeframe: str | None = None,
        retry: Backoff | None = None,
    ) -> None:
        self.settings = settings
        self.exchange = exchange if exchange is not None else market_exchange(settings)
        self.clock = clock
        self.budget = budget or WeightBudget(settings.weight_budget_share)
        self.retry = retry or Backoff()  # transient REST failures; sleeps through the budget's clock
        self.use_websocket = use_websocket
        self.ws_grace_s = ws_grace_s
        self.reconnect_delay_s = reconnect_delay_s
        self.oi_max = open_interest_max_symbols
        self.universe_ttl_s = universe_ttl_s
        self.history_pages = max(1, history_pages)
        self.timeframes = tuple(settings.timeframes)
        self.execution_timeframe = settings.execution_timeframe
        # monitor_timeframe: the bars open positions are watched on (1m), streamed too
        self.monitor_timeframe = monitor_timeframe or self.execution_timeframe
        self.stream_timeframes = tuple(sorted({*self.timeframes, self.execution_timeframe, self.monitor_timeframe},
                                              key=timeframe_ms))
        self.symbols: list[str] = []
        self._started = False
        self.buffers: dict[tuple[str, str], CandleBuffer] = {}
        self._unified: dict[str, str] = {}
        self._ws_tasks: list[asyncio.Task[None]] = []
        self.ws_down: dict[str, bool] = {}
        self._updated = asyncio.Event()
        self._extras: tuple[int, dict[str, dict[str, Any]]] | None = None
        self._universe: tuple[float, list[str]] | None = None
        self.stats = {"ws_reconnects": 0, "rest_fallbacks": 0, "resyncs": 0, "ws_candles": 0,
                      "last_cycle_weight": 0}

    # --- plumbing -------------------------------------------------------------------------
    def now_ms(self) -> int:
        return int(self.clock.now_ms()) if self.clock is not None else int(time.time() * 1000)

    async def _rest(self, weight: int, call: Callable[[], Awaitable[T]], attempts: int | None = None) -> T:
        """One REST read within the weight budget: 429/418 wait Retry-After, transient failures
        (5xx, timeouts, resets, -1001/-1007) back off (`self.retry`); both are retried, then
        `MarketDataUnavailable` names the host, the call and the reason."""
        return await budgeted_call(self.exchange, self.budget, weight, call, self.retry, attempts=attempts)

    @property
    def rest_host(self) -> str:
        """host[:port] of the REST endpoint (for one-line errors; never a query string)."""
        from urllib.parse import urlsplit

        url = str((getattr(self.exchange, "urls", {}) or {}).get("api", {}).get("fapiPublic", ""))
        return urlsplit(url).netloc or url

    def unified(self, symbol: str) -> str:
        return self._unified[symbol]

    async def _load_markets(self) -> None:
        if not self._unified:
            await self._rest(WEIGHTS["exchangeInfo"], self.exchange.load_markets)
            for m in self.exchange.markets.values():
                if m.get("swap") and m.get("linear"):
                    self._unified[m["id"]] = m["symbol"]

    # --- universe -------------------------------------------------------------------------
    async def universe(self) -> list[str]:
        """Top-N USDT perpetuals by 24 h quote volume (cached `universe_ttl_s`); SYMBOLS when set."""
        s = self.settings
        if self._universe and time.monotonic() - self._universe[0] < self.universe_ttl_s:
            return list(self._universe[1])
        await self._load_markets()
        infos: list[MarketInfo] = []
        tickers: dict[str, Any] = {}
        if not s.symbols:
            tickers = await self._rest(WEIGHTS["ticker24hr_all"], self.exchange.fetch_tickers)
        for mid, uni in self._unified.items():
            m = self.exchange.markets[uni]
            qv = (tickers.get(uni) or {}).get("quoteVolume") or 0.0
            infos.append(MarketInfo(mid, str(m.get("quote")), str(m.get("settle")), bool(m.get("swap")),
                                    m.get("active") is not False, float(qv)))
        chosen = select_universe(infos, s.universe_size, s.min_quote_volume_usd, s.blocked_symbols, s.symbols)
        self._universe = (time.monotonic(), chosen)
        return chosen

    # --- start / backfill -----------------------------------------------------------------
    async def start(self, symbols: Sequence[str] | None = None) -> None:
        """Backfill every stream over REST, then open the websocket streams."""
        self._started = True
        await self._load_markets()
        await self._set_symbols(list(symbols) if symbols is not None else await self.universe())

    async def ensure(self, symbols: Sequence[str] | None = None) -> list[str]:
        """Start on first use (universe when `symbols` is empty/None) and add any requested symbol
        not streamed yet; returns the symbols asked for (or all streamed ones)."""
        wanted = [s for s in (symbols or ()) if s]
        if not self._started:
            self._started = True
            await self.start(wanted or None)
        missing = [s for s in wanted if s not in self.symbols]
        if missing:
            await self.update_symbols([*self.symbols, *missing])
        return wanted or list(self.symbols)

    async def update_symbols(self, symbols: Sequence[str]) -> None:
        """Switch to a new universe: backfill the new symbols and resubscribe the streams."""
        if list(symbols) != self.symbols:
            await self._stop_ws()
            await self._set_symbols(list(symbols))

    async def _set_symbols(self, symbols: list[str]) -> None:
        unknown = [s for s in symbols if s not in self._unified]
        if unknown:
            from quorum.config import ConfigError

            raise ConfigError(f"SYMBOLS: not USDⓈ-M perpetuals on {self.rest_host}: {', '.join(unknown)}")
        self.symbols = symbols
        self._extras = None
        now = self.now_ms()
        for sym in self.symbols:
            for tf in self.stream_timeframes:
                if (sym, tf) not in self.buffers:
                    await self._backfill(sym, tf, now)
        if self.use_websocket:
            for tf in self.stream_timeframes:
                self.ws_down[tf] = False
                self._ws_tasks.append(asyncio.create_task(self._ws_loop(tf), name=f"klines-{tf}"))

    async def _backfill(self, sym: str, tf: str, now: int) -> None:
        """`history_pages` pages of 499 bars (weight 2 each): 998 bars by default, so EMA200's
        seed has decayed to ~0.04 % by the newest bar (live ≈ backtest values) — more where an
        indicator needs more bars to be defined at all (the 24 h change on 1m bars: 3 pages), since
        the engine decides only on a snapshot whose every indicator is defined (warm-up)."""
        # the monitor stream only needs recent bars: a longer gap is fetched by range (`bars_after`)
        extra = tf == self.monitor_timeframe and tf != self.execution_timeframe and tf not in self.timeframes
        needed = IndicatorParams().history_bars(timeframe_ms(tf)) + 2  # + the forming bar, a margin
        pages = 1 if extra else max(self.history_pages, -(-needed // HISTORY_LIMIT))
        buf = self.buffers.setdefault((sym, tf), CandleBuffer(sym, tf, maxlen=HISTORY_LIMIT * pages))
        await backfill_pages(self._rest, self.exchange, self.unified(sym), buf, pages, now)

    async def _resync(self, sym: str, tf: str, now: int) -> int:
        """Fetch the bars missing since the buffer's last closed bar (small limit = weight 1)."""
        return await resync(self._rest, self.exchange, self.unified(sym), self.buffers[(sym, tf)], now)

    # --- websocket ------------------------------------------------------------------------
    def _ingest_ws(self, tf: str, now: int) -> None:
        cache_all = getattr(self.exchange, "ohlcvs", {}) or {}
        for sym in self.symbols:
            cache = (cache_all.get(self.unified(sym)) or {}).get(tf)
            if not cache:
                continue
            candles = list(cache)
            newest = max(int(c[0]) for c in candles)
            buf = self.buffers[(sym, tf)]
            for c in candles:
                # a candle older than the stream's newest got its final update: it wins over
                # whatever a REST call stored for that bar
                if int(c[0]) < newest and buf.add(c, now):
                    self.stats["ws_candles"] += 1

    def _forget_ws_cache(self, tf: str) -> None:
        cache_all = getattr(self.exchange, "ohlcvs", {}) or {}
        for sym in self.symbols:
            per = cache_all.get(self.unified(sym))
            if per and tf in per:
                del per[tf]

    async def _ws_loop(self, tf: str) -> None:
        pairs = [[self.unified(s), tf] for s in self.symbols]
        delay = self.reconnect_delay_s
        while True:
            try:
                await self.exchange.watch_ohlcv_for_symbols(pairs)
                now = self.now_ms()
                if self.ws_down.get(tf):
                    self.ws_down[tf] = False
                    self.stats["resyncs"] += 1
                    for sym in self.symbols:
                        await self._resync(sym, tf, now)
                    log.info("kline_stream_resynced", timeframe=tf)
                delay = self.reconnect_delay_s
                self._ingest_ws(tf, now)
                self._updated.set()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the stream must survive anything; REST covers meanwhile
                if not self.ws_down.get(tf):
                    self.stats["ws_reconnects"] += 1
                    expected = isinstance(exc, ccxt.NetworkError | ccxt.ExchangeError)
                    log.warning("kline_stream_dropped", timeframe=tf, error=f"{type(exc).__name__}: {exc}"[:200],
                                unexpected=not expected)
                self.ws_down[tf] = True
                self._forget_ws_cache(tf)
                self._updated.set()
                await asyncio.sleep(delay)
                delay = min(delay * 2, 30.0)

    # --- per cycle ------------------------------------------------------------------------
    def _missing(self, time_ms: int, symbols: Sequence[str]) -> list[tuple[str, str]]:
        out = []
        for sym in symbols:
            for tf in self.stream_timeframes:
                buf = self.buffers[(sym, tf)]
                expected = time_ms // buf.tf_ms * buf.tf_ms - buf.tf_ms
                if buf.last_open is None or buf.last_open < expected:
                    out.append((sym, tf))
        return out

    async def refresh(self, time_ms: int, symbols: Sequence[str] | None = None) -> None:
        """Make every stream hold all bars closed by `time_ms` (websocket first, REST fallback)."""
        names = list(symbols) if symbols is not None else self.symbols
        # the grace is market time: under an accelerated (test) clock it shrinks with the speed
        speed = float(getattr(self.clock, "speed", None) or 1.0)
        deadline = time.monotonic() + self.ws_grace_s / speed
        missing = self._missing(time_ms, names)
        while missing and self.use_websocket and time.monotonic() < deadline:
            if all(self.ws_down.get(tf, True) for _, tf in missing):
                break
            self._updated.clear()
            try:
                await asyncio.wait_for(self._updated.wait(), timeout=max(0.0, deadline - time.monotonic()))
            except TimeoutError:
                break
            missing = self._missing(time_ms, names)
        for sym, tf in missing:
            self.stats["rest_fallbacks"] += 1
            await self._resync(sym, tf, self.now_ms())

    async def extras(self, time_ms: int, symbols: Sequence[str]) -> dict[str, dict[str, Any]]:
        """Funding rate + next funding time, book imbalance and open interest, once per cycle."""
        if self._extras is not None and self._extras[0] == time_ms:
            return self._extras[1]
        out = await fetch_extras(self._rest, self.exchange, symbols, self.unified, self.oi_max)
        self._extras = (time_ms, out)
        return out

    def builder(self, symbol: str) -> SnapshotBuilder:
        """Indicators over the buffered window (≤ 499 closed bars per timeframe)."""
        series = {tf: self.buffers[(symbol, tf)].series() for tf in self.timeframes}
        base = self.buffers[(symbol, self.execution_timeframe)].series()
        return SnapshotBuilder(symbol, series, self.timeframes, base=base, resample_base=False)

    async def snapshots(self, time_ms: int, symbols: Sequence[str] | None = None) -> dict[str, Snapshot]:
        if time_ms > self.now_ms():
            raise ValueError(f"snapshot time {time_ms} is in the future")
        names = [s for s in await self.ensure(symbols) if (s, self.timeframes[0]) in self.buffers]
        spent = self.budget.spent_total
        await self.refresh(time_ms, names)
        extras = await self.extras(time_ms, names)
        snaps = build_snapshots([self.builder(s) for s in names], time_ms, extras)
        self.stats["last_cycle_weight"] = self.budget.spent_total - spent
        return snaps

    async def closed_bars(self, symbol: str, timeframe: str, start_ms: int, end_ms: int | None = None) -> CandleSeries:
        await self.ensure([symbol])
        buf = self.buffers.get((symbol, timeframe))
        if buf is None:
            raise KeyError(f"{symbol} {timeframe} is not streamed")
        now = self.now_ms()
        await self.refresh(now, [symbol])
        return buf.series().truncate(now).between(start_ms, end_ms if end_ms is not None else now)

    async def last_price(self, symbol: str) -> float | None:
        """Close of the last closed bar of the finest stream (the monitor's 1m on live paper)."""
        await self.ensure([symbol])
        buf = self.buffers.get((symbol, self.stream_timeframes[0]))
        if not buf or not buf.rows:
            return None
        return buf.rows[max(buf.rows)][3]

    async def bars_after(self, symbol: str, timeframe: str, after_ms: int, until_ms: int) -> CandleSeries:
        """Every closed bar whose CLOSE lies in (after_ms, until_ms], oldest first: from the stream's
        buffer when it reaches back far enough, else fetched by range over REST (a restart or an
        outage longer than the buffer) — what the paper venue replays to catch up."""
        await self.ensure([symbol])
        buf = self.buffers[(symbol, timeframe)]
        tf = buf.tf_ms
        first_open = after_ms  # the first bar that closes after `after_ms` opens at it (on the grid)
        await self.refresh(min(until_ms, self.now_ms()), [symbol])
        if buf.rows and min(buf.rows) <= first_open:
            return buf.series().between(first_open, until_ms - tf + 1)
        return await fetch_range(self._rest, self.exchange, self.unified(symbol), symbol, timeframe, first_open,
                                 until_ms)

    async def _stop_ws(self) -> None:
        for t in self._ws_tasks:
            t.cancel()
        for t in self._ws_tasks:
            try:
                await t
            except (asyncio.CancelledError, Exception):
                pass
        self._ws_tasks.clear()

    async def close(self) -> None:
        await self._stop_ws()
        await self.exchange.close()
