"""`quorum download` through the real ccxt client against the fake Binance: same file format,
closed bars only, resumes where files end, backs off on 429."""

from __future__ import annotations

import asyncio
import gzip
from pathlib import Path

import numpy as np
from typer.testing import CliRunner

from quorum.market.data_files import CandleSeries, load_candles, load_funding, resample
from quorum.market.download import download
from quorum.market.live import make_exchange
from quorum.market.ratelimit import WeightBudget
from tests.fakes.binance_market import FakeBinanceMarket, SymbolInfo

T0 = 1_735_603_200_000
M5 = 300_000
H8 = 8 * 3_600_000


def _series(n: int) -> CandleSeries:
    rng = np.random.default_rng(5)
    c = np.round(100 + rng.standard_normal(n).cumsum(), 2)
    o = np.r_[100.0, c[:-1]]
    return CandleSeries.from_arrays("BTCUSDT", "5m", T0 + np.arange(n) * M5, o, np.maximum(o, c) + 0.25,
                                    np.minimum(o, c) - 0.25, c, np.round(rng.random(n) * 10, 3))


async def _fake(now: int) -> FakeBinanceMarket:
    s = _series(3000)
    f = FakeBinanceMarket(now_ms=now)
    f.add_symbol("BTCUSDT", SymbolInfo(funding=[(T0 + i * H8, 0.0001 * (i % 3 - 1)) for i in range(40)]),
                 **{"5m": s, "1h": resample(s, "1h")})
    return await f.start()


class VirtualTime:
    def __init__(self) -> None:
        self.t, self.sleeps = 0.0, []  # type: ignore[var-annotated]

    def now(self) -> float:
        return self.t

    async def sleep(self, s: float) -> None:
        self.sleeps.append(s)
        self.t += s


async def test_download_resume_and_closed_only(tmp_path: Path) -> None:
    now = T0 + 1200 * M5 + 60_000  # the bar opened at T0 + 1200*M5 is still open
    fake = await _fake(now)
    ex = make_exchange(fake.rest_root, enableRateLimit=False)
    vt = VirtualTime()
    try:
        fake.fail_next(429, retry_after=4, count=1, paths=("klines",))
        rep = await download(ex, tmp_path, ["BTCUSDT"], ["5m", "1h"], T0, budget=WeightBudget(
            0.5, now=vt.now, sleep=vt.sleep), now_ms=lambda: fake.now_ms)
        assert vt.sleeps and vt.sleeps[0] == 4.0
        five = load_candles(tmp_path / "BTCUSDT-futures-5m.csv.gz")
        assert len(five) == 1200 and rep.written["BTCUSDT-futures-5m.csv.gz"] == 1200
        src = fake.candles[("BTCUSDT", "5m")]
        assert np.array_equal(five.open_ms, src.open_ms[:1200])
        for f in ("open", "high", "low", "close", "volume"):
            assert np.array_equal(getattr(five, f), getattr(src, f)[:1200])
        assert len(load_candles(tmp_path / "BTCUSDT-futures-1h.csv.gz")) == 100
        assert {r.params["limit"] for r in fake.paths("klines") if r.status == 200} <= {"499", "202", "100"}
        fund = load_funding(tmp_path / "BTCUSDT-funding.csv.gz")
        assert len(fund) == int((now - T0) // H8) + 1
        assert gzip.open(tmp_path / "BTCUSDT-futures-5m.csv.gz", "rt").readline().strip() == \
            "timestamp_ms,open,high,low,close,volume"
        # resume: two hours later only the new bars are fetched and appended
        fake.now_ms = now + 24 * M5
        n_before = len(fake.paths("klines"))
        rep2 = await download(ex, tmp_path, ["BTCUSDT"], ["5m"], T0, now_ms=lambda: fake.now_ms)
        assert rep2.written["BTCUSDT-futures-5m.csv.gz"] == 24
        new_calls = fake.paths("klines")[n_before:]
        assert int(new_calls[0].params["startTime"]) == T0 + 1200 * M5
        five2 = load_candles(tmp_path / "BTCUSDT-futures-5m.csv.gz")
        assert len(five2) == 1224 and np.array_equal(five2.close, src.close[:1224])
        assert rep2.written["BTCUSDT-funding.csv.gz"] == 0
    finally:
        await ex.close()
        await fake.stop()


async def test_download_cli(tmp_path: Path) -> None:
    fake = await _fake(T0 + 600 * M5)
    try:
        from quorum.cli import app

        args = ["download", "--symbols", "BTCUSDT", "--timeframes", "1h", "--since", "2024-12-31",
                "--until", "2024-12-31T10:00", "--data-dir", str(tmp_path), "--no-funding",
                "--rest-url", fake.rest_root]
        result = await asyncio.to_thread(CliRunner().invoke, app, args)
        assert result.exit_code == 0, result.output
        assert "BTCUSDT-futures-1h.csv.gz: +10 rows" in result.output
        assert len(load_candles(tmp_path / "BTCUSDT-futures-1h.csv.gz")) == 10
        bad = await asyncio.to_thread(CliRunner().invoke, app, ["download", "--symbols", "BTCUSDT", "--since",
                                                                "yesterday-ish", "--rest-url", fake.rest_root])
        assert bad.exit_code != 0
    finally:
        await fake.stop()
