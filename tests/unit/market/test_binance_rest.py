"""Endpoint override, transient-error classification and the backoff of Binance reads."""

from __future__ import annotations

import random

import ccxt
import pytest

from quorum.execution.binance import BinanceExchange
from quorum.market.binance_rest import (
    Backoff,
    RequestNote,
    linear_ws_url,
    rate_limit_status,
    transient_reason,
)
from quorum.market.candles import make_exchange

URL = "https://fapi.binance.com/fapi/v1/klines?symbol=BTCUSDT"


def test_backoff_doubles_from_half_a_second_and_is_capped_with_jitter():
    exact = Backoff(jitter=0.0)
    assert [exact.delay(n) for n in range(1, 8)] == [0.5, 1.0, 2.0, 4.0, 8.0, 8.0, 8.0]
    jittered = Backoff(rng=random.Random(7))
    delays = [jittered.delay(n) for n in range(1, 200)]
    assert all(0.25 <= d <= 8.0 for d in delays)
    assert len({round(d, 6) for d in delays}) > 100  # jitter spreads clients that failed together
    assert all(4.0 <= d <= 8.0 for d in delays[4:])


@pytest.mark.parametrize(("exc", "note", "expected"), [
    (ccxt.ExchangeNotAvailable(f"binanceusdm GET {URL} 503 Service Unavailable <html>"), None, "HTTP 503"),
    (ccxt.ExchangeNotAvailable(f"binanceusdm GET {URL} 500 Internal Server Error x"), None, "HTTP 500"),
    (ccxt.RequestTimeout(f"binanceusdm GET {URL}"), None, "timeout"),
    (ccxt.ExchangeNotAvailable(f"binanceusdm GET {URL}"), None, "connection failed"),  # refused / reset
    (ccxt.OperationFailed('binanceusdm {"code":-1001,"msg":"Internal error"}'), RequestNote(status=500),
     "HTTP 500 Binance -1001"),
    (ccxt.BadResponse('binanceusdm {"code":-1007,"msg":"Timeout waiting"}'), RequestNote(status=503),
     "HTTP 503 Binance -1007"),
    (ccxt.ExchangeError('binanceusdm {"code":-1007,"msg":"Timeout waiting"}'), None, "Binance -1007"),
    # final: a 4xx answer, a bad symbol, a rejected parameter, rate limits (handled apart), nonce
    (ccxt.ExchangeNotAvailable(f"binanceusdm GET {URL} 404 Not Found x"), None, None),
    (ccxt.BadSymbol('binanceusdm {"code":-1121,"msg":"Invalid symbol."}'), RequestNote(status=400), None),
    (ccxt.BadRequest('binanceusdm {"code":-1102,"msg":"Mandatory parameter"}'), None, None),
    (ccxt.DDoSProtection("binanceusdm 429 Too Many Requests {}"), None, None),
    (ccxt.InvalidNonce('binanceusdm {"code":-1021}'), None, None),
])
def test_transient_reason(exc, note, expected):
    assert transient_reason(exc, note) == expected


def test_rate_limit_status_prefers_the_recorded_status():
    assert rate_limit_status(ccxt.DDoSProtection("binanceusdm 418 I'm a teapot {}")) == 418
    assert rate_limit_status(ccxt.DDoSProtection("binanceusdm 429 x {}")) == 429
    assert rate_limit_status(ccxt.RateLimitExceeded('{"code":-1003}'), RequestNote(status=418)) == 418
    assert rate_limit_status(ccxt.ExchangeNotAvailable("x")) is None


def test_request_note_names_host_and_path_never_the_query():
    note = RequestNote("GET", "http://127.0.0.1:8123/fapi/v2/balance?timestamp=1&signature=abc", 503)
    assert note.host == "127.0.0.1:8123" and note.call == "GET /fapi/v2/balance"


async def test_market_client_endpoints_replace_every_fapi_host_and_the_linear_stream():
    ex = make_exchange("http://127.0.0.1:9/proxy/", linear_ws_url("ws://127.0.0.1:9/"))
    try:
        api = ex.urls["api"]
        fapi = {k: v for k, v in api.items() if k.startswith("fapi")}
        assert fapi and all(v.startswith("http://127.0.0.1:9/proxy/") for v in fapi.values())
        assert api["fapiPublic"] == "http://127.0.0.1:9/proxy/fapi/v1"
        assert api["ws"]["linear"] == "ws://127.0.0.1:9/ws"
        assert ex.get_ws_url("linear", "market") == "ws://127.0.0.1:9/market/ws"  # what klines use
    finally:
        await ex.close()


async def test_an_explicit_url_wins_over_demo_hosts():
    ex = BinanceExchange("k", "s", demo=True, base_url="http://127.0.0.1:9", rate_limit=False)
    try:
        fapi = {k: v for k, v in ex.client.urls["api"].items() if k.startswith("fapi")}
        assert fapi and all(v.startswith("http://127.0.0.1:9/") for v in fapi.values())
    finally:
        await ex.close()
