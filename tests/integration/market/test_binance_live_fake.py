"""The live-style fake Binance (tests/fakes/binance_live.py) on the real data, through the REAL
ccxt / ccxt.pro binanceusdm client: timeframes agree, the open bar never shows the future, funding
is the file's, websocket bars arrive in order and only after their close, each fault looks to ccxt
as Binance's does, and the standalone process starts, obeys its control API and stops cleanly."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sys
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import aiohttp
import ccxt
import numpy as np
import psutil
import pytest

from quorum.clock import ScaledClock
from quorum.market.candles import make_exchange
from quorum.market.data_files import CandleSeries, load_candles, load_funding, resample
from tests.fakes.binance_live import (
    DEFAULT_SYMBOLS,
    LiveBinanceMarket,
    one_minute_path,
    shift_to_now,
)

ROOT = Path(__file__).resolve().parents[3]
M = 60_000
TF = {"1m": M, "5m": 5 * M, "15m": 15 * M, "1h": 60 * M, "4h": 240 * M}
CASCADE = 1_760_130_900_000  # 2025-10-10 21:15 UTC: BTC 5m o 112137.6 h 112539.5 l 102193.6 c 103441.3
BTC, ETH = "BTC/USDT:USDT", "ETH/USDT:USDT"


class HandClock:
    """A clock whose now the test sets (the fake reads it on every request)."""

    def __init__(self, t: int) -> None:
        self.t = t

    def now_ms(self) -> int:
        return self.t


def expected_points(o: float, h: float, lo: float, c: float) -> list[float]:
    """The documented path, written again here: open → nearer extreme (1m) → farther (3m) → close (5m)."""
    if abs(o - lo) <= abs(h - o):
        near, far = lo, h
    else:
        near, far = h, lo
    return [o, near, (near + far) / 2, far, (far + c) / 2, c]


def expected_partial(bar: tuple[float, ...], elapsed_ms: int, from_minute: int = 0) -> tuple[float, float, float]:
    """(high, low, close) of the path from `from_minute` to `elapsed_ms` (test's own interpolation)."""
    pts = expected_points(*bar[:4])
    x = elapsed_ms / M
    now_px = float(np.interp(x, range(6), pts))
    seen = [p for i, p in enumerate(pts) if from_minute <= i <= x] + [now_px]
    return max(seen), min(seen), now_px


def file_bar(s: CandleSeries, t: int) -> tuple[float, ...]:
    i = int(np.searchsorted(s.open_ms, t))
    assert int(s.open_ms[i]) == t
    return tuple(float(a[i]) for a in (s.open, s.high, s.low, s.close, s.volume))


def series_of(rows: list[list[Any]], sym: str, tf: str) -> CandleSeries:
    a = np.array(rows, dtype=np.float64).reshape(len(rows), 6)
    return CandleSeries(sym, tf, a[:, 0].astype(np.int64), a[:, 1], a[:, 2], a[:, 3], a[:, 4], a[:, 5])


@pytest.fixture(scope="module")
def btc5(shared_data: Path) -> CandleSeries:
    return load_candles(shared_data / "BTCUSDT-futures-5m.csv.gz")


@contextlib.asynccontextmanager
async def serving(shared_data: Path, clock: Any, symbols: tuple[str, ...] = ("BTCUSDT", "ETHUSDT"),
                  **kw: Any) -> AsyncIterator[tuple[LiveBinanceMarket, Any]]:
    fake = LiveBinanceMarket(clock, **kw).load(shared_data, symbols)
    await fake.start()
    ex = make_exchange(fake.rest_root, fake.ws_root, enableRateLimit=False)
    try:
        yield fake, ex
    finally:
        await ex.close()
        await fake.stop()


async def until(cond: Callable[[], bool], guard_s: float = 30.0) -> None:
    end = time.monotonic() + guard_s
    while not cond():
        if time.monotonic() > end:
            raise AssertionError("condition not reached")
        await asyncio.sleep(0.01)


# --- the 1-minute path ------------------------------------------------------------------------------
def test_one_minute_path_follows_the_documented_points() -> None:
    # nearer extreme is the low: o=10, h=14, l=9, c=12 → 10, 9, 11.5, 14, 13, 12
    bars = one_minute_path(10.0, 14.0, 9.0, 12.0, 5.0)
    assert [b[0] for b in bars] + [bars[-1][3]] == [10.0, 9.0, 11.5, 14.0, 13.0, 12.0]
    assert [(b[1], b[2]) for b in bars] == [(10.0, 9.0), (11.5, 9.0), (14.0, 11.5), (14.0, 13.0), (13.0, 12.0)]
    # nearer extreme is the high (|o-l| > |h-o|), and a tie goes to the low
    assert [b[3] for b in one_minute_path(10.0, 11.0, 6.0, 7.0, 0.0)] == [11.0, 8.5, 6.0, 6.5, 7.0]
    assert one_minute_path(10.0, 12.0, 8.0, 11.0, 1.0)[0][3] == 8.0
    assert one_minute_path(5.0, 5.0, 5.0, 5.0, 0.0) == [(5.0, 5.0, 5.0, 5.0, 0.0)] * 5


def test_one_minute_bars_aggregate_exactly_to_the_real_5m_bars(shared_data: Path) -> None:
    zero_range = near_low = near_high = 0
    for sym in DEFAULT_SYMBOLS:
        five = load_candles(shared_data / f"{sym}-futures-5m.csv.gz")
        rows = [one_minute_path(*b) for b in zip(five.open.tolist(), five.high.tolist(), five.low.tolist(),
                                                  five.close.tolist(), five.volume.tolist(), strict=True)]
        arr = np.array(rows, dtype=np.float64).reshape(-1, 5)
        ts = (five.open_ms[:, None] + np.arange(5) * M).reshape(-1)
        one = CandleSeries(sym, "1m", ts, arr[:, 0], arr[:, 1], arr[:, 2], arr[:, 3], arr[:, 4])
        back = resample(one, "5m")
        for name in ("open_ms", "open", "high", "low", "close", "volume"):
            assert np.array_equal(getattr(back, name), getattr(five, name)), (sym, name)
        for b, v in zip(rows, five.volume.tolist(), strict=True):  # a plain in-order sum gives v back exactly
            assert sum(x[4] for x in b) == v
        zero_range += int((five.high == five.low).sum())
        nearer_low = np.abs(five.open - five.low) <= np.abs(five.high - five.open)
        near_low += int(nearer_low.sum())
        near_high += int((~nearer_low).sum())
    assert zero_range > 0 and near_low > 0 and near_high > 0


# --- REST through ccxt ------------------------------------------------------------------------------
async def test_every_timeframe_agrees_and_partial_bars_aggregate(shared_data: Path, btc5: CandleSeries) -> None:
    now = CASCADE + 2 * M + 10_000  # 21:17:10, inside the cascade bar, a 1h and a 4h bar
    async with serving(shared_data, HandClock(now)) as (_fake, ex):
        rows = {tf: await ex.fetch_ohlcv(BTC, tf, limit=1000) for tf in TF}  # ccxt caps at 1000
    for tf, r in rows.items():
        assert len(r) == 1000 and r[-1][0] == now // TF[tf] * TF[tf], tf  # the open bar is the last one
        assert np.all(np.diff([x[0] for x in r]) == TF[tf]), tf
    one, five = series_of(rows["1m"][:-1], "BTCUSDT", "1m"), series_of(rows["5m"][:-1], "BTCUSDT", "5m")
    for r in rows["5m"][:-1]:  # closed 5m bars are the file's
        assert tuple(r[1:]) == file_bar(btc5, r[0])
    back = resample(one, "5m")
    common = np.intersect1d(back.open_ms, five.open_ms)
    assert len(common) >= 190
    for name in ("open", "high", "low", "close", "volume"):
        a = getattr(back, name)[np.isin(back.open_ms, common)]
        b = getattr(five, name)[np.isin(five.open_ms, common)]
        assert np.array_equal(a, b), name
    for tf in ("15m", "1h", "4h"):
        up, served = resample(five, tf), series_of(rows[tf][:-1], "BTCUSDT", tf)
        common = np.intersect1d(up.open_ms, served.open_ms)
        assert len(common) >= 5, tf
        for name in ("open", "high", "low", "close"):
            assert np.array_equal(getattr(up, name)[np.isin(up.open_ms, common)],
                                  getattr(served, name)[np.isin(served.open_ms, common)]), (tf, name)
    # the open bar of each timeframe is the aggregate of the lower timeframe's bars inside it
    for tf, lower in (("5m", "1m"), ("15m", "5m"), ("1h", "5m"), ("4h", "5m")):
        part = rows[tf][-1]
        inside = [r for r in rows[lower] if r[0] >= part[0]]
        assert part[1] == inside[0][1] and part[4] == inside[-1][4], tf
        assert part[2] == max(r[2] for r in inside) and part[3] == min(r[3] for r in inside), tf
        assert part[5] == pytest.approx(sum(r[5] for r in inside), rel=1e-9), tf


@pytest.mark.parametrize("elapsed_s", [0, 30, 60, 130, 179, 181, 240, 299])
async def test_the_open_bar_never_shows_data_from_after_now(shared_data: Path, btc5: CandleSeries,
                                                            elapsed_s: int) -> None:
    now = CASCADE + elapsed_s * 1000
    bar = file_bar(btc5, CASCADE)
    async with serving(shared_data, HandClock(now)) as (_fake, ex):
        r5 = await ex.fetch_ohlcv(BTC, "5m", limit=3)
        r1 = await ex.fetch_ohlcv(BTC, "1m", limit=3)
        r1h = await ex.fetch_ohlcv(BTC, "1h", limit=2)
        server_time = (await ex.fapiPublicGetTime())["serverTime"]
        last = (await ex.fetch_ticker(BTC))["last"]
        mark = (await ex.fetch_funding_rate(BTC))["markPrice"]
    assert int(server_time) == now
    assert all(r[0] <= now for r in r5 + r1 + r1h)
    hi, lo, px = expected_partial(bar, elapsed_s * 1000)
    assert r5[-1][0] == CASCADE and r5[-1][1] == bar[0]
    assert r5[-1][2] == pytest.approx(hi, rel=1e-12) and r5[-1][3] == pytest.approx(lo, rel=1e-12)
    assert r5[-1][4] == pytest.approx(px, rel=1e-12) and last == r5[-1][4] == mark == r1[-1][4] == r1h[-1][4]
    assert r5[-1][5] == pytest.approx(bar[4] * elapsed_s / 300, rel=1e-9)
    if elapsed_s < 180:  # the low (the farther extreme, due at 3m) has not happened yet
        assert r5[-1][3] > bar[2] and r1h[-1][3] > bar[2]
    else:
        assert r5[-1][3] == bar[2]
    minute = elapsed_s // 60
    h1, l1, _ = expected_partial(bar, elapsed_s * 1000, from_minute=minute)
    assert r1[-1][0] == CASCADE + minute * M
    assert r1[-1][2] == pytest.approx(h1, rel=1e-12) and r1[-1][3] == pytest.approx(l1, rel=1e-12)


async def test_funding_history_is_the_files_up_to_now_and_premium_shows_the_next(shared_data: Path,
                                                                                  btc5: CandleSeries) -> None:
    funding = load_funding(shared_data / "BTCUSDT-funding.csv.gz")
    t_event = 1_760_112_000_000  # 2025-10-10 16:00 UTC, a funding instant
    i = int(np.searchsorted(funding.time_ms, t_event))
    assert int(funding.time_ms[i]) == t_event
    clock = HandClock(t_event + 3 * 3_600_000)
    async with serving(shared_data, clock) as (_fake, ex):
        since = t_event - 30 * 86_400_000
        hist = await ex.fetch_funding_rate_history(BTC, since=since, limit=1000)
        prem = await ex.fetch_funding_rate(BTC)
        clock.t = t_event  # exactly at the event: it is in the history, the premium shows the next one
        at = await ex.fetch_funding_rate_history(BTC, since=t_event - 86_400_000, limit=1000)
        prem_at = await ex.fetch_funding_rate(BTC)
        clock.t = t_event - 1
        before = await ex.fetch_funding_rate_history(BTC, since=t_event - 86_400_000, limit=1000)
    mask = (funding.time_ms >= since) & (funding.time_ms <= t_event)
    assert [h["timestamp"] for h in hist] == funding.time_ms[mask].tolist()
    assert [h["fundingRate"] for h in hist] == funding.rate[mask].tolist()
    for h in hist[-5:]:  # markPrice = the 5m close at the funding instant
        assert float(h["info"]["markPrice"]) == file_bar(btc5, h["timestamp"] - 5 * M)[3]
    assert prem["fundingTimestamp"] == int(funding.time_ms[i + 1])
    assert prem["fundingRate"] == float(funding.rate[i + 1])
    assert at[-1]["timestamp"] == t_event and prem_at["fundingTimestamp"] == int(funding.time_ms[i + 1])
    assert before[-1]["timestamp"] == int(funding.time_ms[i - 1])


async def test_a_shift_moves_every_served_timestamp(shared_data: Path, btc5: CandleSeries) -> None:
    shift = 300 * 86_400_000  # 300 days: a multiple of 8 h
    data_now = CASCADE + 2 * M + 10_000
    async with serving(shared_data, HandClock(data_now + shift), shift_ms=shift) as (_fake, ex):
        r5 = await ex.fetch_ohlcv(BTC, "5m", limit=3)
        r4h = await ex.fetch_ohlcv(BTC, "4h", limit=3)
        hist = await ex.fetch_funding_rate_history(BTC, since=data_now + shift - 86_400_000)
        prem = await ex.fetch_funding_rate(BTC)
        server_time = int((await ex.fapiPublicGetTime())["serverTime"])
    async with serving(shared_data, HandClock(data_now)) as (_, plain):
        p5 = await plain.fetch_ohlcv(BTC, "5m", limit=3)
        p4h = await plain.fetch_ohlcv(BTC, "4h", limit=3)
        phist = await plain.fetch_funding_rate_history(BTC, since=data_now - 86_400_000)
        pprem = await plain.fetch_funding_rate(BTC)
    assert server_time == data_now + shift
    assert [[r[0] - shift, *r[1:]] for r in r5] == p5 and [[r[0] - shift, *r[1:]] for r in r4h] == p4h
    assert [(h["timestamp"] - shift, h["fundingRate"]) for h in hist] == [(h["timestamp"], h["fundingRate"])
                                                                          for h in phist]
    assert prem["fundingTimestamp"] - shift == pprem["fundingTimestamp"] and prem["markPrice"] == pprem["markPrice"]
    assert p5[0][1:5] == list(file_bar(btc5, p5[0][0])[:4])
    with pytest.raises(ValueError, match="multiple of 4 h"):
        LiveBinanceMarket(HandClock(0), shift_ms=3_600_000)
    start = CASCADE
    for now in (start + 1, start + 8 * 3_600_000 * 1000 + 5, start + 123_456_789_012):
        s = shift_to_now(start, now)
        assert s % (8 * 3_600_000) == 0 and start <= now - s < start + 8 * 3_600_000


def test_the_fakes_now_cannot_be_set_by_hand() -> None:
    fake = LiveBinanceMarket(HandClock(123))
    assert fake.now_ms == 123
    with pytest.raises(AttributeError):
        fake.now_ms = 5


# --- websocket --------------------------------------------------------------------------------------
async def test_websocket_bars_arrive_in_order_and_only_after_their_close(shared_data: Path,
                                                                         btc5: CandleSeries) -> None:
    clock = ScaledClock(CASCADE - 30 * M, time.time(), 600.0)  # 1 wall second = 10 simulated minutes
    streams = ["btcusdt@kline_1m", "btcusdt@kline_5m", "ethusdt@kline_1m", "btcusdt@kline_15m"]
    got: list[tuple[dict[str, Any], int]] = []
    async with serving(shared_data, clock) as (fake, _), aiohttp.ClientSession() as sess, \
            sess.ws_connect(f"ws://127.0.0.1:{fake.port}/market/ws/0") as ws:
        await ws.send_str(json.dumps({"method": "SUBSCRIBE", "params": streams, "id": 1}))
        finals = lambda tf: sum(1 for m, _ in got if m["k"]["s"] == "BTCUSDT" and m["k"]["i"] == tf  # noqa: E731
                                and m["k"]["x"])
        while finals("1m") < 20 or finals("5m") < 4 or finals("15m") < 1:
            msg = await asyncio.wait_for(ws.receive(), 30)
            data = json.loads(msg.data)
            if data.get("e") == "kline":
                got.append((data, clock.now_ms()))
    closes = []
    last_final: dict[tuple[str, str], int] = {}
    for m, received_at in got:
        k = m["k"]
        close = k["T"] + 1
        assert k["t"] <= m["E"] and k["t"] <= received_at
        if not k["x"]:
            assert m["E"] < close  # a partial update is only ever of a bar still open
            continue
        assert m["E"] >= close and received_at >= close  # never before its close
        key = (k["s"], k["i"])
        if key in last_final:
            assert k["t"] == last_final[key] + TF[k["i"]], key  # in order, none skipped
        last_final[key] = k["t"]
        closes.append(close)
        o, h, lo, c = (float(k[x]) for x in "ohlc")
        if k["s"] == "BTCUSDT" and k["i"] == "5m":
            assert (o, h, lo, c) == file_bar(btc5, k["t"])[:4]
        if k["s"] == "BTCUSDT" and k["i"] == "1m":
            t5 = k["t"] // (5 * M) * (5 * M)
            pts = expected_points(*file_bar(btc5, t5)[:4])
            j = (k["t"] - t5) // M
            assert (o, c, h, lo) == (pts[j], pts[j + 1], max(pts[j:j + 2]), min(pts[j:j + 2]))
    assert closes == sorted(closes)  # across streams too, in time order
    assert fake.pump_errors == []


async def test_ccxt_pro_watches_1m_and_5m_under_a_fast_clock(shared_data: Path, btc5: CandleSeries) -> None:
    clock = ScaledClock(CASCADE - 20 * M, time.time(), 600.0)
    seen: dict[str, dict[int, list[float]]] = {"1m": {}, "5m": {}}
    order: dict[str, list[int]] = {"1m": [], "5m": []}
    async with serving(shared_data, clock) as (_fake, ex):
        await ex.load_markets()
        while len(seen["1m"]) < 15 or len(seen["5m"]) < 4:
            res = await asyncio.wait_for(ex.watch_ohlcv_for_symbols([[BTC, "1m"], [BTC, "5m"]]), 30)
            for _sym, by_tf in res.items():
                for tf, candles in by_tf.items():
                    for cndl in candles:
                        assert cndl[0] <= clock.now_ms()
                        if not order[tf] or order[tf][-1] != cndl[0]:
                            order[tf].append(cndl[0])
                        seen[tf][cndl[0]] = cndl[1:6]
    for tf in ("1m", "5m"):
        assert order[tf] == sorted(set(order[tf])), tf  # each bar appears once, in time order
    for t in order["5m"][:-1]:  # every bar but the still-open one ends with the file's values
        assert tuple(seen["5m"][t][:4]) == file_bar(btc5, t)[:4]
    for t in order["1m"][:-1]:
        t5 = t // (5 * M) * (5 * M)
        pts = expected_points(*file_bar(btc5, t5)[:4])
        assert seen["1m"][t][3] == pts[(t - t5) // M + 1]


# --- faults -----------------------------------------------------------------------------------------
async def test_5xx_bursts_look_like_binance_to_ccxt(shared_data: Path) -> None:
    async with serving(shared_data, HandClock(CASCADE)) as (fake, ex):
        await ex.load_markets()
        await fake.rest_errors(status=502, count=2)
        for _ in range(2):
            with pytest.raises(ccxt.ExchangeNotAvailable):
                await ex.fetch_ohlcv(BTC, "5m", limit=5)
        assert len(await ex.fetch_ohlcv(BTC, "5m", limit=5)) == 5
        await fake.rest_errors(status=503, count=1, code=-1001, msg="Internal error; unable to process your "
                               "request. Please try again.", paths=["premiumIndex"])
        assert len(await ex.fetch_ohlcv(BTC, "5m", limit=5)) == 5  # another endpoint is not hit
        with pytest.raises(ccxt.OperationFailed) as err:  # what ccxt makes of Binance's -1001 JSON body
            await ex.fetch_funding_rate(BTC)
        assert not isinstance(err.value, ccxt.ExchangeError) and "-1001" in str(err.value)
        stats = fake.stats()
    assert stats["requests"]["klines"] == {"502": 2, "200": 2}
    assert stats["requests"]["premiumIndex"] == {"503": 1}
    assert [f["kind"] for f in stats["faults"]] == ["rest_errors", "rest_errors"]


async def test_late_answers_are_request_timeouts(shared_data: Path) -> None:
    async with serving(shared_data, HandClock(CASCADE)) as (fake, ex):
        await ex.load_markets()
        ex.timeout = 300  # ms
        await fake.rest_timeouts(count=1, delay_s=1.5)
        with pytest.raises(ccxt.RequestTimeout):
            await ex.fetch_ohlcv(BTC, "1m", limit=5)
        assert len(await ex.fetch_ohlcv(BTC, "1m", limit=5)) == 5
        await until(lambda: sum(fake.stats()["requests"]["klines"].values()) == 2)  # the late answer was sent
    assert fake.faults[0]["kind"] == "rest_timeouts" and fake.faults[0]["delay_s"] == 1.5


async def test_429_then_418_with_retry_after_when_the_client_does_not_wait(shared_data: Path) -> None:
    async with serving(shared_data, HandClock(CASCADE)) as (fake, ex):
        await ex.load_markets()
        await fake.rate_limit(retry_after_s=1, ban_s=2)
        with pytest.raises(ccxt.DDoSProtection, match="429"):
            await ex.fetch_ohlcv(BTC, "1m", limit=5)
        assert ex.last_response_headers["Retry-After"] == "1"
        with pytest.raises(ccxt.DDoSProtection, match="418"):  # called again before Retry-After: banned
            await ex.fetch_ohlcv(BTC, "1m", limit=5)
        ban = int(ex.last_response_headers["Retry-After"])
        assert ban == 2
        with pytest.raises(ccxt.DDoSProtection, match="418"):
            await ex.fetch_ticker(BTC)
        assert 1 <= int(ex.last_response_headers["Retry-After"]) <= ban
        await asyncio.sleep(ban + 0.1)  # a client that waits out the ban is served again
        assert len(await ex.fetch_ohlcv(BTC, "1m", limit=5)) == 5
        stats = fake.stats()
    assert [f["kind"] for f in stats["faults"]] == ["rate_limit", "rate_limit_ban"]
    assert stats["requests"]["klines"] == {"429": 1, "418": 1, "200": 1} and stats["requests"]["ticker/24hr"] == {
        "418": 1}


async def test_429_alone_when_the_client_waits(shared_data: Path) -> None:
    async with serving(shared_data, HandClock(CASCADE)) as (fake, ex):
        await ex.load_markets()
        await fake.rate_limit(retry_after_s=1)
        with pytest.raises(ccxt.DDoSProtection, match="429"):
            await ex.fetch_ohlcv(BTC, "1m", limit=5)
        await asyncio.sleep(1.1)
        assert len(await ex.fetch_ohlcv(BTC, "1m", limit=5)) == 5
    assert [f["kind"] for f in fake.faults] == ["rate_limit"]


async def test_dropped_websockets_fail_the_watch_and_reconnect(shared_data: Path) -> None:
    clock = ScaledClock(CASCADE, time.time(), 600.0)
    async with serving(shared_data, clock) as (fake, ex):
        await ex.load_markets()
        await asyncio.wait_for(ex.watch_ohlcv_for_symbols([[BTC, "1m"]]), 30)
        pending = asyncio.ensure_future(ex.watch_ohlcv_for_symbols([[BTC, "1m"]]))
        await until(lambda: len(fake.ws_clients) == 1)
        await fake.drop_websockets()
        with pytest.raises(ccxt.NetworkError):
            await asyncio.wait_for(pending, 30)
        assert await asyncio.wait_for(ex.watch_ohlcv_for_symbols([[BTC, "1m"]]), 30)
        assert fake.ws_connects == 2 and fake.faults[0]["kind"] == "drop_websockets"


@pytest.mark.parametrize(("mode", "error"), [("hang", ccxt.RequestTimeout), ("refuse", ccxt.ExchangeNotAvailable)])
async def test_blackhole_hangs_or_refuses_then_recovers(shared_data: Path, mode: str, error: type) -> None:
    async with serving(shared_data, HandClock(CASCADE)) as (fake, ex):
        await ex.load_markets()
        ex.timeout = 300
        await fake.blackhole(1.0, mode=mode)
        with pytest.raises(error):
            await ex.fetch_ohlcv(BTC, "5m", limit=5)
        await asyncio.sleep(1.2)
        ex.timeout = 10_000
        assert len(await ex.fetch_ohlcv(BTC, "5m", limit=5)) == 5
    assert fake.faults[0]["kind"] == "blackhole" and fake.faults[0]["mode"] == mode


# --- the standalone process -------------------------------------------------------------------------
async def test_standalone_process_serves_obeys_control_api_and_stops(shared_data: Path, btc5: CandleSeries) -> None:
    start_iso = "2025-10-10T00:00:00Z"
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "tests.fakes.binance_live", "--port", "0", "--symbols", "BTCUSDT,ETHUSDT",
        "--data", str(shared_data), "--shift-to-now", start_iso, cwd=ROOT,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env={**os.environ, "PYTHONPATH": str(ROOT)})
    try:
        assert proc.stdout is not None and proc.stderr is not None
        ready = json.loads(await asyncio.wait_for(proc.stdout.readline(), 120))
        port, rest, shift = ready["port"], ready["rest_root"], ready["shift_ms"]
        assert rest == f"http://127.0.0.1:{port}" and ready["ws_root"] == f"ws://127.0.0.1:{port}"
        assert shift % (8 * 3_600_000) == 0 and ready["symbols"] == ["BTCUSDT", "ETHUSDT"]
        assert psutil.Process(proc.pid).children(recursive=True) == []
        async with aiohttp.ClientSession() as s:
            server_time = (await (await s.get(f"{rest}/fapi/v1/time")).json())["serverTime"]
            assert 0 <= server_time - shift - 1_760_054_400_000 < 8 * 3_600_000  # START maps to now
            r = await s.post(f"{rest}/_fake/fault", json={"kind": "rest_errors", "count": 2, "status": 500})
            assert r.status == 200 and (await r.json())["fault"]["count"] == 2
            bad = await s.post(f"{rest}/_fake/fault", json={"kind": "meteor"})
            assert bad.status == 400 and "unknown fault kind" in (await bad.json())["error"]
            url = f"{rest}/fapi/v1/klines?symbol=BTCUSDT&interval=5m&limit=3"
            statuses = [(await s.get(url)).status for _ in range(3)]
            assert statuses == [500, 500, 200]
            rows = await (await s.get(url)).json()
            t = rows[0][0]
            assert [float(x) for x in rows[0][1:5]] == list(file_bar(btc5, t - shift)[:4])
            stats = await (await s.get(f"{rest}/_fake/stats")).json()
        assert stats["requests"]["klines"] == {"500": 2, "200": 2} and stats["requests"]["time"] == {"200": 1}
        assert [f["kind"] for f in stats["faults"]] == ["rest_errors"] and stats["shift_ms"] == shift
        proc.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(proc.wait(), 60) == 0
        tail = (await proc.stderr.read()).decode().strip().splitlines()
        assert json.loads(tail[-1])["stopped"] is True
        assert not psutil.pid_exists(proc.pid)
        with pytest.raises(aiohttp.ClientConnectionError):
            async with aiohttp.ClientSession() as s:
                await s.get(f"{rest}/fapi/v1/ping")
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


async def test_standalone_process_names_a_missing_file_in_one_line(tmp_path: Path) -> None:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "tests.fakes.binance_live", "--symbols", "BTCUSDT", "--data", str(tmp_path), cwd=ROOT,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env={**os.environ, "PYTHONPATH": str(ROOT)})
    out, err = await asyncio.wait_for(proc.communicate(), 120)
    assert proc.returncode == 2 and out == b""
    lines = err.decode().strip().splitlines()
    assert len(lines) == 1 and "BTCUSDT-futures-5m.csv.gz" in lines[0] and "Traceback" not in lines[0]
