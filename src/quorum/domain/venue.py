"""The values a venue (paper or Binance) trades in: the order we send, its view of an order,
a trade, a position, the balance and a funding payment. Plain data, no I/O: the execution layer
(`quorum.execution.exchange`, which re-exports them) and the store both use them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from quorum.domain.models import OrderState, Side

ORDER_TYPES = ("market", "stop_market", "take_profit_market")
CONDITIONAL_TYPES = ("stop_market", "take_profit_market")


@dataclass(frozen=True, slots=True)
class OrderRequest:
    """One order to send. `order_side` is buy/sell; `type` one of ORDER_TYPES.
    Conditional orders (stop/TP) trigger on the mark price and are reduce-only."""

    client_order_id: str
    symbol: str
    order_side: str
    type: str
    quantity: float
    stop_price: float | None = None
    reduce_only: bool = False

    @property
    def conditional(self) -> bool:
        return self.type in CONDITIONAL_TYPES


@dataclass(frozen=True, slots=True)
class VenueOrder:
    """The venue's view of one order (regular or conditional)."""

    client_order_id: str
    exchange_order_id: str | None
    symbol: str
    order_side: str
    type: str
    quantity: float
    state: OrderState
    filled_quantity: float = 0.0
    average_price: float | None = None
    stop_price: float | None = None
    reduce_only: bool = False
    time_ms: int = 0

    @property
    def conditional(self) -> bool:
        return self.type in CONDITIONAL_TYPES


@dataclass(frozen=True, slots=True)
class VenueFill:
    """One trade at the venue; `trade_id` is unique per symbol."""

    trade_id: str
    client_order_id: str | None
    exchange_order_id: str | None
    symbol: str
    order_side: str
    quantity: float
    price: float
    fee: float
    time_ms: int
    liquidity: str = "taker"
    realized_pnl: float | None = None


@dataclass(frozen=True, slots=True)
class VenuePosition:
    symbol: str
    side: Side
    quantity: float
    entry_price: float
    mark_price: float | None = None
    liquidation_price: float | None = None
    leverage: float | None = None
    margin_mode: str = "isolated"
    unrealized_pnl: float = 0.0
    isolated_margin: float | None = None


@dataclass(frozen=True, slots=True)
class Balance:
    wallet_balance: float
    available_balance: float
    unrealized_pnl: float = 0.0

    @property
    def equity(self) -> float:
        return self.wallet_balance + self.unrealized_pnl


@dataclass(frozen=True, slots=True)
class FundingEntry:
    symbol: str
    time_ms: int
    amount: float  # paid (+) / received (−), USDT
    rate: float | None = None
    mark_price: float | None = None
    quantity: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)
