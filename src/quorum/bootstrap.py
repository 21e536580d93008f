"""The one composition root: a trading mode is only a choice of adapters.

    backtest  = replay MarketData + SimulatedClock (jumping) + PaperExchange (account "backtest")
    paper     = replay MarketData + SimulatedClock(speed) + PaperExchange   (demo on files: data_dir)
              | live MarketData + WallClock + PaperExchange                 (paper trading)
    live      = live MarketData + WallClock + BinanceExchange

Every piece can be passed in (`clock=`, `market=`, `exchange=`, `consensus=`, `analysts=`,
`runtime=` ...) — that is how tests wire fakes (a fake Binance server behind a real
`BinanceExchange`, a scripted analyst) through the same root. `quorum backtest` uses the fast
path (`quorum.backtest`), which shares the engine's rules and the paper venue's fill model.

It is also the one place the shared resources are opened: `open_record_pool` (the record's
Postgres: DATABASE_URL or the embedded server), `open_cache` (Redis with its in-process
fallback, or the in-process cache) and `build_consensus` (voters, cost, calibration and the
decision store from settings) — for the service, the API process and the commands alike.

Importing this module is cheap (no engine, model SDKs or exchange client): the commands that only
need a pool or a cache import it too; `bootstrap()` imports the engine and the adapters it wires.
"""

from __future__ import annotations

import functools
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import asyncpg
import structlog

from quorum.cache import Cache, FallbackCache, make_cache
from quorum.clock import Clock, SimulatedClock, service_clock
from quorum.config import ConfigError, Settings, TradingMode
from quorum.engine.runtime import RuntimeState
from quorum.execution.exchange import Exchange
from quorum.store.controls import ControlStore
from quorum.store.db import create_pool, resolve_database_url, select_one

if TYPE_CHECKING:
    from quorum.ai import Analyst, ConsensusEngine
    from quorum.engine import Engine, VenueFeed


@dataclass
class App:
    settings: Settings
    mode: str
    clock: Clock
    market: Any
    exchange: Exchange
    executor: Any
    risk: Any
    consensus: Any
    runtime: RuntimeState
    engine: Engine
    venue_feed: VenueFeed
    data_end_ms: int | None = None  # replay: the last execution-bar close common to the symbols

    async def close(self) -> None:
        await self.engine.stop()
        for part in (self.market, self.exchange):
            closer = getattr(part, "close", None)
            if closer is not None:
                await closer()


def configured_database_url(settings: Settings) -> str:
    """DATABASE_URL, or the embedded server under VAR_DIR (started when it is not running)."""
    return resolve_database_url(settings.database_url.get_secret_value() if settings.database_url else None,
                                settings.var_dir)


async def open_record_pool(settings: Settings, *, url: str | None = None, min_size: int = 1, max_size: int = 10,
                           timeout: float = 10.0) -> asyncpg.Pool:
    """A pool on the record's database (`configured_database_url`), or on `url` when the caller
    already holds one (the service's or the demo's database, handed to the API process).
    `DatabaseUnavailable` (one line naming the target) when the server does not answer."""
    return await create_pool(configured_database_url(settings) if url is None else url,
                             min_size=min_size, max_size=max_size, timeout=timeout)


@asynccontextmanager
async def record_pool(settings: Settings, *, max_size: int = 4) -> AsyncIterator[asyncpg.Pool]:
    """`open_record_pool` for one command: a small pool, closed when the block ends. The migrations
    are applied first (idempotent, as `quorum run` does), so a fresh database reads as an empty record."""
    from quorum.store.migrate import apply_migrations

    pool = await open_record_pool(settings, min_size=1, max_size=max_size)
    try:
        async with pool.acquire() as conn:
            if applied := await apply_migrations(conn):
                structlog.get_logger(__name__).info("database.migrated", applied=applied)
        yield pool
    finally:
        await pool.close()


def open_cache(settings: Settings, *, on_change: Callable[[FallbackCache], None] | None = None) -> Cache:
    """REDIS_URL: Redis with the in-process cache as its fallback; unset: the in-process cache."""
    return make_cache(settings.redis_url.get_secret_value() if settings.redis_url else None, on_change=on_change)


