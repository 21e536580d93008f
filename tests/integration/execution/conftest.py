"""Fixtures: the fake Binance USDⓈ-M trading server and a live-mode executor wired to it
through the real ccxt client."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest

from quorum.execution.binance import BinanceExchange
from quorum.execution.orders import OrderManager
from quorum.execution.protection import Executor
from quorum.execution.reconcile import Reconciler
from quorum.market.binance_rest import Backoff
from tests.fakes.binance_trading import FakeBinanceTrading

READ_ATTEMPTS = 3  # each read is tried this often (quickly) before it fails


@dataclass
class LiveRig:
    fake: FakeBinanceTrading
    exchange: BinanceExchange
    executor: Executor
    pool: object

    def venue_protected(self) -> bool:
        """Every venue position has a NEW reduce-only algo stop of its size."""
        for sym, pos in self.fake.positions.items():
            stops = [a for a in self.fake.algo.values() if a["symbol"] == sym and a["algoStatus"] == "NEW"
                     and a["orderType"] == "STOP_MARKET" and a["reduceOnly"]]
            if not any(abs(float(a["quantity"]) - abs(pos["amt"])) < 1e-9 for a in stops):
                return False
        return True

    def sends(self, cid: str) -> int:
        """Requests that tried to create an order with this client id."""
        return sum(1 for m, p, q in self.fake.requests if m == "POST" and p in ("/fapi/v1/order", "/fapi/v1/algoOrder")
                   and cid in (q.get("newClientOrderId"), q.get("clientAlgoId")))

    def venue_orders_with(self, cid: str) -> int:
        return sum(1 for o in self.fake.orders.values() if o["clientOrderId"] == cid and o.get("origType") == "MARKET"
                   ) + sum(1 for a in self.fake.algo.values() if a["clientAlgoId"] == cid)


@pytest.fixture
async def live(pool) -> AsyncIterator[LiveRig]:
    fake = FakeBinanceTrading(wallet=10_000.0)
    url = await fake.start()
    exchange = BinanceExchange("key", "secret", base_url=url, timeout_ms=800, default_retry_after_s=1.0,
                                rate_limit=False,
                                read_retry=Backoff(attempts=READ_ATTEMPTS, initial_s=0.01, max_s=0.04))
    om = None
    executor = Executor(exchange, pool, "live")
    executor.om = om or OrderManager(exchange, executor.orders, lookup_attempts=4, lookup_delay_s=0.05)
    report = await Reconciler(executor).run()
    assert report.ok, report.error
    try:
        yield LiveRig(fake, exchange, executor, pool)
    finally:
        await exchange.close()
        await fake.stop()
