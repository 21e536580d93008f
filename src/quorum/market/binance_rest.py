"""Binance USDⓈ-M REST plumbing shared by market data, `quorum download` and the trading
adapter: where the endpoints are, which failed READS are worth retrying, and how.

- `configure_endpoints` points a ccxt / ccxt.pro binanceusdm at other hosts
  (BINANCE_FAPI_URL / BINANCE_FSTREAM_URL: fakes, proxies, mirrors).
- Clients built on `RequestNoting` record each request's method, URL, status and headers in
  the `RequestNote` of the current `noting()` scope (a context variable, so concurrent calls do
  not mix), so a failure can be told as `127.0.0.1:8123 GET /fapi/v1/klines → HTTP 503` —
  never with a query string (signatures) or credentials.
- `transient_reason` says whether a failed read may be retried: HTTP 5xx, timeouts,
  connection failures, Binance -1001 (disconnected), -1006 / -1007 (backend timeout, status
  unknown). 429/418 are rate limits (`rate_limit_status`): the caller waits Retry-After.
- `Backoff`: capped exponential backoff with jitter and a bounded number of attempts.
- `budgeted_call`: one market-data read within a `WeightBudget`, retried as above; when the
  attempts run out it raises `MarketDataUnavailable` naming host, call and reason.

Only reads go through the retry helpers: an order whose outcome is unknown is looked up by
its client id (quorum.execution.orders), never sent again.
"""

from __future__ import annotations

import random
import re
from collections.abc import Awaitable, Callable, Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any, TypeVar
from urllib.parse import urlsplit

import aiohttp
import ccxt
import structlog

from quorum.execution.exchange import ExchangeUnavailable
from quorum.market.ratelimit import WeightBudget, retry_after_of

log = structlog.get_logger(__name__)
T = TypeVar("T")

PRODUCTION_FAPI_URL = "https://fapi.binance.com"
PRODUCTION_FSTREAM_URL = "wss://fstream.binance.com"
# Binance codes after which a read may simply be asked again
TRANSIENT_CODES = frozenset({"-1001", "-1006", "-1007"})
_HOST = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://[^/]+")
_STATUS_IN_MESSAGE = re.compile(r"\b(?:GET|POST|PUT|DELETE)\s+\S+\s+(\d{3})\b")
_CODE_IN_MESSAGE = re.compile(r'"code"\s*:\s*"?(-?\d+)')


class MarketDataUnavailable(ExchangeUnavailable):
    """A market-data read kept failing (transient errors or rate limits) after its retries."""

    error_class = "market_data_unavailable"


# --- endpoints -------------------------------------------------------------------------------
def linear_ws_url(fstream_url: str) -> str:
    """ccxt.pro's linear websocket base for a BINANCE_FSTREAM_URL (ccxt turns `/ws` into
    `/market/ws` for klines)."""
    return f"{fstream_url.rstrip('/')}/ws"


def configure_endpoints(exchange: Any, rest_root: str | None, ws_root: str | None = None) -> None:
    """Point a ccxt (pro) binanceusdm at other hosts, e.g. a fake on 127.0.0.1.

    `rest_root` (scheme, host and an optional path prefix) replaces the scheme and host of every
    fapi* URL — production or demo alike, so call it after `enable_demo_trading`; `ws_root`
    (e.g. `ws://127.0.0.1:PORT/ws`, see `linear_ws_url`) becomes the linear websocket base.
    """
    api = dict(exchange.urls["api"])
    if rest_root:
        base = rest_root.rstrip("/")
        for key, url in list(api.items()):
            if key.startswith("fapi") and isinstance(url, str):
                api[key] = _HOST.sub(lambda _m: base, url, count=1)
    if ws_root and isinstance(api.get("ws"), dict):
        ws = dict(api["ws"])
        ws["linear"] = ws_root.rstrip("/")
        api["ws"] = ws
    exchange.urls["api"] = api


def rest_host(exchange: Any) -> str:
    """host[:port] of the exchange's USDⓈ-M REST endpoint (no credentials)."""
    url = (getattr(exchange, "urls", None) or {}).get("api", {}).get("fapiPublic") or ""
    return _host_of(url) or "binance"


def _host_of(url: str) -> str | None:
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return None
    if not parts.hostname:
        return None
    return f"{parts.hostname}:{port}" if port else parts.hostname


# --- what happened to a request --------------------------------------------------------------
@dataclass
class RequestNote:
    """The last request made in a `noting()` scope: method, URL, HTTP status, response headers."""

    method: str | None = None
    url: str | None = None
    status: int | None = None
    headers: Mapping[str, str] | None = None

    @property
    def host(self) -> str | None:
        return _host_of(self.url) if self.url else None

    @property
    def call(self) -> str | None:
        """`GET /fapi/v1/klines`: method and path, never the query string."""
        if not self.url:
            return None
        return f"{self.method or 'GET'} {urlsplit(self.url).path or '/'}"


_NOTE: ContextVar[RequestNote | None] = ContextVar("quorum_binance_request", default=None)


@contextmanager
def noting() -> Iterator[RequestNote]:
    """Collect what the requests made inside the block did (see `RequestNoting`)."""
    note = RequestNote()
    token = _NOTE.set(note)
    try:
        yield note
    finally:
        _NOTE.reset(token)


