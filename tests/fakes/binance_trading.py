"""A wire-level fake of Binance USDⓈ-M futures trading on 127.0.0.1 (ephemeral port).

Speaks the REST paths the real ccxt `binanceusdm` client calls (`/fapi/v1/...`, `/fapi/v2/...`,
`/fapi/v3/...`), including the algo-order API that conditional orders use since 2025-12:
POST/GET/DELETE `/fapi/v1/algoOrder`, GET `/fapi/v1/openAlgoOrders`. A STOP_MARKET sent to
`/fapi/v1/order` is refused with -4120 as the real venue does. HMAC signatures are accepted
without checking. Every request is logged (`requests`).

Venue model: one-way positions, isolated margin, market orders fill at the mark price with a
0.05 % taker fee; conditional orders trigger when `set_mark()` crosses them (a triggered algo
order becomes a regular MARKET order with a venue-generated client id; the algo order turns
FINISHED with `actualOrderId`, `executedQty`, `avgPrice`; GET `/fapi/v1/allAlgoOrders` lists
them). `apply_funding()` books FUNDING_FEE income (positive rate: longs pay).

Fault injection (`inject(Fault(...))`, consumed in order per path/method):
- `timeout`: execute, then answer after `delay` s (the client times out first);
- `status`: answer HTTP `status` (5xx, 429, 418) with `headers` (Retry-After); `execute=True`
  executes the request before failing;
- `code`: answer `code_status` (400 unless set, e.g. 500 for -1001) {"code": code, "msg": msg}
  (-1021, -2019, -4164, -2021, -4120, -1001, -1006, -1007 ...), `execute=True` executes first;
- `partial`: the next market order fills only `fraction` of its size (then EXPIRED);
- `fill_after_cancel`: the next cancel finds the order already filled (fill, then -2011);
- `missing_fields`: execute, then answer with `drop` keys removed from the JSON reply.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote_plus

from aiohttp import web

from tests.fakes.loopback import serve_on_loopback

FEE = 0.0005


@dataclass
class Fault:
    kind: str
    path: str = "/fapi/v1/order"
    method: str = "POST"
    status: int = 500
    code: int = 0
    msg: str = "fault"
    headers: dict[str, str] = field(default_factory=dict)
    execute: bool = False
    delay: float = 3.0
    fraction: float = 0.5
    drop: tuple[str, ...] = ()
    times: int = 1
    code_status: int = 400


@dataclass
class SymbolSpec:
    tick: str
    step: str
    min_qty: str
    min_notional: str
    brackets: list[dict[str, Any]]


DEFAULT_BRACKETS = [
    {"bracket": 1, "initialLeverage": 50, "notionalCap": 50_000, "notionalFloor": 0, "maintMarginRatio": 0.004,
     "cum": 0.0},
    {"bracket": 2, "initialLeverage": 20, "notionalCap": 250_000, "notionalFloor": 50_000,
     "maintMarginRatio": 0.005, "cum": 50.0},
    {"bracket": 3, "initialLeverage": 10, "notionalCap": 1_000_000, "notionalFloor": 250_000,
     "maintMarginRatio": 0.01, "cum": 1_300.0},
]


def _num(x: float) -> str:
    return f"{x:.8f}".rstrip("0").rstrip(".") or "0"


class FakeBinanceTrading:
    def __init__(self, wallet: float = 10_000.0) -> None:
        self.symbols = {
            "BTCUSDT": SymbolSpec("0.10", "0.001", "0.001", "100", DEFAULT_BRACKETS),
            "ETHUSDT": SymbolSpec("0.01", "0.001", "0.001", "20", DEFAULT_BRACKETS),
        }
        self.mark = {"BTCUSDT": 50_000.0, "ETHUSDT": 3_000.0}
        self.wallet = wallet
        self.leverage: dict[str, int] = {}
        self.margin_type: dict[str, str] = {}
        self.dual_side = False
        self.positions: dict[str, dict[str, float]] = {}  # symbol -> {amt (signed), entry, margin}
        self.orders: dict[int, dict[str, Any]] = {}
        self.algo: dict[int, dict[str, Any]] = {}
        self.trades: list[dict[str, Any]] = []
        self.income: list[dict[str, Any]] = []
        self.faults: list[Fault] = []
        self.requests: list[tuple[str, str, dict[str, str]]] = []
        self.request_times: list[float] = []
        # awaited before a request is processed (tests use it to look at the database then)
        self.on_request: Callable[[str, str, dict[str, str]], Awaitable[None]] | None = None
        self.time_offset_ms = 0
        self._next_id = 1000
        self._runner: web.AppRunner | None = None
        self.port = 0
        self._weight: list[float] = []

    # --- lifecycle --------------------------------------------------------------------------
    async def start(self) -> str:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner, self.port = await serve_on_loopback(app, handle_signals=False, shutdown_timeout=0.1)
        return self.base_url

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def stop(self) -> None:
        if self._runner:
            await self._runner.cleanup()

    def inject(self, *faults: Fault) -> None:
        self.faults.extend(faults)

    def calls(self, path: str, method: str | None = None) -> list[dict[str, str]]:
        return [p for m, pth, p in self.requests if pth == path and (method is None or m == method)]

    def _id(self) -> int:
        self._next_id += 1
        return self._next_id

    def _take_fault(self, method: str, path: str, kinds: tuple[str, ...]) -> Fault | None:
        for f in self.faults:
            if f.kind in kinds and f.path == path and f.method == method:
                f.times -= 1
                if f.times <= 0:
                    self.faults.remove(f)
                return f
        return None

    # --- HTTP -------------------------------------------------------------------------------
    async def _handle(self, request: web.Request) -> web.Response:
        params = dict(request.query)
        if request.can_read_body:
            body = await request.text()
            for part in body.split("&"):
                if "=" in part:
                    k, _, v = part.partition("=")
                    params[unquote_plus(k)] = unquote_plus(v)
        method, path = request.method, request.path
        if self.on_request is not None:
            await self.on_request(method, path, params)
        self.requests.append((method, path, params))
        now = time.time()
        self.request_times.append(time.monotonic())
        self._weight = [t for t in self._weight if now - t < 60] + [now]
        headers = {"X-MBX-USED-WEIGHT-1M": str(len(self._weight))}
        fault = self._take_fault(method, path, ("timeout", "status", "code", "missing_fields"))
        if fault and not fault.execute and fault.kind in ("status", "code"):
            return self._error(fault, headers)
        try:
            status, payload = self._route(method, path, params)
        except _BinanceError as e:
            return web.json_response({"code": e.code, "msg": e.msg}, status=e.status, headers=headers)
        if fault:
            if fault.kind == "timeout":
                await asyncio.sleep(fault.delay)
            elif fault.kind in ("status", "code"):
                return self._error(fault, headers)
            elif fault.kind == "missing_fields" and isinstance(payload, dict):
                payload = {k: v for k, v in payload.items() if k not in fault.drop}
        return web.json_response(payload, status=status, headers=headers)

    @staticmethod
    def _error(f: Fault, headers: dict[str, str]) -> web.Response:
        h = dict(headers, **f.headers)
        if f.kind == "status":
            return web.Response(status=f.status, text=f.msg, headers=h)
        return web.json_response({"code": f.code, "msg": f.msg}, status=f.code_status, headers=h)

    def _route(self, method: str, path: str, p: dict[str, str]) -> tuple[int, Any]:
        if path == "/fapi/v1/time":
            return 200, {"serverTime": int(time.time() * 1000) + self.time_offset_ms}
        if path == "/fapi/v1/exchangeInfo":
            return 200, self._exchange_info()
        if "signature" in p or "timestamp" in p:
            ts = int(p.get("timestamp", "0"))
            server = int(time.time() * 1000) + self.time_offset_ms
            if abs(ts - server) > int(p.get("recvWindow", "5000")):
                raise _BinanceError(-1021, "Timestamp for this request is outside of the recvWindow.")
        key = (method, path)
        handlers = {
            ("GET", "/fapi/v1/positionSide/dual"): lambda: {"dualSidePosition": self.dual_side},
            ("POST", "/fapi/v1/leverage"): lambda: self._set_leverage(p),
            ("POST", "/fapi/v1/marginType"): lambda: self._set_margin_type(p),
            ("GET", "/fapi/v1/leverageBracket"): lambda: self._brackets(p),
            ("GET", "/fapi/v2/balance"): self._balance,
            ("GET", "/fapi/v3/balance"): self._balance,
            ("GET", "/fapi/v2/positionRisk"): lambda: self._position_risk(p),
            ("GET", "/fapi/v3/positionRisk"): lambda: self._position_risk(p),
            ("POST", "/fapi/v1/order"): lambda: self._new_order(p),
            ("GET", "/fapi/v1/order"): lambda: self._query_order(p),
            ("DELETE", "/fapi/v1/order"): lambda: self._cancel_order(p),
            ("GET", "/fapi/v1/openOrders"): lambda: self._open_regular(p),
            ("POST", "/fapi/v1/algoOrder"): lambda: self._new_algo(p),
            ("GET", "/fapi/v1/algoOrder"): lambda: self._query_algo(p),
            ("DELETE", "/fapi/v1/algoOrder"): lambda: self._cancel_algo(p),
            ("GET", "/fapi/v1/allAlgoOrders"): lambda: [dict(a) for a in self.algo.values()
                                                        if a["symbol"] == p.get("symbol")],
            ("GET", "/fapi/v1/openAlgoOrders"): lambda: [o for o in self.algo.values() if o["algoStatus"] == "NEW"
                                                         and p.get("symbol") in (None, o["symbol"])],
            ("GET", "/fapi/v1/userTrades"): lambda: [t for t in self.trades if t["symbol"] == p.get("symbol")
                                                     and t["time"] >= int(p.get("startTime", "0"))],
            ("GET", "/fapi/v1/income"): lambda: [i for i in self.income if p.get("symbol") in (None, i["symbol"])
                                                 and i["time"] >= int(p.get("startTime", "0"))],
        }
        h = handlers.get(key)
        if h is None:
            return 404, {"code": -1000, "msg": f"fake: no route {method} {path}"}
        return 200, h()

    def _open_regular(self, p: dict[str, str]) -> list[dict[str, Any]]:
        return [o for o in self.orders.values()
                if o["status"] in ("NEW", "PARTIALLY_FILLED") and p.get("symbol") in (None, o["symbol"])]

    # --- public -----------------------------------------------------------------------------
    def _exchange_info(self) -> dict[str, Any]:
        syms = []
        for s, spec in self.symbols.items():
            syms.append({
                "symbol": s, "pair": s, "contractType": "PERPETUAL", "deliveryDate": 4133404800000,
                "onboardDate": 1569398400000, "status": "TRADING", "baseAsset": s[:-4], "quoteAsset": "USDT",
                "marginAsset": "USDT", "pricePrecision": 2, "quantityPrecision": 3, "baseAssetPrecision": 8,
                "quotePrecision": 8, "underlyingType": "COIN", "underlyingSubType": [], "settlePlan": 0,
                "triggerProtect": "0.0500", "liquidationFee": "0.012500", "marketTakeBound": "0.05",
                "filters": [
                    {"filterType": "PRICE_FILTER", "minPrice": "0.10", "maxPrice": "4529764", "tickSize": spec.tick},
                    {"filterType": "LOT_SIZE", "stepSize": spec.step, "maxQty": "1000", "minQty": spec.min_qty},
                    {"filterType": "MARKET_LOT_SIZE", "stepSize": spec.step, "maxQty": "120", "minQty": spec.min_qty},
                    {"filterType": "MAX_NUM_ORDERS", "limit": 200},
                    {"filterType": "MIN_NOTIONAL", "notional": spec.min_notional},
                ],
                "orderTypes": ["LIMIT", "MARKET", "STOP", "STOP_MARKET", "TAKE_PROFIT", "TAKE_PROFIT_MARKET",
                               "TRAILING_STOP_MARKET"],
                "timeInForce": ["GTC", "IOC", "FOK", "GTX"],
            })
        return {"timezone": "UTC", "serverTime": int(time.time() * 1000), "futuresType": "U_MARGINED",
                "rateLimits": [], "exchangeFilters": [], "assets": [{"asset": "USDT", "marginAvailable": True}],
                "symbols": syms}

    # --- account ----------------------------------------------------------------------------
    def _sym(self, p: dict[str, str]) -> str:
        s = p.get("symbol", "")
        if s not in self.symbols:
            raise _BinanceError(-1121, "Invalid symbol.")
        return s

    def _set_leverage(self, p: dict[str, str]) -> dict[str, Any]:
        s, lev = self._sym(p), int(p["leverage"])
        if lev < 1 or lev > self.symbols[s].brackets[0]["initialLeverage"]:
            raise _BinanceError(-4028, f"Leverage {lev} is not valid")
        self.leverage[s] = lev
        return {"leverage": lev, "maxNotionalValue": "50000", "symbol": s}

    def _set_margin_type(self, p: dict[str, str]) -> dict[str, Any]:
        s, mt = self._sym(p), p["marginType"].upper()
        if self.margin_type.get(s, "CROSSED") == mt:
            raise _BinanceError(-4046, "No need to change margin type.")
        self.margin_type[s] = mt
        return {"code": 200, "msg": "success"}

    def _brackets(self, p: dict[str, str]) -> list[dict[str, Any]]:
        if "symbol" in p:
            s = self._sym(p)
            return [{"symbol": s, "brackets": self.symbols[s].brackets}]
        return [{"symbol": s, "brackets": spec.brackets} for s, spec in self.symbols.items()]

    def _used_margin(self) -> float:
        return sum(pos["margin"] for pos in self.positions.values())

    def _balance(self) -> list[dict[str, Any]]:
        upnl = sum((self.mark[s] - pos["entry"]) * pos["amt"] for s, pos in self.positions.items())
        avail = self.wallet - self._used_margin() + min(upnl, 0)
        return [{"accountAlias": "fake", "asset": "USDT", "balance": _num(self.wallet),
                 "crossWalletBalance": _num(self.wallet), "crossUnPnl": _num(upnl),
                 "availableBalance": _num(avail), "maxWithdrawAmount": _num(avail), "marginAvailable": True,
                 "updateTime": int(time.time() * 1000)}]

    def _position_risk(self, p: dict[str, str]) -> list[dict[str, Any]]:
        out = []
        for s, pos in self.positions.items():
            if p.get("symbol") not in (None, s):
                continue
            out.append({"symbol": s, "positionAmt": _num(pos["amt"]), "entryPrice": _num(pos["entry"]),
                        "breakEvenPrice": _num(pos["entry"]), "markPrice": _num(self.mark[s]),
                        "unRealizedProfit": _num((self.mark[s] - pos["entry"]) * pos["amt"]),
                        "liquidationPrice": _num(pos.get("liq", 0.0)), "leverage": str(self.leverage.get(s, 20)),
                        "maxNotionalValue": "50000", "marginType": "isolated",
                        "isolatedMargin": _num(pos["margin"]), "isAutoAddMargin": "false", "positionSide": "BOTH",
                        "notional": _num(pos["amt"] * self.mark[s]), "isolatedWallet": _num(pos["margin"]),
                        "updateTime": int(time.time() * 1000)})
        return out

    # --- matching ---------------------------------------------------------------------------
    def _order_json(self, o: dict[str, Any]) -> dict[str, Any]:
        return dict(o)

    def _fill(self, o: dict[str, Any], qty: float, price: float) -> None:
        s = o["symbol"]
        sign = 1 if o["side"] == "BUY" else -1
        pos = self.positions.get(s)
        realized = 0.0
        fee = qty * price * FEE
        if pos is None or pos["amt"] * sign > 0:
            lev = self.leverage.get(s, 20)
            margin = qty * price / lev
            if self.wallet - self._used_margin() < margin + fee:
                raise _BinanceError(-2019, "Margin is insufficient.")
            if pos is None:
                pos = self.positions[s] = {"amt": 0.0, "entry": price, "margin": 0.0}
            new_amt = pos["amt"] + sign * qty
            pos["entry"] = (pos["entry"] * abs(pos["amt"]) + price * qty) / abs(new_amt)
            pos["amt"], pos["margin"] = new_amt, pos["margin"] + margin
        else:
            qty = min(qty, abs(pos["amt"]))
            realized = (price - pos["entry"]) * qty * (-sign)
            pos["margin"] -= pos["margin"] * qty / abs(pos["amt"])
            pos["amt"] += sign * qty
            if abs(pos["amt"]) < 1e-12:
                del self.positions[s]
        self.wallet += realized - fee
        self.trades.append({"buyer": sign > 0, "commission": _num(fee), "commissionAsset": "USDT",
                            "id": self._id(), "maker": False, "orderId": o["orderId"], "price": _num(price),
                            "qty": _num(qty), "quoteQty": _num(qty * price), "realizedPnl": _num(realized),
                            "side": o["side"], "positionSide": "BOTH", "symbol": s,
                            "time": int(time.time() * 1000)})
        done = float(o["executedQty"]) + qty
        avg = (float(o["avgPrice"]) * float(o["executedQty"]) + price * qty) / done
        o.update(executedQty=_num(done), cumQty=_num(done), avgPrice=_num(avg), cumQuote=_num(done * avg),
                 updateTime=int(time.time() * 1000))
        o["status"] = "FILLED" if done >= float(o["origQty"]) - 1e-12 else "PARTIALLY_FILLED"

    def _check_qty(self, s: str, qty: float) -> None:
        step = float(self.symbols[s].step)
        if abs(round(qty / step) * step - qty) > 1e-9:
            raise _BinanceError(-1111, "Precision is over the maximum defined for this asset.")
        if qty < float(self.symbols[s].min_qty):
            raise _BinanceError(-4003, "Quantity less than or equal to zero.")

    def _new_order(self, p: dict[str, str]) -> dict[str, Any]:
        s = self._sym(p)
        typ = p.get("type", "")
        if typ in ("STOP_MARKET", "TAKE_PROFIT_MARKET", "STOP", "TAKE_PROFIT", "TRAILING_STOP_MARKET"):
            raise _BinanceError(-4120, "Order type not supported for this endpoint. Please use the Algo Order API "
                                       "endpoints instead.")
        cid = p.get("newClientOrderId") or f"fake{self._id()}"
        if any(o["clientOrderId"] == cid and o["status"] in ("NEW", "PARTIALLY_FILLED") for o in self.orders.values()):
            raise _BinanceError(-4116, "ClientOrderId is duplicated.")
        qty = float(p["quantity"])
        self._check_qty(s, qty)
        reduce = p.get("reduceOnly", "false").lower() == "true"
        pos = self.positions.get(s)
        sign = 1 if p["side"] == "BUY" else -1
        if reduce and (pos is None or pos["amt"] * sign > 0):
            raise _BinanceError(-2022, "ReduceOnly Order is rejected.")
        if not reduce and qty * self.mark[s] < float(self.symbols[s].min_notional):
            raise _BinanceError(-4164, f"Order's notional must be no smaller than {self.symbols[s].min_notional} "
                                       "(unless you choose reduce only).")
        oid = self._id()
        now = int(time.time() * 1000)
        o = {"orderId": oid, "symbol": s, "status": "NEW", "clientOrderId": cid, "price": "0", "avgPrice": "0",
             "origQty": _num(qty), "executedQty": "0", "cumQty": "0", "cumQuote": "0", "timeInForce": "GTC",
             "type": "MARKET", "reduceOnly": reduce, "closePosition": False, "side": p["side"],
             "positionSide": "BOTH", "stopPrice": "0", "workingType": "CONTRACT_PRICE", "priceProtect": False,
             "origType": "MARKET", "priceMatch": "NONE", "selfTradePreventionMode": "NONE", "goodTillDate": 0,
             "time": now, "updateTime": now}
        if reduce and pos is not None:
            qty = min(qty, abs(pos["amt"]))
        partial = self._take_fault("POST", "/fapi/v1/order", ("partial",))
        fill_qty = qty
        if partial:
            step = float(self.symbols[s].step)
            fill_qty = max(round(qty * partial.fraction / step) * step, step)
        self._fill(o, fill_qty, self.mark[s])
        if partial:
            o["status"] = "EXPIRED"
        elif reduce:
            o["status"] = "FILLED"
        self.orders[oid] = o
        return self._order_json(o)

    def _find(self, p: dict[str, str]) -> dict[str, Any]:
        for o in self.orders.values():
            if ("orderId" in p and str(o["orderId"]) == p["orderId"]) or (
                    "origClientOrderId" in p and o["clientOrderId"] == p["origClientOrderId"]):
                return o
        raise _BinanceError(-2013, "Order does not exist.")

    def _query_order(self, p: dict[str, str]) -> dict[str, Any]:
        return self._order_json(self._find(p))

    def _cancel_order(self, p: dict[str, str]) -> dict[str, Any]:
        o = self._find(p)
        if o["status"] not in ("NEW", "PARTIALLY_FILLED"):
            raise _BinanceError(-2011, "Unknown order sent.")
        o["status"] = "CANCELED"
        return self._order_json(o)

    # --- algo (conditional) orders ------------------------------------------------------------
    def _new_algo(self, p: dict[str, str]) -> dict[str, Any]:
        s = self._sym(p)
        if p.get("algoType") != "CONDITIONAL":
            raise _BinanceError(-1102, "Mandatory parameter 'algoType' was not sent.")
        typ = p.get("type") or p.get("orderType", "")
        cid = p.get("clientAlgoId") or f"fakealgo{self._id()}"
        if any(a["clientAlgoId"] == cid and a["algoStatus"] == "NEW" for a in self.algo.values()):
            raise _BinanceError(-4116, "ClientOrderId is duplicated.")
        qty = float(p.get("quantity", "0"))
        self._check_qty(s, qty)
        trigger = float(p["triggerPrice"])
        buy = p["side"] == "BUY"
        mark = self.mark[s]
        # a stop closes a long (SELL) below the mark; a take-profit closes a long above it
        crossed = (trigger >= mark if not buy else trigger <= mark) if typ == "STOP_MARKET" else (
            trigger <= mark if not buy else trigger >= mark)
        if crossed:
            raise _BinanceError(-2021, "Order would immediately trigger.")
        aid = self._id()
        now = int(time.time() * 1000)
        a = {"algoId": aid, "clientAlgoId": cid, "algoType": "CONDITIONAL", "orderType": typ, "symbol": s,
             "side": p["side"], "positionSide": "BOTH", "timeInForce": "GTC", "quantity": _num(qty),
             "algoStatus": "NEW", "triggerPrice": _num(trigger), "price": "0", "icebergQuantity": None,
             "selfTradePreventionMode": "NONE", "workingType": p.get("workingType", "CONTRACT_PRICE"),
             "priceMatch": "NONE", "closePosition": False, "priceProtect": False,
             "reduceOnly": p.get("reduceOnly", "false").lower() == "true", "createTime": now, "updateTime": now,
             "triggerTime": 0, "goodTillDate": 0}
        self.algo[aid] = a
        return dict(a)

    def _find_algo(self, p: dict[str, str]) -> dict[str, Any]:
        for a in self.algo.values():
            if ("algoId" in p and str(a["algoId"]) == p["algoId"]) or (
                    "clientAlgoId" in p and a["clientAlgoId"] == p["clientAlgoId"]):
                return a
        raise _BinanceError(-2013, "Order does not exist.")

    def _query_algo(self, p: dict[str, str]) -> dict[str, Any]:
        return dict(self._find_algo(p))

    def _cancel_algo(self, p: dict[str, str]) -> dict[str, Any]:
        a = self._find_algo(p)
        if self._take_fault("DELETE", "/fapi/v1/algoOrder", ("fill_after_cancel",)) and a["algoStatus"] == "NEW":
            self._trigger(a)
        if a["algoStatus"] != "NEW":
            raise _BinanceError(-2011, "Unknown order sent.")
        a["algoStatus"] = "CANCELED"
        a["updateTime"] = int(time.time() * 1000)
        return {"algoId": a["algoId"], "clientAlgoId": a["clientAlgoId"], "code": "200", "msg": "success"}

    def _trigger(self, a: dict[str, Any]) -> None:
        s = a["symbol"]
        pos = self.positions.get(s)
        a["triggerTime"] = int(time.time() * 1000)
        if pos is None or (pos["amt"] > 0) == (a["side"] == "BUY"):
            a["algoStatus"] = "EXPIRED"  # reduce-only with nothing to reduce
            return
        oid = self._id()
        now = int(time.time() * 1000)
        qty = min(float(a["quantity"]), abs(pos["amt"]))
        # the spawned order gets a venue-generated client id; only actualOrderId links it to the algo
        o = {"orderId": oid, "symbol": s, "status": "NEW", "clientOrderId": f"algo_{a['algoId']}", "price": "0",
             "avgPrice": "0", "origQty": _num(qty), "executedQty": "0", "cumQty": "0", "cumQuote": "0",
             "timeInForce": "GTC", "type": "MARKET", "reduceOnly": True, "closePosition": False, "side": a["side"],
             "positionSide": "BOTH", "stopPrice": a["triggerPrice"], "workingType": "MARK_PRICE",
             "priceProtect": False, "origType": a["orderType"], "time": now, "updateTime": now}
        self.orders[oid] = o
        self._fill(o, qty, self.mark[s])
        a["algoStatus"] = "FINISHED"
        a["actualOrderId"] = str(oid)
        a["executedQty"], a["avgPrice"] = o["executedQty"], o["avgPrice"]
        a["updateTime"] = now

    # --- test controls ----------------------------------------------------------------------
    def set_mark(self, symbol: str, price: float) -> None:
        """Move the mark price; conditional orders it crosses trigger (reduce-only)."""
        self.mark[symbol] = price
        for a in list(self.algo.values()):
            if a["symbol"] != symbol or a["algoStatus"] != "NEW":
                continue
            trig, buy = float(a["triggerPrice"]), a["side"] == "BUY"
            if a["orderType"] == "STOP_MARKET":
                hit = price >= trig if buy else price <= trig
            else:
                hit = price <= trig if buy else price >= trig
            if hit:
                self._trigger(a)

    def apply_funding(self, symbol: str, rate: float) -> None:
        pos = self.positions.get(symbol)
        if pos is None:
            return
        paid = self.mark[symbol] * abs(pos["amt"]) * rate * (1 if pos["amt"] > 0 else -1)
        self.wallet -= paid
        self.income.append({"symbol": symbol, "incomeType": "FUNDING_FEE", "income": _num(-paid), "asset": "USDT",
                            "info": "", "time": int(time.time() * 1000), "tranId": self._id(), "tradeId": ""})

    def open_position_directly(self, symbol: str, amt: float, entry: float) -> None:
        """A position opened outside Quorum (for adoption tests)."""
        lev = self.leverage.get(symbol, 20)
        self.positions[symbol] = {"amt": amt, "entry": entry, "margin": abs(amt) * entry / lev}
        oid = self._id()
        o = {"orderId": oid, "symbol": symbol, "side": "BUY" if amt > 0 else "SELL", "executedQty": "0",
             "avgPrice": "0", "origQty": _num(abs(amt)), "status": "FILLED", "clientOrderId": f"web_{oid}"}
        self.orders[oid] = o
        self.trades.append({"buyer": amt > 0, "commission": "0", "commissionAsset": "USDT", "id": self._id(),
                            "maker": False, "orderId": oid, "price": _num(entry), "qty": _num(abs(amt)),
                            "quoteQty": _num(abs(amt) * entry), "realizedPnl": "0", "side": o["side"],
                            "positionSide": "BOTH", "symbol": symbol, "time": int(time.time() * 1000)})

    def open_orders_count(self, symbol: str | None = None) -> int:
        regular = [o for o in self.orders.values() if o["status"] in ("NEW", "PARTIALLY_FILLED")]
        algo = [a for a in self.algo.values() if a["algoStatus"] == "NEW"]
        return sum(1 for o in regular + algo if symbol in (None, o["symbol"]))

    def dump(self) -> str:
        return json.dumps({"positions": self.positions, "algo": list(self.algo.values())}, default=str)


class _BinanceError(Exception):
    def __init__(self, code: int, msg: str, status: int = 400) -> None:
        super().__init__(msg)
        self.code, self.msg, self.status = code, msg, status
