"""Frozen domain values shared by every layer: snapshots, votes, proposals, positions, orders.

Pure Python, no I/O. Prices and quantities are floats in the domain (the store writes them as
`numeric`); times are UTC epoch milliseconds.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from typing import Any


class Side(StrEnum):
    """Direction of a position."""

    LONG = "long"
    SHORT = "short"

    @property
    def sign(self) -> int:
        return 1 if self is Side.LONG else -1

    @property
    def opposite(self) -> Side:
        return Side.SHORT if self is Side.LONG else Side.LONG


class Action(StrEnum):
    """What a voter (or the merged consensus) proposes for a symbol."""

    LONG = "LONG"
    SHORT = "SHORT"
    HOLD = "HOLD"
    CLOSE = "CLOSE"

    @property
    def side(self) -> Side | None:
        return {Action.LONG: Side.LONG, Action.SHORT: Side.SHORT}.get(self)


class Regime(StrEnum):
    TRENDING_UP = "trending_up"
    TRENDING_DOWN = "trending_down"
    RANGING = "ranging"
    VOLATILE = "volatile"
    UNKNOWN = "unknown"


def _round_sig(x: float, digits: int = 8) -> float:
    if x == 0 or not math.isfinite(x):
        return x
    return round(x, -int(math.floor(math.log10(abs(x)))) + (digits - 1))


def canonical(obj: Any) -> Any:
    """Canonical JSON-ready form: floats rounded to 8 significant digits, NaN/inf → None."""
    if isinstance(obj, float):
        return None if not math.isfinite(obj) else _round_sig(obj)
    if isinstance(obj, StrEnum):
        return obj.value
    if isinstance(obj, Mapping):
        return {str(k): canonical(v) for k, v in sorted(obj.items(), key=lambda kv: str(kv[0]))}
    if isinstance(obj, list | tuple):
        return [canonical(v) for v in obj]
    return obj


def canonical_json(obj: Any) -> str:
    return json.dumps(canonical(obj), sort_keys=True, separators=(",", ":"), ensure_ascii=True)


def content_hash(obj: Any) -> str:
    """sha256 hex of the canonical JSON form."""
    return hashlib.sha256(canonical_json(obj).encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class Candle:
    """One OHLCV bar; `open_ms` is the bar's open time (as in Binance and the data files)."""

    open_ms: int
    open: float
    high: float
    low: float
    close: float
    volume: float


@dataclass(frozen=True, slots=True)
class TimeframeView:
    """Indicators of one timeframe at one time, computed from closed bars only.

    A value is None when there is not enough history for it (flagged in `Snapshot.flags`).
    `recent_closes` are ordered oldest → newest.
    """

    timeframe: str
    bars: int
    close: float
    change_pct: float | None
    rsi: float | None
    macd: float | None
    macd_signal: float | None
    macd_hist: float | None
    bb_upper: float | None
    bb_middle: float | None
    bb_lower: float | None
    bb_pct_b: float | None
    bb_width: float | None
    atr: float | None
    atr_pct: float | None
    atr_pct_percentile: float | None
    ema20: float | None
    ema50: float | None
    ema200: float | None
    ema20_slope: float | None
    ema50_slope: float | None
    ema200_slope: float | None
    adx: float | None
    plus_di: float | None
    minus_di: float | None
    obv_slope: float | None
    volume_ratio: float | None
    range_high: float | None
    range_low: float | None
    regime: Regime
    recent_closes: tuple[float, ...] = ()


@dataclass(frozen=True, slots=True)
class Breadth:
    """Market breadth across the universe at the snapshot time."""

    symbols: int
    share_above_ema50: float
    avg_change_24h_pct: float


@dataclass(frozen=True, slots=True)
class Snapshot:
    """Everything an analyst may see about one symbol at one decision time. Frozen and hashed.

    `time_ms` is the close time of the last closed decision-timeframe bar (= the decision time).
    `flags` lists data-quality facts ("gap:15m:3", "short_history:4h:ema200", ...).
    """

    symbol: str
    time_ms: int
    price: float
    timeframes: tuple[TimeframeView, ...]
    regime: Regime
    funding_rate: float | None = None
    next_funding_ms: int | None = None
    open_interest: float | None = None
    book_imbalance: float | None = None
    breadth: Breadth | None = None
    flags: tuple[str, ...] = ()

    def view(self, timeframe: str) -> TimeframeView | None:
        for v in self.timeframes:
            if v.timeframe == timeframe:
                return v
        return None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @property
    def hash(self) -> str:
        """Content hash of the canonical JSON form (the cache key's base)."""
        return content_hash(self.to_dict())


@dataclass(frozen=True, slots=True)
class Vote:
    """A valid, validated vote from one voter (model or rules)."""

    voter: str  # "provider:model" or "rules"
    symbol: str
    action: Action
    confidence: float
    leverage: float | None = None
    stop_loss: float | None = None
    take_profits: tuple[float, ...] = ()
    horizon: str | None = None
    reasoning: str = ""


