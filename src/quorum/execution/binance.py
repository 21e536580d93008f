"""BinanceExchange: the `Exchange` protocol over ccxt `binanceusdm` (async).

- Orders go through ccxt's unified `create_order`; protective stops / take-profits are ccxt
  conditional orders (`triggerPrice` / `takeProfitPrice`, reduce-only, `workingType=MARK_PRICE`),
  which ccxt routes to Binance's algo-order API; they are fetched / cancelled with
  `{'trigger': True}`. Every order carries our client id (`clientOrderId`).
- Reads use ccxt's implicit REST methods (positionRisk, balance, leverageBracket, userTrades,
  income, positionSide/dual, leverage, marginType) and are parsed strictly: a reply missing a
  field raises `MalformedReply` naming it.
- Requests are serialised; nothing is sent while a 429/418 Retry-After is running. Order
  creation is never retried, except once after -1021 (clock resync), which the venue rejects
  before execution; a cancel whose outcome is unknown is looked up, not resent. READS (`_read`)
  are retried after Retry-After and on transient failures (5xx, timeouts, resets,
  -1001/-1006/-1007) with capped backoff; when that runs out, `ExchangeUnavailable` names the
  host, the call and the reason. Errors are classified by ccxt exception class and Binance code
  (see `classify`; what replies and errors mean: `quorum.execution.binance_replies`). Every
  answer updates the EXCHANGE_WEIGHT gauge (X-MBX-USED-WEIGHT-1M).
- `demo=True` (BINANCE_DEMO) calls ccxt's `enable_demo_trading(True)`; `base_url`
  (BINANCE_FAPI_URL) then points every fapi endpoint at another host (a fake, a proxy): an
  explicitly set URL wins over the demo hosts. `from_settings` is how `quorum run` builds it.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

import ccxt
import ccxt.async_support as ccxt_async
import structlog

from quorum.domain.models import Bracket, OrderState, SymbolFilters
from quorum.execution.binance_replies import (
    ORDER_STATES,
    ORDER_TYPES,
    ClockSkew,
    NotFound,
    classify_error,
    need,
    number,
    parse_balance,
    parse_brackets,
    parse_filters,
    parse_funding,
    parse_positions,
)
from quorum.execution.exchange import (
    Balance,
    ExchangeError,
    ExchangeUnavailable,
    FundingEntry,
    MalformedReply,
    OrderRejected,
    OrderRequest,
    RateLimited,
    UnknownSymbol,
    VenueFill,
    VenueOrder,
    VenuePosition,
)
from quorum.market.binance_rest import (
    PRODUCTION_FAPI_URL,
    Backoff,
    RequestNoting,
    binance_code,
    configure_endpoints,
    failure_message,
    noting,
    rate_limit_status,
    transient_reason,
)
from quorum.metrics import EXCHANGE_WEIGHT

if TYPE_CHECKING:
    from quorum.config import Settings

log = structlog.get_logger(__name__)

class TradingClient(RequestNoting, ccxt_async.binanceusdm):  # type: ignore[misc]
    """ccxt binanceusdm whose requests can be described after a failure (see binance_rest)."""


class BinanceExchange:
    name = "binance"
    definitive_lookups = False

    def __init__(self, api_key: str, secret: str, *, demo: bool = False, base_url: str | None = None,
                 timeout_ms: int = 10_000, default_retry_after_s: float = 60.0, rate_limit: bool = True,
                 read_retry: Backoff | None = None, sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep,
                 now: Callable[[], float] = time.monotonic) -> None:
        # rate_limit: ccxt's throttle spaces requests by their Binance weight (tests switch it off);
        # read_retry: backoff of reads; sleep/now: the clock of every wait (tests record them)
        self.client = TradingClient({
            "apiKey": api_key, "secret": secret, "enableRateLimit": rate_limit, "timeout": timeout_ms,
            "options": {"warnOnFetchOpenOrdersWithoutSymbol": False, "defaultType": "swap"},
        })
        self.client.has["fetchCurrencies"] = False  # futures only: no spot capital endpoints
        if demo:
            self.client.enable_demo_trading(True)
        if base_url:
            configure_endpoints(self.client, base_url)  # after demo mode: an explicit URL wins
        self.default_retry_after_s = default_retry_after_s
        self.read_retry = read_retry or Backoff()
        self._sleep, self._now = sleep, now
        self._lock = asyncio.Lock()
        self._blocked_until = 0.0
        self._markets: dict[str, dict[str, Any]] = {}
        self._order_cids: dict[str, str] = {}

    @classmethod
    def from_settings(cls, settings: Settings, **overrides: Any) -> BinanceExchange:
        """The venue `quorum run` trades on in live mode: BINANCE_API_KEY/SECRET, BINANCE_DEMO and
        BINANCE_FAPI_URL (left alone at its production default, so demo mode keeps its hosts)."""
        from quorum.config import ConfigError

        key, secret = settings.binance_api_key, settings.binance_api_secret
        if not (key and key.get_secret_value() and secret and secret.get_secret_value()):
            raise ConfigError("BINANCE_API_KEY and BINANCE_API_SECRET are needed to trade on Binance")
        url = settings.binance_fapi_url
        kwargs: dict[str, Any] = {"demo": settings.binance_demo,
                                  "base_url": None if url == PRODUCTION_FAPI_URL else url, **overrides}
        return cls(key.get_secret_value(), secret.get_secret_value(), **kwargs)

    async def close(self) -> None:
        await self.client.close()

    # --- transport ----------------------------------------------------------------------------
    def _note_weight(self) -> None:
        headers = self.client.last_response_headers or {}
        for k, v in headers.items():
            if k.lower() == "x-mbx-used-weight-1m":
                try:
                    EXCHANGE_WEIGHT.set(float(v))
                except ValueError:
                    pass

    def classify(self, exc: BaseException) -> ExchangeError:
        """Map a ccxt exception (class first, Binance code second) to our error classes
        (`binance_replies.classify_error`); a 429/418 holds every request for its Retry-After."""
        err = classify_error(exc, body=self.client.last_http_response, headers=self.client.last_response_headers,
                             default_retry_after_s=self.default_retry_after_s)
        if isinstance(err, RateLimited):
            self._blocked_until = max(self._blocked_until, self._now() + err.retry_after_s)
        return err

    async def _call(self, method: str, *args: Any) -> Any:
        """One request (serialised, after any Retry-After); -1021 → resync clock, retry once."""
        async with self._lock:
            for attempt in (0, 1):
                wait = self._blocked_until - self._now()
                if wait > 0:
                    log.warning("binance.rate_limit_wait", seconds=round(wait, 2))
                    await self._sleep(wait)
                try:
                    result = await getattr(self.client, method)(*args)
                    self._note_weight()
                    return result
                except ccxt.BaseError as exc:
                    self._note_weight()
                    err = self.classify(exc)
                    if isinstance(err, ClockSkew) and attempt == 0:
                        log.warning("binance.clock_resync", error=str(exc))
                        try:
                            await self.client.load_time_difference()
                        except ccxt.BaseError as exc2:
                            raise ExchangeUnavailable(f"time resync failed: {exc2}") from exc2
                        continue
                    raise err from exc
        raise AssertionError("unreachable")

    async def _read(self, method: str, *args: Any) -> Any:
        """A read through `_call`, asked again after a 429/418 (once Retry-After has passed, which
        `_call` waits out) or a transient failure (after `read_retry`'s backoff); when the
        attempts run out, `ExchangeUnavailable` names the host, the call and the reason. Final
        errors (not found, rejected, malformed) are raised at once. Never used for orders."""
        attempts = max(1, self.read_retry.attempts)
        with noting() as note:
            for attempt in range(1, attempts + 1):
                try:
                    return await self._call(method, *args)
                except ExchangeError as err:
                    cause = err.__cause__
                    if cause is None:
                        raise
                    if isinstance(err, RateLimited):
                        reason = f"HTTP {rate_limit_status(cause, note) or 429}"
                    else:
                        reason = transient_reason(cause, note) or ""
                        if not reason:
                            raise
                        if attempt < attempts:
                            wait = self.read_retry.delay(attempt)
                            log.info("binance.read_retry", call=note.call, reason=reason, attempt=attempt,
                                     wait_s=round(wait, 3))
                            await self._sleep(wait)
                    if attempt == attempts:
                        raise ExchangeUnavailable(failure_message("exchange unavailable", self.client, note, cause,
                                                                  reason, attempts),
                                                  code=binance_code(cause)) from cause
        raise AssertionError("unreachable")

    async def _ensure_markets(self) -> None:
        if self._markets:
            return
        await self._read("load_markets")
        self._markets = {m["id"]: m for m in self.client.markets.values() if m.get("linear") and m.get("swap")}

    async def _market(self, symbol: str) -> dict[str, Any]:
        await self._ensure_markets()
        m = self._markets.get(symbol)
        if m is None:
            raise UnknownSymbol(f"symbol {symbol!r} does not exist on Binance USDⓈ-M")
        return m

    # --- parsing ------------------------------------------------------------------------------
    async def _parse_order(self, symbol: str, info: Any) -> VenueOrder:
        if isinstance(info, dict) and "algoId" in info:
            need(info, "algoId", "clientAlgoId", "algoStatus", "symbol", "side", "quantity", what="algo order")
            state = ORDER_STATES.get(str(info["algoStatus"]).upper())
            if state is None:
                raise MalformedReply(f"algo order: unknown status {info['algoStatus']!r}")
            filled, avg = 0.0, None
            if state is OrderState.FILLED:  # triggered: what the spawned market order executed
                actual = info.get("actualOrderId")
                if actual:
                    self._order_cids[str(actual)] = info["clientAlgoId"]
                if info.get("executedQty") not in (None, ""):
                    filled, avg = number(info, "executedQty"), number(info, "avgPrice", 0.0) or None
                elif actual:
                    raw = await self._read("fapiPrivateGetOrder", {"symbol": symbol, "orderId": actual})
                    filled, avg = number(raw, "executedQty"), number(raw, "avgPrice", 0.0) or None
                else:
                    filled = number(info, "quantity")
                if filled <= 0:
                    state = OrderState.EXPIRED  # FINISHED without execution
            kind = ORDER_TYPES.get(str(info.get("orderType", "")).upper(), str(info.get("orderType")).lower())
            return VenueOrder(info["clientAlgoId"], str(info["algoId"]), info["symbol"], info["side"].lower(), kind,
                              number(info, "quantity"), state, filled, avg, number(info, "triggerPrice", 0.0) or None,
                              bool(info.get("reduceOnly")), int(info.get("updateTime") or info.get("createTime") or 0))
        need(info, "orderId", "clientOrderId", "status", "symbol", "side", "origQty", what="order")
        state = ORDER_STATES.get(str(info["status"]).upper())
        if state is None:
            raise MalformedReply(f"order: unknown status {info['status']!r}")
        self._order_cids[str(info["orderId"])] = info["clientOrderId"]
        avg = number(info, "avgPrice", 0.0)
        return VenueOrder(info["clientOrderId"], str(info["orderId"]), info["symbol"], info["side"].lower(),
                          ORDER_TYPES.get(str(info.get("origType") or info.get("type", "")).upper(), "market"),
                          number(info, "origQty"), state, number(info, "executedQty", 0.0), avg or None,
                          number(info, "stopPrice", 0.0) or None, bool(info.get("reduceOnly")),
                          int(info.get("updateTime") or info.get("time") or 0))

    # --- orders -------------------------------------------------------------------------------
    async def create_order(self, request: OrderRequest) -> VenueOrder:
        m = await self._market(request.symbol)
        params: dict[str, Any] = {"clientOrderId": request.client_order_id}
        if request.reduce_only:
            params["reduceOnly"] = True
        if request.type == "stop_market":
            params.update(triggerPrice=request.stop_price, workingType="MARK_PRICE")
        elif request.type == "take_profit_market":
            params.update(takeProfitPrice=request.stop_price, workingType="MARK_PRICE")
        elif request.type != "market":
            raise OrderRejected(f"order type {request.type!r} is not supported")
        order = await self._call("create_order", m["symbol"], "market", request.order_side, request.quantity, None,
                                 params)
        return await self._parse_order(request.symbol, order.get("info") if isinstance(order, dict) else order)

    async def fetch_order(self, symbol: str, client_order_id: str, *, conditional: bool = False) -> VenueOrder | None:
        m = await self._market(symbol)
        try:
            order = await self._read("fetch_order", None, m["symbol"],
                                     {"clientOrderId": client_order_id, "trigger": conditional})
        except NotFound:
            if not conditional:
                return None
            # not in the algo book: the id may belong to a regular order
            try:
                order = await self._read("fetch_order", None, m["symbol"], {"clientOrderId": client_order_id})
            except NotFound:
                return None
        return await self._parse_order(symbol, order.get("info"))

    async def cancel_order(self, symbol: str, client_order_id: str, *, conditional: bool = False) -> VenueOrder | None:
        m = await self._market(symbol)
        try:
            reply = await self._call("cancel_order", None, m["symbol"],
                                     {"clientOrderId": client_order_id, "trigger": conditional})
        except NotFound:  # "Unknown order sent.": gone or already final (e.g. filled meanwhile)
            return await self.fetch_order(symbol, client_order_id, conditional=conditional)
        except OrderRejected as exc:
            if exc.code != "-2011":  # -2011 = already final (e.g. filled while we cancelled)
                raise
            return await self.fetch_order(symbol, client_order_id, conditional=conditional)
        info = reply.get("info") if isinstance(reply, dict) else None
        if conditional or not isinstance(info, dict) or "status" not in info:
            return await self.fetch_order(symbol, client_order_id, conditional=conditional)
        return await self._parse_order(symbol, info)

    async def fetch_open_orders(self, symbol: str | None = None) -> list[VenueOrder]:
        await self._ensure_markets()
        sym = (await self._market(symbol))["symbol"] if symbol else None
        out = []
        for params in ({}, {"trigger": True}):
            for o in await self._read("fetch_open_orders", sym, None, None, params):
                info = o.get("info")
                out.append(await self._parse_order(info.get("symbol", symbol or ""), info))
        return out

    # --- account ------------------------------------------------------------------------------
    async def fetch_positions(self) -> list[VenuePosition]:
        return parse_positions(await self._read("fapiPrivateV2GetPositionRisk", {}))

    async def balance(self) -> Balance:
        return parse_balance(await self._read("fapiPrivateV2GetBalance", {}))

    async def fetch_fills(self, symbol: str, since_ms: int | None = None) -> list[VenueFill]:
        await self._market(symbol)
        params: dict[str, Any] = {"symbol": symbol, "limit": 1000}
        # Binance serves at most 7 days from startTime: older starts ask for the latest trades
        if since_ms is not None and since_ms > time.time() * 1000 - 6 * 86_400_000:
            params["startTime"] = max(since_ms, 0)
        rows = await self._read("fapiPrivateGetUserTrades", params)
        if any(str(r.get("orderId")) not in self._order_cids for r in rows if isinstance(r, dict)):
            # trades of triggered stops/TPs carry the spawned order's id: map it to the algo order
            algo_params: dict[str, Any] = {"symbol": symbol}
            if "startTime" in params:
                algo_params["startTime"] = params["startTime"]
            for a in await self._read("fapiPrivateGetAllAlgoOrders", algo_params) or []:
                if isinstance(a, dict) and a.get("actualOrderId") and a.get("clientAlgoId"):
                    self._order_cids[str(a["actualOrderId"])] = a["clientAlgoId"]
        out = []
        for r in rows:
            need(r, "id", "orderId", "side", "qty", "price", what="userTrades")
            oid = str(r["orderId"])
            if oid not in self._order_cids:
                try:
                    raw = await self._read("fapiPrivateGetOrder", {"symbol": symbol, "orderId": oid})
                    self._order_cids[oid] = raw.get("clientOrderId") or f"venue-{oid}"
                except NotFound:
                    self._order_cids[oid] = f"venue-{oid}"
            out.append(VenueFill(str(r["id"]), self._order_cids[oid], oid, symbol, str(r["side"]).lower(),
                                 number(r, "qty"), number(r, "price"), number(r, "commission", 0.0),
                                 int(r.get("time") or 0), "maker" if r.get("maker") else "taker",
                                 number(r, "realizedPnl", 0.0)))
        return out

    async def funding_history(self, symbol: str | None = None, since_ms: int | None = None) -> list[FundingEntry]:
        params: dict[str, Any] = {"incomeType": "FUNDING_FEE", "limit": 1000}
        if symbol:
            params["symbol"] = symbol
        if since_ms is not None:
            params["startTime"] = since_ms
        return parse_funding(await self._read("fapiPrivateGetIncome", params))

    async def symbol_filters(self, symbol: str) -> SymbolFilters:
        return parse_filters(symbol, (await self._market(symbol)).get("info") or {})

    async def leverage_brackets(self, symbol: str) -> tuple[Bracket, ...]:
        await self._market(symbol)
        return parse_brackets(await self._read("fapiPrivateGetLeverageBracket", {"symbol": symbol}))

    async def set_leverage(self, symbol: str, leverage: int) -> None:
        await self._market(symbol)
        await self._call("fapiPrivatePostLeverage", {"symbol": symbol, "leverage": int(leverage)})

    async def set_margin_mode(self, symbol: str, mode: str = "isolated") -> None:
        await self._market(symbol)
        try:
            await self._call("fapiPrivatePostMarginType",
                             {"symbol": symbol, "marginType": "ISOLATED" if mode == "isolated" else "CROSSED"})
        except ExchangeError as exc:
            if exc.code != "-4046":  # "No need to change margin type."
                raise

    async def check_position_mode(self) -> None:
        reply = await self._read("fapiPrivateGetPositionSideDual", {})
        need(reply, "dualSidePosition", what="positionSide/dual")
        if reply["dualSidePosition"] in (True, "true"):
            raise ExchangeError("the account is in hedge mode; Quorum needs one-way position mode")


__all__ = ["BinanceExchange"]
