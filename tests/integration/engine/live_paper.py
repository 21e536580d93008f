"""Paper trading on live-style data, wired as `quorum run` wires it (bootstrap, paper mode, no data
directory), against the live-style fake Binance serving the real candles and funding — with a
clock shared by the fake and the service that only moves when the service waits: the engine runs
through simulated hours deterministically and as fast as the machine allows."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from quorum.bootstrap import App, bootstrap
from quorum.config import Settings
from quorum.market.data_files import load_candles, load_funding
from quorum.market.live import LiveMarketData, make_exchange
from quorum.market.ratelimit import WeightBudget
from tests.fakes.binance_live import LiveBinanceMarket


class StepClock:
    """now moves only when someone waits for a later time (the engine's clock, the fake's now)."""

    speed = 1.0

    def __init__(self, now_ms: int) -> None:
        self.now = int(now_ms)

    def now_ms(self) -> int:
        return self.now

    async def sleep_until(self, ms: int) -> None:
        self.now = max(self.now, int(ms))

    def wake(self) -> None:
        return None


async def start_fake(data: Path, symbols: Sequence[str], start_ms: int, *,
                     no_funding: Sequence[str] = ()) -> LiveBinanceMarket:
    """The fake on the real files of `symbols` (funding withheld for `no_funding`), its clock at
    `start_ms`; no websocket pump is needed (the tests' market data uses REST)."""
    fake = LiveBinanceMarket(StepClock(start_ms))
    for sym in symbols:
        funding = None if sym in no_funding else load_funding(data / f"{sym}-funding.csv.gz")
        fake.add_series(load_candles(data / f"{sym}-futures-5m.csv.gz"), funding)
    return await fake.start()


def settings_for(symbols: Sequence[str], **kw: Any) -> Settings:
    base: dict[str, Any] = {"symbols": list(symbols), "trading_mode": "paper", "timeframes": ["15m", "1h", "4h"],
                            "execution_timeframe": "5m", "decision_timeframe": "15m"}
    base.update(kw)
    return Settings(_env_file=None, **base)  # type: ignore[call-arg]


async def paper_app(settings: Settings, pool: Any, fake: LiveBinanceMarket, *, account: str = "paper") -> App:
    """The service's wiring (`bootstrap` in paper mode on live data), its market data pointed at
    the fake (REST only) and its clock the fake's. Simulated hours pass in wall seconds here, so
    the per-minute request-weight budget is lifted (tests/integration/market covers it)."""
    clock = fake.clock
    market = LiveMarketData(settings, exchange=make_exchange(fake.rest_root, fake.ws_root, enableRateLimit=False),
                            clock=clock, use_websocket=False, monitor_timeframe="1m",
                            budget=WeightBudget(0.9, limit_per_minute=10**9))
    app = await bootstrap(settings, pool=pool, mode="paper", clock=clock, market=market, account=account)
    # the step clock jumps as soon as the engine waits: a cycle in the background would act at an
    # arbitrary later bar; inline it is deterministic (the real process runs it in the background —
    # tests/integration/service/test_smoke_run.py and the soak)
    app.engine.concurrent_cycles = False
    return app
