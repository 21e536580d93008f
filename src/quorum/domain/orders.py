"""Order state machine and deterministic client order ids (pure, no I/O).

States (`OrderState`): pending (stored, outcome not yet known) → submitted → accepted →
partially_filled → filled / cancelled / rejected / expired.

Rules
- A venue answer may skip states (a market order goes pending → filled directly).
- Re-applying the current state is a no-op (venue answers are replayed after restarts).
- Fills are facts and are never dropped: a fill that arrives after a cancel (or an expiry)
  raises the filled quantity; if it completes the order the order becomes FILLED.
- FILLED and REJECTED accept nothing else; a FILLED order ignores duplicate fills (callers
  de-duplicate by trade id before calling `apply_fill`).
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, replace

from quorum.domain.models import OrderState

CLIENT_ID_RE = re.compile(r"^[.A-Z:/a-z0-9_-]{1,36}$")
QTY_EPS = 1e-12

_S = OrderState
_ALLOWED: dict[OrderState, frozenset[OrderState]] = {
    _S.PENDING: frozenset({_S.SUBMITTED, _S.ACCEPTED, _S.PARTIALLY_FILLED, _S.FILLED, _S.CANCELLED,
                           _S.REJECTED, _S.EXPIRED}),
    _S.SUBMITTED: frozenset({_S.ACCEPTED, _S.PARTIALLY_FILLED, _S.FILLED, _S.CANCELLED, _S.REJECTED,
                             _S.EXPIRED}),
    _S.ACCEPTED: frozenset({_S.PARTIALLY_FILLED, _S.FILLED, _S.CANCELLED, _S.EXPIRED}),
    _S.PARTIALLY_FILLED: frozenset({_S.FILLED, _S.CANCELLED, _S.EXPIRED}),
    _S.FILLED: frozenset(),
    _S.CANCELLED: frozenset({_S.FILLED}),  # only through a late fill
    _S.REJECTED: frozenset(),
    _S.EXPIRED: frozenset({_S.FILLED}),
}


class InvalidTransition(ValueError):
    """A state change the order state machine does not allow."""


def can_transition(current: OrderState, new: OrderState) -> bool:
    return new == current or new in _ALLOWED[current]


@dataclass(frozen=True, slots=True)
class OrderStatus:
    """An order's lifecycle values: requested quantity, state, filled quantity, average price."""

    client_order_id: str
    quantity: float
    state: OrderState = OrderState.PENDING
    filled_quantity: float = 0.0
    average_price: float | None = None

    @property
    def remaining(self) -> float:
        return max(self.quantity - self.filled_quantity, 0.0)

    @property
    def is_open(self) -> bool:
        return not self.state.is_final


def transition(order: OrderStatus, new: OrderState) -> OrderStatus:
    """Move to `new` (no-op if already there); raise `InvalidTransition` otherwise."""
    if new == order.state:
        return order
    if new not in _ALLOWED[order.state]:
        raise InvalidTransition(f"order {order.client_order_id}: {order.state.value} -> {new.value} not allowed")
    if new is OrderState.FILLED and order.filled_quantity + QTY_EPS < order.quantity and order.state in (
        OrderState.CANCELLED, OrderState.EXPIRED
    ):
        raise InvalidTransition(f"order {order.client_order_id}: cannot be filled after cancel without fills")
    return replace(order, state=new)


def apply_fill(order: OrderStatus, quantity: float, price: float) -> OrderStatus:
    """Add one fill; the state follows the filled quantity (late fills after a cancel count)."""
    if quantity <= 0 or price <= 0:
        raise ValueError(f"fill must have quantity > 0 and price > 0, got {quantity} @ {price}")
    if order.state is OrderState.REJECTED:
        raise InvalidTransition(f"order {order.client_order_id}: fill on a rejected order")
    if order.state is OrderState.FILLED:
        return order
    filled = order.filled_quantity + quantity
    avg = price if not order.average_price or order.filled_quantity <= 0 else (
        (order.average_price * order.filled_quantity + price * quantity) / filled
    )
    if filled + QTY_EPS >= order.quantity:
        state = OrderState.FILLED
    elif order.state in (OrderState.CANCELLED, OrderState.EXPIRED):
        state = order.state
    else:
        state = OrderState.PARTIALLY_FILLED
    return replace(order, filled_quantity=min(filled, max(order.quantity, filled)), average_price=avg, state=state)


def venue_state(order: OrderStatus, new: OrderState, filled_quantity: float,
                average_price: float | None) -> OrderStatus:
    """Apply a venue snapshot (state + cumulative filled quantity). The venue is the truth for
    what has filled; the state machine still refuses impossible moves (e.g. rejected → filled)."""
    if filled_quantity + QTY_EPS < order.filled_quantity:
        filled_quantity = order.filled_quantity  # never lose a fill we already know of
        average_price = order.average_price
    target = new
    if new in (OrderState.ACCEPTED, OrderState.SUBMITTED) and filled_quantity > QTY_EPS:
        target = OrderState.PARTIALLY_FILLED
    if target is OrderState.PARTIALLY_FILLED and filled_quantity + QTY_EPS >= order.quantity:
        target = OrderState.FILLED
    if target == order.state or can_transition(order.state, target):
        return replace(order, state=target, filled_quantity=filled_quantity, average_price=average_price)
    if order.state.is_final and target in (OrderState.ACCEPTED, OrderState.SUBMITTED, OrderState.PARTIALLY_FILLED):
        # a stale venue answer about an order we already know is final
        return replace(order, filled_quantity=filled_quantity, average_price=average_price)
    raise InvalidTransition(f"order {order.client_order_id}: {order.state.value} -> {target.value} not allowed")


# --- client order ids ------------------------------------------------------------------------
PURPOSE_CODES = {"entry": "E", "stop": "S", "take_profit": "T", "exit": "X", "reduce": "R", "kill": "K"}


def client_order_id(mode: str, key: str, purpose: str, seq: int = 0) -> str:
    """Deterministic client order id: same (mode, key, purpose, seq) → same id.

    Format `q{m}{P}-{hash20}-{seq}` (≤ 36 chars, matches Binance's `^[.A-Z:/a-z0-9_-]{1,36}$`),
    where m is the mode's first letter, P the purpose code and hash20 a sha256 prefix of `key`
    (usually the position id). A retry after a confirmed non-existent order uses seq + 1.
    """
    if purpose not in PURPOSE_CODES:
        raise ValueError(f"unknown order purpose {purpose!r}; allowed: {', '.join(PURPOSE_CODES)}")
    if seq < 0 or seq > 99_999:
        raise ValueError("seq must be in [0, 99999]")
    digest = hashlib.sha256(f"{mode}|{key}".encode()).hexdigest()[:20]
    cid = f"q{mode[:1].lower()}{PURPOSE_CODES[purpose]}-{digest}-{seq}"
    assert CLIENT_ID_RE.match(cid), cid
    return cid


def parse_client_order_id(cid: str) -> tuple[str, str, int] | None:
    """(mode letter, purpose, seq) of one of our ids, or None for a foreign id."""
    m = re.match(r"^q([a-z])([A-Z])-([0-9a-f]{20})-(\d+)$", cid)
    if not m:
        return None
    purposes = {v: k for k, v in PURPOSE_CODES.items()}
    purpose = purposes.get(m.group(2))
    if purpose is None:
        return None
    return m.group(1), purpose, int(m.group(4))


def is_valid_client_id(cid: str) -> bool:
    return bool(CLIENT_ID_RE.match(cid))