class RequestNoting:
    """Mixin for a ccxt exchange class: records every REST request in the current `RequestNote`."""

    async def fetch(self, url: str, method: str = "GET", headers: Any = None, body: Any = None) -> Any:
        note = _NOTE.get()
        if note is not None:
            note.method, note.url, note.status, note.headers = method, url, None, None
        return await super().fetch(url, method, headers, body)  # type: ignore[misc]

    def on_rest_response(self, code: Any, reason: Any, url: str, method: str, response_headers: Any,
                         response_body: Any, request_headers: Any, request_body: Any) -> Any:
        note = _NOTE.get()
        if note is not None:
            try:
                note.status = int(code)
            except (TypeError, ValueError):
                note.status = None
            note.headers = response_headers
        return super().on_rest_response(code, reason, url, method, response_headers,  # type: ignore[misc]
                                        response_body, request_headers, request_body)


# --- classification --------------------------------------------------------------------------
def http_status(exc: BaseException, note: RequestNote | None = None) -> int | None:
    """The HTTP status of the failed request, when it got an answer."""
    if note is not None and note.status is not None:
        return note.status
    m = _STATUS_IN_MESSAGE.search(str(exc))
    return int(m.group(1)) if m else None


def binance_code(exc: BaseException) -> str | None:
    m = _CODE_IN_MESSAGE.search(str(exc))
    return m.group(1) if m else None


def rate_limit_status(exc: BaseException, note: RequestNote | None = None) -> int | None:
    """418 or 429 when `exc` is Binance's rate limiting (ban or back-off), else None."""
    if not isinstance(exc, ccxt.DDoSProtection | ccxt.RateLimitExceeded):
        return None
    status = http_status(exc, note)
    if status in (418, 429):
        return status
    return 418 if " 418 " in str(exc) else 429


def transient_reason(exc: BaseException, note: RequestNote | None = None) -> str | None:
    """Why a failed READ may be asked again ("HTTP 503", "timeout", "connection failed",
    "HTTP 500 Binance -1001"), or None when the failure is final or a rate limit."""
    if not isinstance(exc, ccxt.BaseError) or isinstance(
            exc, ccxt.DDoSProtection | ccxt.RateLimitExceeded | ccxt.InvalidNonce):
        return None
    status = http_status(exc, note)
    code = binance_code(exc)
    if code in TRANSIENT_CODES:
        return f"HTTP {status} Binance {code}" if status else f"Binance {code}"
    if status is not None and status >= 500:
        return f"HTTP {status}"
    if isinstance(exc, ccxt.RequestTimeout):
        return "timeout"
    if status is not None:
        return None  # an answered 4xx is final
    if isinstance(exc, ccxt.NetworkError) or isinstance(exc.__cause__, aiohttp.ClientError | OSError):
        return "connection failed"
    return None


def failure_message(what: str, exchange: Any, note: RequestNote, exc: BaseException, reason: str,
                    attempts: int) -> str:
    """`market data unavailable: 127.0.0.1:8123 GET /fapi/v1/klines → HTTP 503
    (ExchangeNotAvailable) after 5 attempts` — safe to log and show."""
    return (f"{what}: {note.host or rest_host(exchange)} {note.call or 'request'} → {reason} "
            f"({type(exc).__name__}) after {attempts} attempts")


@dataclass
class Backoff:
    """Capped exponential backoff with jitter: after the n-th failure wait
    `min(max_s, initial_s·2^(n-1))`, less up to `jitter` of it at random; `attempts` in all."""

    attempts: int = 5
    initial_s: float = 0.5
    max_s: float = 8.0
    jitter: float = 0.5
    rng: random.Random = field(default_factory=random.Random, repr=False)

    def delay(self, failures: int) -> float:
        base = min(self.max_s, self.initial_s * 2 ** max(0, failures - 1))
        return float(base * (1.0 - self.jitter * self.rng.random()))


async def budgeted_call(exchange: Any, budget: WeightBudget, weight: int, call: Callable[[], Awaitable[T]],
                        backoff: Backoff, *, attempts: int | None = None, what: str = "market data") -> T:
    """One market-data READ within `budget`: 429/418 block the budget for Retry-After (at
    least), transient failures wait `backoff`; both are retried up to `attempts`, then
    `MarketDataUnavailable` says which host, which call and why. Other errors propagate."""
    n = max(1, attempts or backoff.attempts)
    with noting() as note:
        failure: tuple[BaseException, str] | None = None
        for attempt in range(1, n + 1):
            await budget.acquire(weight)
            try:
                result = await call()
            except ccxt.BaseError as exc:
                headers = note.headers if note.headers is not None else getattr(exchange, "last_response_headers",
                                                                                None)
                budget.observe(headers)
                status = rate_limit_status(exc, note)
                if status is not None:
                    budget.penalize(status, retry_after_of(headers))  # the next acquire() waits it out
                    failure = (exc, f"HTTP {status}")
                    continue
                reason = transient_reason(exc, note)
                if reason is None:
                    raise
                failure = (exc, reason)
                if attempt < n:
                    wait = backoff.delay(attempt)
                    log.info("binance_read_retry", host=note.host or rest_host(exchange), call=note.call,
                             reason=reason, attempt=attempt, wait_s=round(wait, 3))
                    await budget.pause(wait)
                continue
            budget.observe(note.headers if note.headers is not None else getattr(exchange, "last_response_headers",
                                                                                 None))
            budget.succeeded()
            return result
        assert failure is not None
        err, reason = failure
        raise MarketDataUnavailable(failure_message(f"{what} unavailable", exchange, note, err, reason, n),
                                    code=binance_code(err)) from err


__all__ = [
    "PRODUCTION_FAPI_URL", "PRODUCTION_FSTREAM_URL", "TRANSIENT_CODES", "Backoff", "MarketDataUnavailable",
    "RequestNote", "RequestNoting", "budgeted_call", "configure_endpoints", "failure_message", "linear_ws_url",
    "noting", "rate_limit_status", "rest_host", "transient_reason",
]
