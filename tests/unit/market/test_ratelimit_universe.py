"""Weight budget (never above share × 2400/min, Retry-After honoured) and universe selection."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from quorum.market.ratelimit import WeightBudget, klines_weight
from quorum.market.universe import MarketInfo, normalize_symbol, replay_universe, select_universe


class VirtualTime:
    def __init__(self, t: float = 600.0) -> None:
        self.t = t
        self.sleeps: list[float] = []

    def now(self) -> float:
        return self.t

    async def sleep(self, s: float) -> None:
        self.sleeps.append(s)
        self.t += s
        await asyncio.sleep(0)


def test_klines_weight_table() -> None:
    assert [klines_weight(n) for n in (1, 99, 100, 499, 500, 1000, 1500)] == [1, 1, 2, 2, 5, 5, 10]


async def test_budget_never_exceeds_share_per_minute() -> None:
    vt = VirtualTime()
    b = WeightBudget(0.01, now=vt.now, sleep=vt.sleep)  # 24 per minute
    assert b.budget == 24
    per_minute: dict[int, int] = {}
    for _ in range(20):
        await b.acquire(5)
        m = int(vt.t // 60)
        per_minute[m] = per_minute.get(m, 0) + 5
    assert max(per_minute.values()) <= 24
    assert len(per_minute) == 5 and vt.sleeps  # it waited for new minutes instead


async def test_server_reported_weight_counts() -> None:
    vt = VirtualTime()
    b = WeightBudget(0.5, now=vt.now, sleep=vt.sleep)
    await b.acquire(1)
    b.observe({"x-mbx-used-weight-1m": "1195"})  # another process on the same IP
    assert b.used == 1195 and b.server_used == 1195
    await b.acquire(10)
    assert vt.sleeps and int(vt.t // 60) == 11  # waited for the next minute


async def test_retry_after_and_exponential_backoff() -> None:
    vt = VirtualTime()
    b = WeightBudget(0.5, now=vt.now, sleep=vt.sleep)
    assert b.penalize(429, "3") == 3.0
    await b.acquire(1)
    assert sum(vt.sleeps) == pytest.approx(3.0)
    assert b.penalize(429, None) == 2.0  # second strike without Retry-After: 1, 2, 4 ...
    assert b.penalize(429, "junk") == 4.0
    b.succeeded()
    assert b.penalize(418, None) == 60.0  # an IP ban waits much longer


def _m(sym: str, qv: float, quote: str = "USDT", perpetual: bool = True, active: bool = True) -> MarketInfo:
    return MarketInfo(sym, quote, quote, perpetual, active, qv)


def test_select_universe() -> None:
    ms = [_m("BTCUSDT", 9e9), _m("ETHUSDT", 5e9), _m("SOLUSDT", 5e9), _m("XRPUSDT", 8e9),
          _m("LOWUSDT", 1e6), _m("BTCUSDC", 1e11, quote="USDC"), _m("BTCUSDT_260327", 1e10, perpetual=False),
          _m("OLDUSDT", 1e10, active=False)]
    assert select_universe(ms, 3, 5e7, ["xrp/usdt:usdt"]) == ["BTCUSDT", "ETHUSDT", "SOLUSDT"]
    assert select_universe(ms, 10, 5e7) == ["BTCUSDT", "XRPUSDT", "ETHUSDT", "SOLUSDT"]
    assert select_universe(ms, 10, 0, symbols=["SOLUSDT", "NOPEUSDT", "LOWUSDT"]) == ["SOLUSDT", "LOWUSDT"]
    assert normalize_symbol("btc/usdt:usdt") == "BTCUSDT"


def test_replay_universe(shared_data: Path) -> None:
    assert replay_universe(shared_data, blocked=["DOGEUSDT"]) == ["BNBUSDT", "BTCUSDT", "ETHUSDT", "SOLUSDT",
                                                                   "XRPUSDT"]
    assert replay_universe(shared_data, timeframe="15m") == ["BTCUSDT", "DOGEUSDT", "ETHUSDT", "XRPUSDT"]
    assert replay_universe(shared_data, symbols=["ETHUSDT", "BTC/USDT:USDT", "NOPE"]) == ["ETHUSDT", "BTCUSDT"]
