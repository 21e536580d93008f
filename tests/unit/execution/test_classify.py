"""Binance error classification: ccxt exception class first, Binance code second."""

from __future__ import annotations

import ccxt
import pytest

from quorum.execution import exchange as x
from quorum.execution.binance import BinanceExchange


@pytest.fixture
async def bn():
    ex = BinanceExchange("k", "s", rate_limit=False)
    yield ex
    await ex.close()


@pytest.mark.parametrize("exc,body,expected", [
    (ccxt.InsufficientFunds("binanceusdm Margin is insufficient."), None, x.InsufficientMargin),
    (ccxt.InvalidOrder("binanceusdm {\"code\":-4164,\"msg\":\"notional\"}"), None, x.OrderRejected),
    (ccxt.OrderImmediatelyFillable("would trigger"), None, x.WouldTrigger),
    (ccxt.ExchangeError("x"), '{"code":-2021,"msg":"Order would immediately trigger."}', x.WouldTrigger),
    (ccxt.RequestTimeout("timed out"), None, x.OutcomeUnknown),
    (ccxt.ExchangeNotAvailable("503"), None, x.OutcomeUnknown),
    (ccxt.BadResponse("x"), '{"code":-1007,"msg":"Timeout waiting for response"}', x.OutcomeUnknown),
    (ccxt.BadResponse("binanceusdm garbage"), None, x.MalformedReply),
    (ccxt.BadSymbol("binanceusdm does not have market symbol"), None, x.UnknownSymbol),
    (ccxt.AuthenticationError("bad key"), None, x.OrderRejected),
    (ccxt.DDoSProtection("429"), None, x.RateLimited),
])
async def test_classification(bn, exc, body, expected):
    bn.client.last_http_response = body
    bn.client.last_response_headers = {"Retry-After": "7"}
    err = bn.classify(exc)
    assert isinstance(err, expected), (type(err), expected)
    if isinstance(err, x.RateLimited):
        assert err.retry_after_s == 7.0


async def test_final_errors_are_not_outcome_unknown(bn):
    bn.client.last_http_response = None
    for exc in (ccxt.InsufficientFunds("m"), ccxt.InvalidOrder("m"), ccxt.BadRequest("m")):
        assert not isinstance(bn.classify(exc), x.OutcomeUnknown)
