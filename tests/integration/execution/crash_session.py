"""A paper trading session for the crash test: `python crash_session.py PG_URL SEED [STEPS]`.

Starts like the service does (reconcile first, crash-only), then trades as fast as it can:
bars move the price (stops/TPs trigger on the paper venue), positions are opened with a stop,
partially reduced, have their stop moved, and are closed. Prints READY after start-up and one
line per step so the parent can kill it at a random point with SIGKILL.
"""

from __future__ import annotations

import asyncio
import random
import sys

from quorum.domain.fills import FillModel
from quorum.domain.models import Candle, IntentKind, OrderIntent, Side, SymbolFilters
from quorum.execution.paper import PaperExchange
from quorum.execution.protection import Executor
from quorum.execution.reconcile import Reconciler
from quorum.store.db import create_pool

ACCOUNT = "crash"
SYMBOLS = ("BTCUSDT", "ETHUSDT")
FILTERS = {
    "BTCUSDT": SymbolFilters("BTCUSDT", 0.1, 0.001, 0.001, 100.0, 125),
    "ETHUSDT": SymbolFilters("ETHUSDT", 0.01, 0.001, 0.001, 20.0, 100),
}
START = {"BTCUSDT": 50_000.0, "ETHUSDT": 3_000.0}
T0 = 1_767_225_600_000


class DbClock:
    def __init__(self) -> None:
        self.t = T0

    def __call__(self) -> int:
        return self.t


def build(pool, clock) -> tuple[PaperExchange, Executor]:  # type: ignore[no-untyped-def]
    ex = PaperExchange(pool, account=ACCOUNT, fill_model=FillModel(0.0005, 0.0002, 2.0, 2.0),
                       initial_balance=100_000.0, filters=FILTERS, clock=clock, funding_rate=0.0001)
    return ex, Executor(ex, pool, "paper", clock=clock)


async def main(url: str, seed: int, steps: int) -> None:
    rng = random.Random(seed)
    pool = await create_pool(url, min_size=1, max_size=3)
    clock = DbClock()
    ex, executor = build(pool, clock)
    await ex.start()
    last = await pool.fetchval("SELECT max(last_time_ms) FROM paper_symbols WHERE account=$1", ACCOUNT)
    clock.t = int(last or T0)
    for s in SYMBOLS:
        q = "SELECT last_price FROM paper_symbols WHERE account=$1 AND symbol=$2"
        if await pool.fetchval(q, ACCOUNT, s) is None:
            await ex.on_price(s, START[s], clock.t)
    report = await Reconciler(executor).run()
    if not report.ok:
        print("RECONCILE_FAILED", report.error, flush=True)
        sys.exit(3)
    print("READY", flush=True)
    for step in range(steps):
        sym = rng.choice(SYMBOLS)
        price = float(await pool.fetchval("SELECT last_price FROM paper_symbols WHERE account=$1 AND symbol=$2",
                                          ACCOUNT, sym))
        pos = await executor.positions.open_for_symbol(sym)
        action = rng.random()
        if pos is None:
            side = rng.choice((Side.LONG, Side.SHORT))
            qty = round(rng.uniform(2_000, 6_000) / price, 3)
            stop = price * (1 - side.sign * rng.uniform(0.005, 0.02))
            tp = price * (1 + side.sign * rng.uniform(0.01, 0.03)) if rng.random() < 0.5 else None
            await executor.execute(OrderIntent(IntentKind.OPEN, sym, side, qty, "crash", price_hint=price,
                                               stop_price=stop, leverage=5), take_profit=tp)
        elif action < 0.25:
            await executor.execute(OrderIntent(IntentKind.REDUCE, sym, pos.side, round(pos.quantity / 3, 3) or 0.001,
                                               "partial_take_profit"))
        elif action < 0.45:
            new_stop = pos.stop_price + (price - pos.stop_price) * 0.3
            await executor.execute(OrderIntent(IntentKind.MOVE_STOP, sym, pos.side, pos.quantity, "trail",
                                               stop_price=new_stop))
        elif action < 0.6:
            await executor.execute(OrderIntent(IntentKind.CLOSE, sym, pos.side, pos.quantity, "consensus_close"))
        else:
            clock.t += 300_000
            drift = price * rng.gauss(0, 0.006)
            o = price
            c = max(price + drift, 1.0)
            h, low = max(o, c) * (1 + abs(rng.gauss(0, 0.002))), min(o, c) * (1 - abs(rng.gauss(0, 0.002)))
            await ex.on_bar(sym, Candle(clock.t - 300_000, o, h, low, c, 1.0))
            if pos.position_id:
                await executor.sync_position(pos.position_id)
        print("STEP", step, flush=True)
    await pool.close()
    print("DONE", flush=True)


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]) if len(sys.argv) > 3 else 10_000))
