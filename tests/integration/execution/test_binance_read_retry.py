"""BinanceExchange as `quorum run` builds it (from settings, BINANCE_FAPI_URL at the fake trading
server): reads are retried on transient failures and after Retry-After; orders are never resent.
The real ccxt client talks to the fake over the wire."""

from __future__ import annotations

import random
from collections.abc import AsyncIterator

import pytest

from quorum.config import Settings, load_settings
from quorum.execution.binance import BinanceExchange
from quorum.execution.exchange import ExchangeUnavailable, OrderRequest, OutcomeUnknown
from quorum.market.binance_rest import Backoff
from tests.fakes.binance_trading import FakeBinanceTrading, Fault
from tests.fakes.clocks import RecordingSleep

KEY, SECRET = "bnkey-PLAIN-4c1e9a", "bnsecret-PLAIN-0d7f2b"
BALANCE = "/fapi/v2/balance"
ORDER = "/fapi/v1/order"
DISCONNECTED = "Internal error; unable to process your request. Please try again."
BACKEND_TIMEOUT = "Timeout waiting for response from backend server. Send status unknown; execution status unknown."




@pytest.fixture
async def fake() -> AsyncIterator[FakeBinanceTrading]:
    f = FakeBinanceTrading(wallet=10_000.0)
    await f.start()
    yield f
    await f.stop()


def _settings(fake: FakeBinanceTrading, **kw: object) -> Settings:
    return load_settings(_env_file=None, trading_mode="live", binance_api_key=KEY, binance_api_secret=SECRET,
                         api_token="tok-PLAIN-5e", binance_fapi_url=fake.base_url, **kw)


def _venue(fake: FakeBinanceTrading, sleep: RecordingSleep, **kw: object) -> BinanceExchange:
    kw.setdefault("read_retry", Backoff(rng=random.Random(2)))
    return BinanceExchange.from_settings(_settings(fake), sleep=sleep, now=sleep.now, **kw)


def _balances(fake: FakeBinanceTrading) -> list[dict[str, str]]:
    return fake.calls(BALANCE, "GET")


# --- endpoints ---------------------------------------------------------------------------------
async def test_bootstrap_points_trading_and_market_data_at_binance_fapi_url(fake, pool) -> None:
    from quorum.bootstrap import bootstrap

    app = await bootstrap(_settings(fake, symbols="BTCUSDT"), pool=pool)
    try:
        assert isinstance(app.exchange, BinanceExchange)
        bal = await app.exchange.balance()
        assert bal.wallet_balance == pytest.approx(10_000.0) and len(_balances(fake)) == 1
        await app.market.universe()  # the market-data client reads exchangeInfo from the same host
        assert fake.calls("/fapi/v1/exchangeInfo", "GET")
        assert app.market.exchange.urls["api"]["fapiPublic"] == f"{fake.base_url}/fapi/v1"
    finally:
        await app.close()


async def test_demo_mode_keeps_its_hosts_unless_a_url_is_set(fake) -> None:
    demo = BinanceExchange.from_settings(load_settings(_env_file=None, binance_api_key=KEY, binance_api_secret=SECRET,
                                                       binance_demo=True))
    pointed = BinanceExchange.from_settings(_settings(fake, binance_demo=True))
    try:
        assert demo.client.urls["api"]["fapiPrivateV2"] == "https://demo-fapi.binance.com/fapi/v2"
        assert pointed.client.urls["api"]["fapiPrivateV2"] == f"{fake.base_url}/fapi/v2"
        await pointed.balance()
        assert len(_balances(fake)) == 1
    finally:
        await demo.close()
        await pointed.close()


# --- transient failures of reads ----------------------------------------------------------------
@pytest.mark.parametrize("faults", [
    [Fault("status", BALANCE, "GET", status=500, msg="Internal Server Error", times=2)],
    [Fault("code", BALANCE, "GET", code=-1001, msg=DISCONNECTED, code_status=500, times=2)],
    [Fault("code", BALANCE, "GET", code=-1007, msg=BACKEND_TIMEOUT, code_status=503, times=2)],
    [Fault("status", BALANCE, "GET", status=502, msg="Bad Gateway"),
     Fault("code", BALANCE, "GET", code=-1007, msg=BACKEND_TIMEOUT, code_status=503)],
], ids=["500", "500/-1001", "503/-1007", "502-then-1007"])
async def test_read_fails_twice_then_succeeds(fake, faults) -> None:
    sleep = RecordingSleep(5_000.0)
    venue = _venue(fake, sleep)
    try:
        fake.inject(*faults)
        bal = await venue.balance()
        assert bal.wallet_balance == pytest.approx(10_000.0)
        assert len(_balances(fake)) == 3
        assert len(sleep.calls) == 2 and 0.25 <= sleep.calls[0] <= 0.5 and 0.5 <= sleep.calls[1] <= 1.0
    finally:
        await venue.close()


