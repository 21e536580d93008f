"""The decision cycle asks the consensus for every symbol at once (at most MAX_CONCURRENT_DECISIONS
in flight), then applies risk and execution in sorted symbol order on a fresh read of the
account, whatever order the answers came back in; one symbol's failure does not stop the others.
Paper mode on the six real symbols, the real Postgres and the real consensus engine."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import asyncpg

from quorum.ai.context import VoteContext
from quorum.backtest.request import parse_time
from quorum.bootstrap import bootstrap
from quorum.config import load_settings
from quorum.domain.models import Action, Vote

SYMBOLS = ["BNBUSDT", "BTCUSDT", "DOGEUSDT", "ETHUSDT", "SOLUSDT", "XRPUSDT"]
DECISION_MS = 900_000


class ConcurrencyProbe:
    """A voter that records how many of its calls are in flight at once and the order in which
    they end (later symbols answer sooner), and votes LONG with levels around the price."""

    name = "probe"
    kind = "model"

    def __init__(self) -> None:
        self.in_flight = 0
        self.peak = 0
        self.finished: list[str] = []
        self.meanwhile: Any = None  # run once while the first vote is in flight

    async def vote(self, ctx: VoteContext) -> Vote:
        if self.meanwhile is not None:
            work, self.meanwhile = self.meanwhile, None
            await work()
        return await self._vote(ctx)

    async def _vote(self, ctx: VoteContext) -> Vote:
        snap = ctx.snapshot
        self.in_flight += 1
        self.peak = max(self.peak, self.in_flight)
        try:
            await asyncio.sleep(0.01 * (len(SYMBOLS) - SYMBOLS.index(snap.symbol)))
        finally:
            self.in_flight -= 1
        self.finished.append(snap.symbol)
        return Vote(self.name, snap.symbol, Action.LONG, 0.9, leverage=3.0, stop_loss=snap.price * 0.98,
                    take_profits=(snap.price * 1.04,), horizon="4h", reasoning="probe")


class FailingFor:
    """The consensus, except that deciding `symbol` raises (as a broken store would)."""

    def __init__(self, inner: Any, symbol: str) -> None:
        self.inner = inner
        self.symbol = symbol
        self.mode = inner.mode

    async def decide(self, ctx: VoteContext) -> Any:
        if ctx.snapshot.symbol == self.symbol:
            raise RuntimeError(f"cannot decide {self.symbol}")
        return await self.inner.decide(ctx)

    def batched(self) -> Any:  # the consensus port: the inner engine stores the cycle's decisions
        return self.inner.batched()


async def test_decisions_are_gathered_concurrently_and_executed_in_symbol_order(
        pool: asyncpg.Pool, shared_data: Path) -> None:
    # one position at most: only the first symbol (in sorted order) that passes risk may enter,
    # and every later one must see that entry in its own exposure check
    settings = load_settings(symbols=SYMBOLS, max_concurrent_decisions=3, max_concurrent_positions=1,
                             min_ai_confidence=0.55)
    start = parse_time("2025-10-06", "s")
    assert start is not None
    probe = ConcurrencyProbe()
    app = await bootstrap(settings, pool=pool, mode="paper", data_dir=shared_data, symbols=SYMBOLS,
                          start_ms=start, analysts=[probe], account="concurrent-cycle")
    engine, rt = app.engine, app.runtime
    engine.consensus = FailingFor(engine.consensus, "ETHUSDT")
    await engine.start()
    t = start + DECISION_MS
    await app.clock.sleep_until(t)
    errors = engine.stats.errors
    await engine.step(t)

    assert probe.peak == 3  # concurrent, and never more than MAX_CONCURRENT_DECISIONS
    assert sorted(probe.finished) == sorted(set(SYMBOLS) - {"ETHUSDT"})
    assert probe.finished != sorted(probe.finished)  # the answers came back out of order ...
    records = [d for d in rt.last_decisions if d["time_ms"] == t]
    assert [d["symbol"] for d in records] == [s for s in SYMBOLS if s != "ETHUSDT"]  # ... execution did not
    assert engine.stats.errors == errors + 1 and engine.stats.decisions == 5  # ETH failed alone
    opened = [d for d in records if d.get("execution") == "opened"]
    assert len(opened) == 1 and engine.stats.entries == 1
    first = records.index(opened[0])
    assert all(d["verdict"] != "accepted" for d in records[:first])
    later = records[first + 1:]
    assert later and all(d["verdict"] == "rejected" and "max_concurrent_positions" in d["reasons"] for d in later)
    held = await app.executor.positions.open_positions()
    assert [p.symbol for p in held] == [opened[0]["symbol"]]

    # the next cycle shows the voters the open position and acts on it (the probe says LONG: kept)
    probe.finished.clear()
    t2 = t + DECISION_MS
    await app.clock.sleep_until(t2)
    await engine.step(t2)
    again = {d["symbol"]: d for d in rt.last_decisions if d["time_ms"] == t2}
    assert again[opened[0]["symbol"]].get("verdict") is None  # a LONG on a long position: nothing to do
    assert [p.symbol for p in await app.executor.positions.open_positions()] == [opened[0]["symbol"]]

    # the position is closed while the votes are gathered (as the position monitor may do): the
    # answer about it judged a state that is gone, so nothing is done on that symbol this cycle,
    # while the next symbol, now seeing no open position, may enter
    (pos,) = await app.executor.positions.open_positions()
    assert pos.position_id is not None

    async def close_it() -> None:
        await app.executor.close(pos.position_id, "stop_loss")

    probe.meanwhile = close_it
    t3 = t2 + DECISION_MS
    await app.clock.sleep_until(t3)
    await engine.step(t3)
    third = {d["symbol"]: d for d in rt.last_decisions if d["time_ms"] == t3}
    assert third[pos.symbol]["verdict"] == "position_changed" and "execution" not in third[pos.symbol]
    entered = [s for s, d in third.items() if d.get("execution") == "opened"]
    assert len(entered) == 1 and entered[0] != pos.symbol
    assert [p.symbol for p in await app.executor.positions.open_positions()] == entered

    # a kill while the votes are gathered: flattened at once, and the answers are not acted on
    probe.meanwhile = rt.kill
    entries = engine.stats.entries
    t4 = t3 + DECISION_MS
    await app.clock.sleep_until(t4)
    await engine.step(t4)
    assert rt.kill_requested and not [d for d in rt.last_decisions if d["time_ms"] == t4]
    assert engine.stats.entries == entries and not await app.executor.positions.open_positions()
    await app.close()
