"""A live-mode session against the fake Binance server for the crash test:
`python crash_session_live.py PG_URL FAKE_URL SEED`. Reconciles first (crash-only), prints
READY, then opens / reduces / moves stops / closes as fast as it can, one STEP line per action."""

from __future__ import annotations

import asyncio
import random
import sys

from quorum.domain.models import IntentKind, OrderIntent, Side
from quorum.execution.binance import BinanceExchange
from quorum.execution.orders import OrderManager
from quorum.execution.protection import Executor
from quorum.execution.reconcile import Reconciler
from quorum.store.db import create_pool

SYMBOLS = ("BTCUSDT", "ETHUSDT")


def build(pool, url):  # type: ignore[no-untyped-def]
    ex = BinanceExchange("key", "secret", base_url=url, timeout_ms=800, default_retry_after_s=1.0, rate_limit=False)
    executor = Executor(ex, pool, "live")
    executor.om = OrderManager(ex, executor.orders, lookup_attempts=4, lookup_delay_s=0.05)
    return ex, executor


async def main(pg: str, url: str, seed: int) -> None:
    rng = random.Random(seed)
    pool = await create_pool(pg, min_size=1, max_size=3)
    _ex, executor = build(pool, url)
    report = await Reconciler(executor).run()
    if not report.ok:
        print("RECONCILE_FAILED", report.error, flush=True)
        sys.exit(3)
    print("READY", flush=True)
    for step in range(10_000):
        sym = rng.choice(SYMBOLS)
        pos = await executor.positions.open_for_symbol(sym)
        ref = {"BTCUSDT": 50_000.0, "ETHUSDT": 3_000.0}[sym]  # the fake's marks stay put
        if pos is None:
            side = rng.choice((Side.LONG, Side.SHORT))
            await executor.execute(OrderIntent(IntentKind.OPEN, sym, side, round(rng.uniform(3_000, 6_000) / ref, 3),
                                               "crash", price_hint=ref, stop_price=ref * (1 - side.sign * 0.05),
                                               leverage=5), take_profit=ref * (1 + side.sign * 0.05))
        else:
            a = rng.random()
            if a < 0.4:
                qty = round(pos.quantity / 3, 3) or 0.001
                await executor.execute(OrderIntent(IntentKind.REDUCE, sym, pos.side, qty, "partial"))
            elif a < 0.7:
                await executor.move_stop(str(pos.position_id), pos.stop_price * (1 + pos.side.sign * 0.002))
            else:
                await executor.execute(OrderIntent(IntentKind.CLOSE, sym, pos.side, pos.quantity, "consensus_close"))
        print("STEP", step, flush=True)


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2], int(sys.argv[3])))
