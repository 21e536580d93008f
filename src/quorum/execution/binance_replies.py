"""What Binance's replies and errors mean, for `quorum.execution.binance.BinanceExchange`.

- `classify_error`: a ccxt exception → our error classes (ccxt exception class first, Binance
  code second: -1021 clock skew, -1006/-1007 outcome unknown, -2021 would trigger, -2019 margin,
  -1121 symbol, -2013 not found; a 429/418 carries its Retry-After).
- Strict reading: `need` / `number` raise `MalformedReply` naming the missing or bad field.
- Order states and types (`ORDER_STATES`, `ORDER_TYPES`) and the parsers of the account and
  market-info replies (positionRisk, balance, income, exchangeInfo filters, leverageBracket).

No I/O here: the adapter sends, this module reads what came back.
"""

from __future__ import annotations

import re
from typing import Any

import ccxt

from quorum.domain.models import Bracket, OrderState, Side, SymbolFilters
from quorum.execution.exchange import (
    Balance,
    ExchangeError,
    FundingEntry,
    InsufficientMargin,
    MalformedReply,
    OrderRejected,
    OutcomeUnknown,
    RateLimited,
    UnknownSymbol,
    VenuePosition,
    WouldTrigger,
)

ORDER_STATES = {
    "NEW": OrderState.ACCEPTED, "PARTIALLY_FILLED": OrderState.PARTIALLY_FILLED, "FILLED": OrderState.FILLED,
    "CANCELED": OrderState.CANCELLED, "CANCELLED": OrderState.CANCELLED, "EXPIRED": OrderState.EXPIRED,
    "EXPIRED_IN_MATCH": OrderState.EXPIRED, "REJECTED": OrderState.REJECTED, "TRIGGERING": OrderState.ACCEPTED,
    "TRIGGERED": OrderState.FILLED, "FINISHED": OrderState.FILLED,
}
ORDER_TYPES = {"MARKET": "market", "STOP_MARKET": "stop_market", "TAKE_PROFIT_MARKET": "take_profit_market",
               "LIMIT": "limit", "STOP": "stop", "TAKE_PROFIT": "take_profit"}


class ClockSkew(ExchangeError):
    error_class = "clock_skew"


class NotFound(ExchangeError):
    error_class = "not_found"


def code_of(exc: BaseException, body: str | None) -> str | None:
    for text in (str(exc), body or ""):
        m = re.search(r'"code"\s*:\s*"?(-?\d+)', text)
        if m:
            return m.group(1)
    return None


def classify_error(exc: BaseException, *, body: str | None, headers: dict[str, Any] | None,
                   default_retry_after_s: float) -> ExchangeError:
    """Map a ccxt exception (class first, Binance code second) to our error classes. `body`: the
    last HTTP reply (ignored after a network error: it belongs to an earlier request); `headers`:
    its headers (Retry-After of a 429/418, else `default_retry_after_s`)."""
    network = isinstance(exc, ccxt.NetworkError) and not isinstance(exc, ccxt.DDoSProtection)
    code = code_of(exc, None if network else body)
    msg = f"{type(exc).__name__}: {exc}"
    if isinstance(exc, ccxt.DDoSProtection | ccxt.RateLimitExceeded):
        lowered = {k.lower(): v for k, v in (headers or {}).items()}
        try:
            retry = float(lowered.get("retry-after", default_retry_after_s))
        except ValueError:
            retry = default_retry_after_s
        return RateLimited(msg, retry_after_s=retry, code=code)
    if code == "-1021" or isinstance(exc, ccxt.InvalidNonce):
        return ClockSkew(msg, code=code)
    if code in ("-1006", "-1007"):
        return OutcomeUnknown(msg, code=code)
    if network:
        return OutcomeUnknown(msg, code=code)
    if code == "-2021" or isinstance(exc, ccxt.OrderImmediatelyFillable):
        return WouldTrigger(msg, code=code)
    if code == "-2019" or isinstance(exc, ccxt.InsufficientFunds):
        return InsufficientMargin(msg, code=code)
    if code == "-1121" or isinstance(exc, ccxt.BadSymbol):
        return UnknownSymbol(msg, code=code)
    if code == "-2013" or isinstance(exc, ccxt.OrderNotFound):
        return NotFound(msg, code=code)
    if isinstance(exc, ccxt.BadResponse):
        return MalformedReply(msg, code=code)
    if isinstance(exc, ccxt.InvalidOrder | ccxt.BadRequest | ccxt.OperationRejected | ccxt.AuthenticationError
                  | ccxt.PermissionDenied | ccxt.AccountSuspended) or code is not None:
        return OrderRejected(msg, code=code)
    return OutcomeUnknown(msg, code=code)