async def build_consensus(settings: Settings, *, cache: Cache | None, pool: asyncpg.Pool | None,
                          analysts: Sequence[Analyst] | None = None, now_ms: int | None = None) -> ConsensusEngine:
    """The consensus from settings (`quorum.ai.build_consensus`: voters, cost seeded with the day's
    recorded spend, calibration and the decision store when there is a pool) — the engine's
    (`bootstrap`) and `quorum decide`'s (`consensus_session`)."""
    from quorum.ai import build_consensus as build

    return await build(settings, cache=cache, pool=pool, analysts=analysts, now_ms=now_ms)


@asynccontextmanager
async def consensus_session(settings: Settings, *, record: bool = False) -> AsyncIterator[ConsensusEngine]:
    """A consensus outside the engine (`quorum decide`): its own cache and, with `record`, a small
    pool on the record's database (decisions and calls are stored); all closed when the block ends."""
    cache = open_cache(settings)
    pool = None
    try:
        if record:
            pool = await open_record_pool(settings, min_size=1, max_size=2)
        consensus = await build_consensus(settings, cache=cache, pool=pool)
        try:
            yield consensus
        finally:
            await consensus.close()
    finally:
        await cache.close()
        if pool is not None:
            await pool.close()


def replay_filters(market: Any, symbols: Sequence[str], start_ms: int) -> dict[str, Any]:
    """Paper-venue filters as the fast backtester derives them (price magnitude before start)."""
    from quorum.execution.paper import default_filters

    out = {}
    for sym in symbols:
        base = market.builder(sym).base
        i = max(int(base.closed_count(start_ms)) - 1, 0)
        out[sym] = default_filters(sym, float(base.close[i]))
    return out


def replay_funding_source(market: Any) -> Any:
    def source(symbol: str, t: int) -> float | None:
        b = market.builders.get(symbol)
        return None if b is None or b.funding is None else b.funding.last_rate(t)

    return source


def live_funding_source(market: Any) -> Any:
    """The rates Binance published (fundingRate history) through the live market data's client."""
    from quorum.market.funding import PublishedFunding

    return PublishedFunding(market) if hasattr(market, "unified") else None


def monitor_timeframe(settings: Settings) -> str:
    """The bars open positions are watched on with live data: MONITOR_INTERVAL_SECONDS (1m by default)."""
    from quorum.config import KNOWN_TIMEFRAMES, timeframe_seconds

    return next(tf for tf in KNOWN_TIMEFRAMES if timeframe_seconds(tf) == settings.monitor_interval_seconds)


