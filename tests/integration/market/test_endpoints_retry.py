"""BINANCE_FAPI_URL / BINANCE_FSTREAM_URL reach every market-data client, and transient REST
failures of reads are retried (capped backoff, Retry-After honoured) — through the real ccxt /
ccxt.pro clients against the wire-level fake Binance."""

from __future__ import annotations

import asyncio
import random
import subprocess
import sys
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from quorum.config import load_settings
from quorum.market.binance_rest import Backoff, MarketDataUnavailable
from quorum.market.data_files import CandleSeries, load_candles, resample
from quorum.market.download import download
from quorum.market.live import LiveMarketData, make_exchange
from quorum.market.ratelimit import WeightBudget
from tests.fakes.binance_market import FakeBinanceMarket, SymbolInfo
from tests.fakes.clocks import RecordingSleep

TFS = ("5m", "15m", "1h", "4h")
START = 1_757_462_400_000  # 2025-09-10 00:00 UTC, inside the shared 5m file
M5 = 300_000
DISCONNECTED = "Internal error; unable to process your request. Please try again."
BACKEND_TIMEOUT = "Timeout waiting for response from backend server. Send status unknown; execution status unknown."


class FakeClock:
    def __init__(self, fake: FakeBinanceMarket) -> None:
        self.fake = fake

    def now_ms(self) -> int:
        return self.fake.now_ms




@pytest.fixture(scope="module")
def btc(shared_data: Path) -> dict[str, CandleSeries]:
    five = load_candles(shared_data / "BTCUSDT-futures-5m.csv.gz")
    five = five.between(START - 120 * 86_400_000, START + 2 * 86_400_000)
    return {tf: resample(five, tf) for tf in TFS}


@pytest.fixture
async def fake(btc: dict[str, CandleSeries]) -> AsyncIterator[FakeBinanceMarket]:
    f = FakeBinanceMarket(now_ms=START + 2_000)
    f.add_symbol("BTCUSDT", SymbolInfo(quote_volume=9e9), **btc)
    await f.start()
    yield f
    await f.stop()


def _settings(**kw: object):  # type: ignore[no-untyped-def]
    return load_settings(_env_file=None, timeframes=["15m", "1h", "4h"], execution_timeframe="5m", **kw)


def _live(fake: FakeBinanceMarket, sleep: RecordingSleep, timeout_ms: int = 10_000,
          retry: Backoff | None = None) -> LiveMarketData:
    ex = make_exchange(fake.rest_root, fake.ws_root, enableRateLimit=False, timeout=timeout_ms)
    return LiveMarketData(_settings(), exchange=ex, clock=FakeClock(fake), use_websocket=False, history_pages=1,
                          budget=WeightBudget(0.5, now=sleep.now, sleep=sleep),
                          retry=retry or Backoff(rng=random.Random(1)))


def _bar(s: CandleSeries, open_ms: int) -> tuple[float, ...]:
    i = int(np.searchsorted(s.open_ms, open_ms))
    assert int(s.open_ms[i]) == open_ms
    return tuple(float(a[i]) for a in (s.open, s.high, s.low, s.close, s.volume))


async def _until(cond: Callable[[], bool], timeout: float = 10.0) -> None:
    end = asyncio.get_running_loop().time() + timeout
    while not cond():
        if asyncio.get_running_loop().time() > end:
            raise AssertionError("condition not reached")
        await asyncio.sleep(0.01)