@dataclass(frozen=True, slots=True)
class Abstention:
    """A voter that gave no valid vote, and why."""

    voter: str
    symbol: str
    reason: str


@dataclass(frozen=True, slots=True)
class Proposal:
    """The merged consensus for one symbol: a trade idea or HOLD/CLOSE, never an order."""

    symbol: str
    action: Action
    confidence: float
    reference_price: float
    stop_loss: float | None
    take_profits: tuple[float, ...]
    leverage: float | None
    valid_votes: int
    abstentions: int
    agreement: float
    reason: str
    snapshot_hash: str
    time_ms: int
    decision_id: str | None = None


@dataclass(frozen=True, slots=True)
class SymbolFilters:
    """Exchange trading rules for a symbol."""

    symbol: str
    tick_size: float
    step_size: float
    min_qty: float
    min_notional: float
    max_leverage: int = 125


@dataclass(frozen=True, slots=True)
class Bracket:
    """One maintenance-margin tier: applies to notional in (floor, cap]."""

    notional_floor: float
    notional_cap: float
    max_leverage: int
    maint_margin_rate: float
    maint_amount: float


class ExitReason(StrEnum):
    STOP_LOSS = "stop_loss"
    TRAILING_STOP = "trailing_stop"
    BREAK_EVEN_STOP = "break_even_stop"
    TAKE_PROFIT = "take_profit"
    PARTIAL_TAKE_PROFIT = "partial_take_profit"
    TIME_STOP = "time_stop"
    CONSENSUS_CLOSE = "consensus_close"
    LIQUIDATION = "liquidation"
    KILL_SWITCH = "kill_switch"
    MANUAL = "manual"  # an operator closed it (quorum close, POST /control/positions/{symbol}/close, /close)
    PROTECTION_FAILED = "protection_failed"
    RECONCILIATION = "reconciliation"
    END_OF_DATA = "end_of_data"


@dataclass(frozen=True, slots=True)
class PositionState:
    """The risk manager's view of an open position (persisted; a restart changes nothing).

    `stop_price` is the current protective stop (initially measured from the entry);
    `peak_price` is the best price since entry (the trough for shorts) that trailing uses.
    """

    symbol: str
    side: Side
    entry_price: float
    quantity: float
    initial_quantity: float
    initial_stop: float
    stop_price: float
    take_profit: float | None
    leverage: float
    opened_ms: int
    peak_price: float
    liquidation_price: float | None = None
    trailing_active: bool = False
    partials_done: int = 0
    atr: float | None = None
    position_id: str | None = None
    decision_id: str | None = None

    @property
    def risk_per_unit(self) -> float:
        """1R in price units: the distance from the entry to the initial stop."""
        return abs(self.entry_price - self.initial_stop)


class IntentKind(StrEnum):
    OPEN = "open"
    CLOSE = "close"
    REDUCE = "reduce"
    MOVE_STOP = "move_stop"


@dataclass(frozen=True, slots=True)
class OrderIntent:
    """What the risk manager wants done; execution turns it into orders.

    `side` is the position's side (an OPEN of a LONG buys; a CLOSE of a LONG sells).
    """

    kind: IntentKind
    symbol: str
    side: Side
    quantity: float
    reason: str
    price_hint: float | None = None
    stop_price: float | None = None
    leverage: float | None = None
    decision_id: str | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)


class OrderState(StrEnum):
    PENDING = "pending"  # stored, not yet (known to be) accepted by the venue
    SUBMITTED = "submitted"
    ACCEPTED = "accepted"
    PARTIALLY_FILLED = "partially_filled"
    FILLED = "filled"
    CANCELLED = "cancelled"
    REJECTED = "rejected"
    EXPIRED = "expired"

    @property
    def is_final(self) -> bool:
        return self in (OrderState.FILLED, OrderState.CANCELLED, OrderState.REJECTED, OrderState.EXPIRED)


@dataclass(frozen=True, slots=True)
class Fill:
    """One execution: quantity at price with its fee (in USDT, positive = paid)."""

    symbol: str
    order_side: str  # "buy" | "sell"
    quantity: float
    price: float
    fee: float
    time_ms: int
    client_order_id: str
    liquidity: str = "taker"  # "taker" | "maker"
    reduce_only: bool = False
    reason: str | None = None


@dataclass(frozen=True, slots=True)
class ClosedTrade:
    """A round trip, net of fees and funding. The unit of every win-rate statistic."""

    symbol: str
    side: Side
    entry_ms: int
    exit_ms: int
    entry_price: float
    exit_price: float
    quantity: float
    leverage: float
    fees: float
    funding: float
    gross_pnl: float
    net_pnl: float
    exit_reason: str
    risk_usd: float | None = None
    decision_id: str | None = None
    voters: tuple[str, ...] = ()

    @property
    def r_multiple(self) -> float | None:
        if not self.risk_usd:
            return None
        return self.net_pnl / self.risk_usd

    @property
    def is_win(self) -> bool:
        return self.net_pnl > 0
