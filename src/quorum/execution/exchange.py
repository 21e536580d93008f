"""The `Exchange` protocol every venue implements (paper and Binance), its values and errors
(the values are plain data in `quorum.domain.venue`, re-exported here).

The engine cannot tell the venues apart. Orders carry our client order id; the order manager
stores it in Postgres before calling `create_order`. Errors are classified once here:

- `OrderRejected`      final: the venue refused (bad size, no margin, would trigger, ...).
- `OutcomeUnknown`     the request may or may not have been executed (timeout, 5xx,
                       -1006/-1007, a reply missing fields): look the order up by client id,
                       never resend it blind.
- `RateLimited`        429/418: nothing is sent until `retry_after_s` has passed.
- `UnknownSymbol`      the symbol does not exist on the venue.
- `ExchangeUnavailable` a read failed (network); safe to retry later.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from quorum.domain.models import Bracket, SymbolFilters
from quorum.domain.venue import CONDITIONAL_TYPES as CONDITIONAL_TYPES
from quorum.domain.venue import ORDER_TYPES as ORDER_TYPES
from quorum.domain.venue import Balance as Balance
from quorum.domain.venue import FundingEntry as FundingEntry
from quorum.domain.venue import OrderRequest as OrderRequest
from quorum.domain.venue import VenueFill as VenueFill
from quorum.domain.venue import VenueOrder as VenueOrder
from quorum.domain.venue import VenuePosition as VenuePosition


class ExchangeError(Exception):
    """Base of every venue error; `error_class` is the metric label."""

    error_class = "exchange_error"

    def __init__(self, message: str, *, code: str | None = None) -> None:
        super().__init__(message)
        self.code = code


class OrderRejected(ExchangeError):
    error_class = "rejected"


class InsufficientMargin(OrderRejected):
    error_class = "insufficient_margin"


class WouldTrigger(OrderRejected):
    """A stop/TP whose trigger price is already crossed (-2021)."""

    error_class = "would_trigger"


class OutcomeUnknown(ExchangeError):
    error_class = "outcome_unknown"


class RateLimited(ExchangeError):
    error_class = "rate_limited"

    def __init__(self, message: str, *, retry_after_s: float, code: str | None = None) -> None:
        super().__init__(message, code=code)
        self.retry_after_s = retry_after_s


class UnknownSymbol(ExchangeError):
    error_class = "unknown_symbol"


class ExchangeUnavailable(ExchangeError):
    error_class = "unavailable"


class MalformedReply(OutcomeUnknown):
    error_class = "malformed_reply"


@runtime_checkable
class Exchange(Protocol):
    """An USDⓈ-M futures venue (async). Implemented by PaperExchange and BinanceExchange."""

    name: str

    async def balance(self) -> Balance: ...

    async def symbol_filters(self, symbol: str) -> SymbolFilters:
        """Tick, step, min quantity, min notional; raises UnknownSymbol."""
        ...

    async def leverage_brackets(self, symbol: str) -> tuple[Bracket, ...]: ...

    async def set_leverage(self, symbol: str, leverage: int) -> None: ...

    async def set_margin_mode(self, symbol: str, mode: str = "isolated") -> None: ...

    async def check_position_mode(self) -> None:
        """Raise ExchangeError unless the account is in one-way position mode."""
        ...

    async def create_order(self, request: OrderRequest) -> VenueOrder:
        """Send one order. Never retried internally (except once after a clock resync)."""
        ...

    async def fetch_order(self, symbol: str, client_order_id: str, *, conditional: bool = False) -> VenueOrder | None:
        """The order with this client id, or None when the venue does not know it."""
        ...

    async def cancel_order(self, symbol: str, client_order_id: str, *, conditional: bool = False) -> VenueOrder | None:
        """Cancel; returns the order's final view, or None if the venue does not know it."""
        ...

    async def fetch_open_orders(self, symbol: str | None = None) -> list[VenueOrder]:
        """Open regular AND conditional orders."""
        ...

    async def fetch_positions(self) -> list[VenuePosition]: ...

    async def fetch_fills(self, symbol: str, since_ms: int | None = None) -> list[VenueFill]: ...

    async def funding_history(self, symbol: str | None = None, since_ms: int | None = None) -> list[FundingEntry]: ...

    async def close(self) -> None: ...


# --- convenience builders used by the order manager ------------------------------------------
def market_order(cid: str, symbol: str, order_side: str, quantity: float, *, reduce_only: bool = False) -> OrderRequest:
    return OrderRequest(cid, symbol, order_side, "market", quantity, None, reduce_only)


def stop_order(cid: str, symbol: str, order_side: str, quantity: float, stop_price: float) -> OrderRequest:
    """Reduce-only STOP_MARKET triggered by the mark price."""
    return OrderRequest(cid, symbol, order_side, "stop_market", quantity, stop_price, True)


def take_profit_order(cid: str, symbol: str, order_side: str, quantity: float, price: float) -> OrderRequest:
    """Reduce-only TAKE_PROFIT_MARKET triggered by the mark price."""
    return OrderRequest(cid, symbol, order_side, "take_profit_market", quantity, price, True)