def need(d: Any, *keys: str, what: str) -> None:
    if not isinstance(d, dict):
        raise MalformedReply(f"{what}: expected an object, got {type(d).__name__}")
    missing = [k for k in keys if d.get(k) in (None, "")]
    if missing:
        raise MalformedReply(f"{what}: reply is missing {', '.join(missing)}")


def number(d: dict[str, Any], key: str, default: float | None = None) -> float:
    v = d.get(key)
    if v in (None, ""):
        if default is None:
            raise MalformedReply(f"reply is missing {key}")
        return default
    try:
        return float(v)
    except (TypeError, ValueError):
        raise MalformedReply(f"{key}={v!r} is not a number") from None


def parse_positions(rows: Any) -> list[VenuePosition]:
    """positionRisk: the open positions (one-way mode only: a hedge-mode row is an error)."""
    if not isinstance(rows, list):
        raise MalformedReply("positionRisk: expected a list")
    out = []
    for r in rows:
        need(r, "symbol", "positionAmt", "entryPrice", what="positionRisk")
        amt = number(r, "positionAmt")
        if abs(amt) < 1e-12:
            continue
        if r.get("positionSide", "BOTH") != "BOTH":
            raise ExchangeError(f"{r['symbol']}: hedge-mode position found; Quorum needs one-way mode")
        out.append(VenuePosition(r["symbol"], Side.LONG if amt > 0 else Side.SHORT, abs(amt),
                                 number(r, "entryPrice"), number(r, "markPrice", 0.0) or None,
                                 number(r, "liquidationPrice", 0.0) or None, number(r, "leverage", 1.0),
                                 str(r.get("marginType", "isolated")).lower(), number(r, "unRealizedProfit", 0.0),
                                 number(r, "isolatedMargin", 0.0)))
    return out


def parse_balance(rows: Any) -> Balance:
    """balance: the USDT row."""
    for r in rows if isinstance(rows, list) else []:
        if isinstance(r, dict) and r.get("asset") == "USDT":
            need(r, "balance", "availableBalance", what="balance")
            return Balance(number(r, "balance"), number(r, "availableBalance"), number(r, "crossUnPnl", 0.0))
    raise MalformedReply("balance: no USDT row in the reply")


def parse_funding(rows: Any) -> list[FundingEntry]:
    """income (FUNDING_FEE): what we paid (positive) or received (negative)."""
    out = []
    for r in rows:
        need(r, "symbol", "income", "time", what="income")
        out.append(FundingEntry(r["symbol"], int(r["time"]), -number(r, "income"),
                                extra={"tranId": r.get("tranId")}))
    return out


def parse_filters(symbol: str, info: dict[str, Any]) -> SymbolFilters:
    """exchangeInfo: tick size, step size, minimum quantity and notional of `symbol`."""
    filters = {f.get("filterType"): f for f in info.get("filters", [])}
    try:
        return SymbolFilters(symbol, float(filters["PRICE_FILTER"]["tickSize"]),
                             float(filters["LOT_SIZE"]["stepSize"]), float(filters["LOT_SIZE"]["minQty"]),
                             float(filters["MIN_NOTIONAL"]["notional"]))
    except (KeyError, TypeError, ValueError) as exc:
        raise MalformedReply(f"exchangeInfo {symbol}: filters incomplete ({exc})") from None


def parse_brackets(rows: Any) -> tuple[Bracket, ...]:
    """leverageBracket: the notional tiers, lowest first."""
    row = rows[0] if isinstance(rows, list) and rows else rows
    if not isinstance(row, dict) or not isinstance(row.get("brackets"), list):
        raise MalformedReply("leverageBracket: reply is missing brackets")
    out = []
    for b in row["brackets"]:
        need(b, "notionalCap", "initialLeverage", "maintMarginRatio", what="leverageBracket")
        out.append(Bracket(number(b, "notionalFloor", 0.0), number(b, "notionalCap"), int(b["initialLeverage"]),
                           number(b, "maintMarginRatio"), number(b, "cum", 0.0)))
    return tuple(sorted(out, key=lambda b: b.notional_floor))