# --- endpoints ---------------------------------------------------------------------------------
async def test_live_market_data_from_settings_backfills_and_streams(fake, btc, monkeypatch) -> None:
    monkeypatch.setenv("BINANCE_FAPI_URL", fake.rest_root + "/")
    monkeypatch.setenv("BINANCE_FSTREAM_URL", f"ws://127.0.0.1:{fake.port}")
    live = LiveMarketData(_settings(), clock=FakeClock(fake), history_pages=1, ws_grace_s=5.0)  # no exchange given
    try:
        await live.start(["BTCUSDT"])
        assert {r.params["interval"] for r in fake.paths("klines")} == set(TFS)  # backfilled over REST here
        assert live.buffers[("BTCUSDT", "5m")].last_open == START - M5
        await _until(lambda: len(fake.subscribed()) == len(TFS))
        n_klines = len(fake.paths("klines"))
        await fake.advance_to(START + 900_000 + 1_500)
        await _until(lambda: live.buffers[("BTCUSDT", "15m")].last_open == START)
        rows = live.buffers[("BTCUSDT", "5m")].rows
        await _until(lambda: START + 600_000 in rows)
        for k in (START, START + M5, START + 2 * M5):
            assert rows[k] == _bar(btc["5m"], k)
        assert live.stats["ws_candles"] >= 4 and len(fake.paths("klines")) == n_klines  # from the websocket
        assert fake.ws_connects >= 1
    finally:
        await live.close()


async def test_download_cli_uses_binance_fapi_url(fake, tmp_path: Path) -> None:
    from quorum.cli import app

    args = ["download", "--symbols", "BTCUSDT", "--timeframes", "1h", "--since", "2025-09-09",
            "--until", "2025-09-09T10:00", "--data-dir", str(tmp_path), "--no-funding"]
    result = await asyncio.to_thread(CliRunner().invoke, app, args, env={"BINANCE_FAPI_URL": fake.rest_root})
    assert result.exit_code == 0, result.output
    assert "BTCUSDT-futures-1h.csv.gz: +10 rows" in result.output
    assert fake.paths("klines") and fake.paths("exchangeInfo")
    got = load_candles(tmp_path / "BTCUSDT-futures-1h.csv.gz")
    assert int(got.open_ms[0]) == START - 86_400_000 and len(got) == 10


def test_a_bad_url_stops_the_cli_with_one_line(tmp_path: Path) -> None:
    quorum = Path(sys.executable).parent / "quorum"
    proc = subprocess.run([str(quorum), "download", "--symbols", "BTCUSDT", "--since", "2025-09-09"],
                          capture_output=True, text=True, cwd=tmp_path, timeout=60,
                          env={"PATH": "/usr/bin:/bin", "BINANCE_FAPI_URL": "fapi.binance.com"})
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "BINANCE_FAPI_URL='fapi.binance.com': must be an http(s) URL" in lines[0]


# --- transient failures of reads ----------------------------------------------------------------
@pytest.mark.parametrize(("status", "code", "msg", "body"), [
    (500, None, None, "<html><body><h1>500 Internal Server Error</h1></body></html>"),
    (500, -1001, DISCONNECTED, None),
    (503, -1007, BACKEND_TIMEOUT, None),
    (502, None, None, "<html><body><h1>502 Bad Gateway</h1></body></html>"),
], ids=["500-html", "500/-1001", "503/-1007", "502-html"])
async def test_transient_failures_twice_then_ok(fake, btc, status, code, msg, body) -> None:
    sleep = RecordingSleep()
    live = _live(fake, sleep)
    try:
        fake.fail_next(status, None, count=2, paths=("klines",), code=code, msg=msg, body=body)
        await live.start(["BTCUSDT"])
        first = [r for r in fake.paths("klines") if r.params["interval"] == "5m"]
        assert [r.status for r in first] == [status, status, 200]  # three requests, the third answered
        assert live.buffers[("BTCUSDT", "5m")].rows[START - M5] == _bar(btc["5m"], START - M5)
        assert len(sleep.calls) == 2 and 0.25 <= sleep.calls[0] <= 0.5 and 0.5 <= sleep.calls[1] <= 1.0
    finally:
        await live.close()


async def test_a_timeout_then_ok(fake, btc) -> None:
    sleep = RecordingSleep()
    live = _live(fake, sleep, timeout_ms=300)
    try:
        fake.fail_next(200, None, count=1, paths=("klines",), delay_s=1.5)  # answered, but too late
        await live.start(["BTCUSDT"])
        first = [r for r in fake.paths("klines") if r.params["interval"] == "5m"]
        assert len(first) == 2 and len(sleep.calls) == 1
        assert live.buffers[("BTCUSDT", "5m")].rows[START - M5] == _bar(btc["5m"], START - M5)
    finally:
        await live.close()


