"""LiveMarketData with the real ccxt/ccxt.pro client against the wire-level fake Binance."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import numpy as np
import pytest

from quorum.config import Settings
from quorum.market.data_files import CandleSeries, load_candles, resample
from quorum.market.live import LiveMarketData, make_exchange
from quorum.market.ratelimit import WeightBudget
from tests.fakes.binance_market import FakeBinanceMarket, SymbolInfo
from tests.fakes.clocks import RecordingSleep

SYMS = ("BTCUSDT", "ETHUSDT")
TFS = ("5m", "15m", "1h", "4h")
START = 1_757_462_400_000  # 2025-09-10 00:00 UTC, well inside the 5m files


class FakeClock:
    def __init__(self, fake: FakeBinanceMarket) -> None:
        self.fake = fake

    def now_ms(self) -> int:
        return self.fake.now_ms




@pytest.fixture(scope="module")
def series(shared_data: Path) -> dict[str, dict[str, CandleSeries]]:
    out = {}
    for sym in SYMS:
        five = load_candles(shared_data / f"{sym}-futures-5m.csv.gz")
        out[sym] = {tf: resample(five, tf) for tf in TFS}
    return out


@pytest.fixture
async def fake(series: dict[str, dict[str, CandleSeries]]) -> AsyncIterator[FakeBinanceMarket]:
    f = FakeBinanceMarket(now_ms=START + 2_000)
    f.add_symbol("BTCUSDT", SymbolInfo(quote_volume=9e9, bid_qty=3, ask_qty=1, open_interest=8e4),
                 **series["BTCUSDT"])
    f.add_symbol("ETHUSDT", SymbolInfo(quote_volume=5e9, funding_rate=-0.0002), **series["ETHUSDT"])
    await f.start()
    yield f
    await f.stop()


def _settings(**kw: object) -> Settings:
    return Settings(_env_file=None, timeframes=["15m", "1h", "4h"], execution_timeframe="5m",  # type: ignore[call-arg]
                    **kw)


def _live(fake: FakeBinanceMarket, sleep: RecordingSleep | None = None, **kw: object) -> LiveMarketData:
    ex = make_exchange(fake.rest_root, fake.ws_root, enableRateLimit=False)
    budget = WeightBudget(0.5, now=sleep.now, sleep=sleep) if sleep else None
    return LiveMarketData(_settings(), exchange=ex, clock=FakeClock(fake), budget=budget,
                          reconnect_delay_s=0.05, ws_grace_s=3.0, **kw)  # type: ignore[arg-type]


async def _until(cond: Callable[[], bool], timeout: float = 5.0) -> None:
    end = asyncio.get_running_loop().time() + timeout
    while not cond():
        if asyncio.get_running_loop().time() > end:
            raise AssertionError("condition not reached")
        await asyncio.sleep(0.01)


def _bar(s: CandleSeries, open_ms: int) -> tuple[float, ...]:
    i = int(np.searchsorted(s.open_ms, open_ms))
    assert int(s.open_ms[i]) == open_ms
    return tuple(float(a[i]) for a in (s.open, s.high, s.low, s.close, s.volume))


async def test_backfill_closed_only_and_extras(fake: FakeBinanceMarket, series: dict) -> None:
    live = _live(fake, use_websocket=False)
    try:
        await live.start(list(SYMS))
        klines = fake.paths("klines")
        assert len(klines) == 2 * len(SYMS) * len(TFS)  # two pages of 499 per stream
        assert {r.params["limit"] for r in klines} == {"499"} and {r.weight for r in klines} == {2}
        for sym in SYMS:
            for tf in TFS:
                buf = live.buffers[(sym, tf)]
                tf_ms = buf.tf_ms
                assert buf.last_open == START // tf_ms * tf_ms - tf_ms  # the open bar was dropped
                assert (sym, tf, START // tf_ms * tf_ms) in fake.partial_bars
                assert len(buf.rows) == 997
                assert sorted(buf.rows) == list(range(buf.last_open - 996 * tf_ms, buf.last_open + 1, tf_ms))
                assert buf.rows[buf.last_open] == _bar(series[sym][tf], buf.last_open)
        snaps = await live.snapshots(START)
        btc = snaps["BTCUSDT"]
        assert btc.price == _bar(series["BTCUSDT"]["5m"], START - 300_000)[3]
        v1h = btc.view("1h")
        assert v1h is not None and v1h.close == _bar(series["BTCUSDT"]["1h"], START - 3_600_000)[3]
        assert v1h.ema200 is not None and btc.breadth is not None and btc.breadth.symbols == 2
        assert btc.book_imbalance == pytest.approx(0.5) and btc.open_interest == pytest.approx(8e4)
        assert btc.funding_rate == pytest.approx(0.0001) and snaps["ETHUSDT"].funding_rate == pytest.approx(-0.0002)
        assert btc.next_funding_ms == (START // 28_800_000 + 1) * 28_800_000
        # extras at most once per cycle
        before = len(fake.requests)
        await live.snapshots(START)
        assert len(fake.requests) == before
    finally:
        await live.close()


async def test_websocket_closed_candles_and_steady_weight(fake: FakeBinanceMarket, series: dict) -> None:
    live = _live(fake)
    try:
        await live.start(list(SYMS))
        await _until(lambda: len(fake.subscribed()) == len(SYMS) * len(TFS))
        await live.snapshots(START)
        n_klines = len(fake.paths("klines"))
        t1 = START + 900_000
        await fake.advance_to(t1 + 1_500)
        snaps = await live.snapshots(t1)
        assert len(fake.paths("klines")) == n_klines, "closed bars must come from the websocket"
        assert live.stats["rest_fallbacks"] == 0 and live.stats["ws_candles"] >= len(SYMS) * 3
        btc5 = series["BTCUSDT"]["5m"]
        assert snaps["BTCUSDT"].price == _bar(btc5, t1 - 300_000)[3]
        for k in (START - 300_000, START, START + 300_000, START + 600_000):
            if k >= START:
                assert live.buffers[("BTCUSDT", "5m")].rows[k] == _bar(btc5, k)
        assert t1 not in live.buffers[("BTCUSDT", "5m")].rows  # the still-open bar is never kept
        assert live.buffers[("BTCUSDT", "15m")].last_open == START
        # steady state: per cycle only premiumIndex (10) + bookTicker (5) + one openInterest per symbol
        assert live.stats["last_cycle_weight"] == 10 + 5 + len(SYMS)
    finally:
        await live.close()


async def test_websocket_drop_falls_back_and_resyncs(fake: FakeBinanceMarket, series: dict) -> None:
    live = _live(fake)
    try:
        await live.start(list(SYMS))
        await _until(lambda: len(fake.subscribed()) == len(SYMS) * len(TFS))
        await fake.push_kline("BTCUSDT", "5m", START, closed=False)  # a partial candle in ccxt's cache
        await asyncio.sleep(0.05)
        fake.ws_enabled = False
        await fake.drop_websockets()
        await _until(lambda: all(live.ws_down.values()))
        t1 = START + 1_800_000
        fake.now_ms = t1 + 1_000  # 6 bars closed while the websocket was down
        snaps = await live.snapshots(t1)
        assert live.stats["rest_fallbacks"] > 0 and live.stats["ws_reconnects"] >= 1
        btc5 = series["BTCUSDT"]["5m"]
        rows = live.buffers[("BTCUSDT", "5m")].rows
        for k in range(START, t1, 300_000):
            assert rows[k] == _bar(btc5, k)  # final values, not the partial one seen before the drop
        assert snaps["BTCUSDT"].price == _bar(btc5, t1 - 300_000)[3]
        # the websocket comes back: subscriptions are restored and the stream resyncs
        fake.ws_enabled = True
        await _until(lambda: len(fake.subscribed()) == len(SYMS) * len(TFS), timeout=10)
        t2 = t1 + 900_000
        fake.now_ms = t2 - 300_000 + 1_000  # bars up to t2 - 10 min closed silently (missed)
        await fake.advance_to(t2 + 1_000)
        await _until(lambda: not live.ws_down["5m"] and not live.ws_down["15m"])
        assert live.stats["resyncs"] >= 1
        snaps = await live.snapshots(t2)
        for k in range(START, t2, 300_000):
            assert rows[k] == _bar(btc5, k)
        assert fake.ws_connects >= 2
    finally:
        await live.close()


async def test_429_and_418_back_off_with_retry_after(fake: FakeBinanceMarket) -> None:
    sleep = RecordingSleep()
    live = _live(fake, sleep=sleep, use_websocket=False)
    try:
        fake.fail_next(429, retry_after=7, count=2, paths=("klines",))
        fake.fail_next(418, retry_after=30, count=1, paths=("premiumIndex",))
        await live.start(["BTCUSDT"])
        assert live.budget.backoffs[:2] == [7.0, 7.0]
        assert [r.status for r in fake.paths("klines")][:3] == [429, 429, 200]
        assert any(c == pytest.approx(7.0, abs=0.5) for c in sleep.calls)
        await live.snapshots(START)
        assert live.budget.backoffs[-1] == 30.0
        assert any(c == pytest.approx(30.0, abs=0.5) for c in sleep.calls)
        assert live.budget.server_used is not None and live.budget.server_used >= live.budget.used - 100
    finally:
        await live.close()


async def test_live_universe(fake: FakeBinanceMarket, series: dict) -> None:
    s = series["BTCUSDT"]
    fake.add_symbol("SOLUSDT", SymbolInfo(quote_volume=7e9), **{"5m": s["5m"]})
    fake.add_symbol("DOGEUSDT", SymbolInfo(quote_volume=1e6), **{"5m": s["5m"]})  # below the minimum
    fake.add_symbol("XRPUSDT", SymbolInfo(quote_volume=8e9), **{"5m": s["5m"]})  # blocked
    fake.add_symbol("BTCUSDC", SymbolInfo(quote_volume=9e10, quote="USDC"), **{"5m": s["5m"]})
    ex = make_exchange(fake.rest_root, fake.ws_root, enableRateLimit=False)
    live = LiveMarketData(_settings(universe_size=3, min_quote_volume_usd=5e7, blocked_symbols="XRPUSDT"),
                          exchange=ex, clock=FakeClock(fake))
    try:
        assert await live.universe() == ["BTCUSDT", "SOLUSDT", "ETHUSDT"]
        assert [r.weight for r in fake.paths("ticker/24hr")] == [40]
        await live.universe()  # cached
        assert len(fake.paths("ticker/24hr")) == 1
    finally:
        await live.close()


async def test_update_symbols_backfills_and_resubscribes(fake: FakeBinanceMarket, series: dict) -> None:
    live = _live(fake)
    try:
        await live.start(["BTCUSDT"])
        await _until(lambda: len(fake.subscribed()) == len(TFS))
        await live.update_symbols(["BTCUSDT", "ETHUSDT"])
        await _until(lambda: "ethusdt@kline_15m" in fake.subscribed())
        assert live.buffers[("ETHUSDT", "1h")].last_open == START - 3_600_000
        assert len([r for r in fake.paths("klines") if r.params["symbol"] == "BTCUSDT"]) == 2 * len(TFS)
        t1 = START + 900_000
        await fake.advance_to(t1 + 1_000)
        snaps = await live.snapshots(t1)
        assert set(snaps) == {"BTCUSDT", "ETHUSDT"}
        assert snaps["ETHUSDT"].price == _bar(series["ETHUSDT"]["5m"], t1 - 300_000)[3]
    finally:
        await live.close()


async def test_starts_on_first_use_with_the_universe(fake: FakeBinanceMarket, series: dict) -> None:
    """The engine may call snapshots() without start(): the live universe is streamed then."""
    live = _live(fake, use_websocket=False)
    try:
        snaps = await live.snapshots(START, [])
        assert set(snaps) == {"BTCUSDT", "ETHUSDT"} and live.symbols == ["BTCUSDT", "ETHUSDT"]
        assert await live.last_price("ETHUSDT") == _bar(series["ETHUSDT"]["5m"], START - 300_000)[3]
        bars = await live.closed_bars("BTCUSDT", "5m", START - 3_600_000, START)
        assert len(bars) == 12 and int(bars.open_ms[-1]) == START - 300_000
    finally:
        await live.close()