async def bootstrap(
    settings: Settings,
    *,
    pool: asyncpg.Pool,
    mode: str | TradingMode | None = None,
    data_dir: Path | str | None = None,
    symbols: Sequence[str] | None = None,
    start_ms: int | None = None,
    speed: float | None = None,
    clock: Clock | None = None,
    market: Any = None,
    exchange: Exchange | None = None,
    venue_feed: VenueFeed | None = None,
    consensus: Any = None,
    analysts: Sequence[Any] | None = None,
    runtime: RuntimeState | None = None,
    cache: Any = None,
    account: str | None = None,
    initial_balance: float | None = None,
) -> App:
    """Wire an `App` (engine + adapters) for `mode` (default: settings.trading_mode)."""
    from quorum.engine import Engine, NullVenueFeed
    from quorum.engine.equity import EquityRecorder
    from quorum.engine.feeds import LivePaperFeed, ReplayPaperFeed
    from quorum.execution.killswitch import KillSwitch
    from quorum.execution.protection import Executor
    from quorum.execution.reconcile import Reconciler
    from quorum.risk.manager import RiskManager

    m = TradingMode(mode) if mode is not None else settings.trading_mode
    replay = data_dir is not None or m is TradingMode.BACKTEST
    if m is TradingMode.LIVE:
        settings.check_can_start()
        if replay:
            raise ConfigError("TRADING_MODE=live trades real money on live data; a data directory is not allowed")
    if replay and start_ms is None and clock is None:
        raise ConfigError("a replay needs a start time (start_ms)")
    if clock is None:
        clock = SimulatedClock(int(start_ms or 0), speed=speed) if replay else service_clock()
    if market is None:
        if replay:
            from quorum.market.feeds import ReplayMarketData

            market = ReplayMarketData(data_dir or settings.data_dir, clock, timeframes=settings.timeframes,
                                      base_timeframe=settings.execution_timeframe, symbols=symbols or settings.symbols,
                                      blocked=settings.blocked_symbols)
        else:
            from quorum.market.live import LiveMarketData

            market = LiveMarketData(settings, clock=clock, monitor_timeframe=monitor_timeframe(settings))
    names = list(symbols or (list(market.builders) if replay else settings.symbols))
    if exchange is None:
        if m is TradingMode.LIVE:
            from quorum.execution.binance import BinanceExchange

            exchange = BinanceExchange.from_settings(settings)  # keys, BINANCE_DEMO, BINANCE_FAPI_URL
        else:
            from quorum.config import timeframe_seconds
            from quorum.domain.fills import FillModel
            from quorum.execution.paper import PaperExchange

            exchange = PaperExchange(
                pool, account=account or m.value,
                fill_model=FillModel.from_pct(settings.taker_fee_pct, settings.maker_fee_pct,
                                              settings.slippage_spread_bps, settings.slippage_impact_bps_per_100k),
                initial_balance=float(initial_balance or settings.initial_capital),
                filters=replay_filters(market, names, int(start_ms or clock.now_ms())) if replay else None,
                funding_rate=settings.paper_funding_rate,
                funding_source=replay_funding_source(market) if replay else live_funding_source(market),
                timeframe_ms=timeframe_seconds(settings.execution_timeframe) * 1000,
            )
    if venue_feed is None:
        if m is TradingMode.LIVE:
            venue_feed = NullVenueFeed()
        else:
            from quorum.execution.paper import PaperExchange

            if not isinstance(exchange, PaperExchange):
                raise ConfigError("a paper or replay engine trades on the paper venue")
            venue_feed = (ReplayPaperFeed(exchange, {s: market.builder(s).base for s in names}) if replay
                          else LivePaperFeed(exchange, market))
    runtime = runtime or RuntimeState(mode=m.value)
    executor = Executor(exchange, pool, m.value, margin_mode=settings.margin_mode, clock=clock.now_ms)
    risk = RiskManager(pool, settings, m.value)
    if consensus is None:
        consensus = await build_consensus(settings, cache=cache, pool=pool, analysts=analysts,
                                          now_ms=clock.now_ms())
    consensus.mode = m.value
    engine = Engine(settings=settings, clock=clock, market=market, exchange=exchange, executor=executor, risk=risk,
                    consensus=consensus, runtime=runtime, symbols=names, venue_feed=venue_feed,
                    reconciler=Reconciler(executor), kill_switch=KillSwitch(executor),
                    bar_settle_ms=0 if replay else 3_000,
                    equity=EquityRecorder(pool, m.value, exchange, fills_written=lambda: executor.fills_stored),
                    controls=ControlStore(pool, m.value), database_probe=functools.partial(select_one, pool),
                    monitor_timeframe=None if replay else monitor_timeframe(settings),
                    concurrent_cycles=not replay)
    data_end = None
    if replay and hasattr(market, "builder"):
        ends = [int(b.base.open_ms[-1]) + b.base.tf_ms for b in (market.builder(s) for s in names)
                if b.base is not None and len(b.base)]
        data_end = min(ends) if ends else None
    return App(settings, m.value, clock, market, exchange, executor, risk, consensus, runtime, engine, venue_feed,
               data_end)


async def run_app(app: App, *, until_ms: int | None = None) -> Any:
    """Start (reconcile, load breakers) and run the engine until `until_ms`, `app.engine.stop()`
    or cancellation; always closes the adapters (protective stops stay on the venue)."""
    try:
        await app.engine.start()
        return await app.engine.run(until_ms=until_ms if until_ms is not None else app.data_end_ms)
    finally:
        await app.close()