async def test_persistent_5xx_raises_the_typed_error_after_capped_backoff(fake) -> None:
    sleep = RecordingSleep()
    live = _live(fake, sleep, retry=Backoff(attempts=7, rng=random.Random(3)))
    try:
        fake.fail_next(503, None, count=100, paths=("klines",), code=-1007, msg=BACKEND_TIMEOUT)
        with pytest.raises(MarketDataUnavailable) as info:
            await live.start(["BTCUSDT"])
        message = str(info.value)
        assert message == (f"market data unavailable: 127.0.0.1:{fake.port} GET /fapi/v1/klines → "
                           "HTTP 503 Binance -1007 (RequestTimeout) after 7 attempts")
        assert len(fake.paths("klines")) == 7
        assert len(sleep.calls) == 6 and all(0.25 <= w <= 8.0 for w in sleep.calls)
        assert all(4.0 <= w <= 8.0 for w in sleep.calls[4:])  # the cap is reached and held
        assert info.value.code == "-1007"
    finally:
        await live.close()


async def test_an_unreachable_host_is_named(btc) -> None:
    sleep = RecordingSleep()
    f = FakeBinanceMarket(now_ms=START)
    await f.start()
    port = f.port
    await f.stop()  # nothing listens there any more: connection refused
    ex = make_exchange(f"http://127.0.0.1:{port}", enableRateLimit=False)
    live = LiveMarketData(_settings(), exchange=ex, use_websocket=False,
                          budget=WeightBudget(0.5, now=sleep.now, sleep=sleep), retry=Backoff(attempts=3))
    try:
        with pytest.raises(MarketDataUnavailable,
                           match=rf"^market data unavailable: 127\.0\.0\.1:{port} GET /fapi/v1/exchangeInfo → "
                                 r"connection failed \(ExchangeNotAvailable\) after 3 attempts$"):
            await live.start(["BTCUSDT"])
        assert len(sleep.calls) == 2
    finally:
        await live.close()


async def test_429_then_418_wait_at_least_their_retry_after(fake) -> None:
    sleep = RecordingSleep()
    live = _live(fake, sleep)
    try:
        fake.fail_next(429, retry_after=3, count=1, paths=("klines",))
        fake.fail_next(418, retry_after=5, count=1, paths=("klines",))
        await live.start(["BTCUSDT"])
        assert [r.status for r in fake.paths("klines")][:3] == [429, 418, 200]
        assert live.budget.backoffs == [3.0, 5.0]
        assert len(sleep.calls) == 2 and sleep.calls[0] >= 3.0 and sleep.calls[1] >= 5.0
    finally:
        await live.close()


async def test_download_retries_then_names_the_failure(fake, tmp_path: Path) -> None:
    sleep = RecordingSleep()
    ex = make_exchange(fake.rest_root, enableRateLimit=False)
    budget = WeightBudget(0.5, now=sleep.now, sleep=sleep)
    until = START - 86_400_000 + 10 * 3_600_000
    try:
        fake.fail_next(500, None, count=2, paths=("klines",), code=-1001, msg=DISCONNECTED)
        rep = await download(ex, tmp_path, ["BTCUSDT"], ["1h"], START - 86_400_000, until, funding=False,
                             budget=budget, now_ms=lambda: fake.now_ms)
        assert rep.written["BTCUSDT-futures-1h.csv.gz"] == 10 and len(sleep.calls) == 2
        fake.fail_next(503, None, count=100, paths=("klines",), body="<html>503 Service Unavailable</html>")
        with pytest.raises(MarketDataUnavailable, match=r"GET /fapi/v1/klines → HTTP 503 \(ExchangeNotAvailable\) "
                                                        r"after 6 attempts$"):
            await download(ex, tmp_path, ["BTCUSDT"], ["1h"], START - 86_400_000, until + 3_600_000,
                           funding=False, budget=budget, now_ms=lambda: fake.now_ms)
        assert len(load_candles(tmp_path / "BTCUSDT-futures-1h.csv.gz")) == 10  # the file stays valid
    finally:
        await ex.close()