async def test_a_read_timing_out_is_asked_again(fake) -> None:
    sleep = RecordingSleep(5_000.0)
    venue = _venue(fake, sleep, timeout_ms=300)
    fake.positions["BTCUSDT"] = {"amt": 0.01, "entry": 50_000.0, "margin": 25.0}
    try:
        fake.inject(Fault("timeout", "/fapi/v2/positionRisk", "GET", delay=1.2))
        positions = await venue.fetch_positions()
        assert [(p.symbol, p.quantity) for p in positions] == [("BTCUSDT", 0.01)]
        assert len(fake.calls("/fapi/v2/positionRisk", "GET")) == 2 and len(sleep.calls) == 1
    finally:
        await venue.close()


async def test_persistent_5xx_gives_a_typed_error_naming_host_and_call(fake) -> None:
    sleep = RecordingSleep(5_000.0)
    venue = _venue(fake, sleep, read_retry=Backoff(attempts=7, rng=random.Random(5)))
    try:
        await venue.balance()  # markets and time are loaded; only the failing call counts below
        before = len(_balances(fake))
        fake.inject(Fault("status", BALANCE, "GET", status=503, msg="Service Unavailable", times=100))
        with pytest.raises(ExchangeUnavailable) as info:
            await venue.balance()
        message = str(info.value)
        assert message == (f"exchange unavailable: 127.0.0.1:{fake.port} GET /fapi/v2/balance → HTTP 503 "
                           "(ExchangeNotAvailable) after 7 attempts")
        assert "signature" not in message and KEY not in message and SECRET not in message
        assert len(_balances(fake)) - before == 7
        assert len(sleep.calls) == 6 and all(0.25 <= w <= 8.0 for w in sleep.calls)
        assert all(4.0 <= w <= 8.0 for w in sleep.calls[4:])  # capped at 8 s
    finally:
        await venue.close()


async def test_429_then_418_wait_at_least_their_retry_after(fake) -> None:
    sleep = RecordingSleep(5_000.0)
    venue = _venue(fake, sleep)
    try:
        fake.inject(Fault("status", BALANCE, "GET", status=429, msg="Too many requests", headers={"Retry-After": "3"}),
                    Fault("status", BALANCE, "GET", status=418, msg="IP banned", headers={"Retry-After": "5"}))
        bal = await venue.balance()
        assert bal.wallet_balance == pytest.approx(10_000.0) and len(_balances(fake)) == 3
        assert len(sleep.calls) == 2 and sleep.calls[0] >= 3.0 and sleep.calls[1] >= 5.0
    finally:
        await venue.close()


async def test_not_found_is_final_not_retried(fake) -> None:
    sleep = RecordingSleep(5_000.0)
    venue = _venue(fake, sleep)
    try:
        assert await venue.fetch_order("BTCUSDT", "never-sent-1") is None
        assert len(fake.calls(ORDER, "GET")) == 1 and sleep.calls == []
    finally:
        await venue.close()


# --- orders: never resent ------------------------------------------------------------------------
async def test_an_order_create_that_times_out_is_not_resent(fake) -> None:
    sleep = RecordingSleep(5_000.0)
    venue = _venue(fake, sleep, timeout_ms=300)
    cid = "qtest-timeout-create-1"
    try:
        await venue.symbol_filters("BTCUSDT")
        fake.inject(Fault("timeout", ORDER, "POST", delay=1.2))  # executed, the answer comes too late
        with pytest.raises(OutcomeUnknown):
            await venue.create_order(OrderRequest(cid, "BTCUSDT", "buy", "market", 0.01))
        creates = [p for p in fake.calls(ORDER, "POST") if p.get("newClientOrderId") == cid]
        assert len(creates) == 1, "an order whose outcome is unknown must never be sent again"
        found = await venue.fetch_order("BTCUSDT", cid)  # resolved by its client id instead
        assert found is not None and found.filled_quantity == pytest.approx(0.01)
        assert len([p for p in fake.calls(ORDER, "POST") if p.get("newClientOrderId") == cid]) == 1
    finally:
        await venue.close()


async def test_a_cancel_that_fails_transiently_is_not_resent(fake) -> None:
    sleep = RecordingSleep(5_000.0)
    venue = _venue(fake, sleep)
    try:
        await venue.symbol_filters("BTCUSDT")
        await venue.create_order(OrderRequest("qtest-entry-1", "BTCUSDT", "buy", "market", 0.01))
        stop = await venue.create_order(OrderRequest("qtest-stop-1", "BTCUSDT", "sell", "stop_market", 0.01,
                                                     stop_price=49_000.0, reduce_only=True))
        assert stop.conditional
        fake.inject(Fault("status", "/fapi/v1/algoOrder", "DELETE", status=503, msg="Service Unavailable"))
        with pytest.raises(OutcomeUnknown):
            await venue.cancel_order("BTCUSDT", "qtest-stop-1", conditional=True)
        assert len(fake.calls("/fapi/v1/algoOrder", "DELETE")) == 1 and sleep.calls == []
    finally:
        await venue.close()
