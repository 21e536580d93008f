"""OrderManager: store-before-send, one send per client id, unknown outcomes looked up.

`submit()` is the only way an order reaches a venue:

1. precision and minimums are applied (quantity floored to the step, trigger price rounded to
   the tick); an order that cannot be sent is stored as a complete `rejected` record with the
   reason (never half-recorded, never sent);
2. the order row (`pending`) and its first event are committed BEFORE the request leaves;
3. the venue's answer moves the order through the state machine (each change = one event);
4. a timeout / 5xx / -1006 / -1007 / malformed reply leaves it `pending`: it is looked up by
   client id (never resent); a 429/418 waits Retry-After first; if the venue says it does not
   know the order after the lookups, the order is marked rejected and the CALLER may try again
   with a new client id (seq + 1);
5. the venue's trades for the order are stored (unique by trade id).
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace
from typing import Any

import structlog

from quorum.domain.models import OrderState
from quorum.domain.sizing import floor_to_step, round_to_tick
from quorum.execution.exchange import (
    Exchange,
    ExchangeError,
    ExchangeUnavailable,
    OrderRejected,
    OrderRequest,
    OutcomeUnknown,
    RateLimited,
    UnknownSymbol,
    VenueFill,
    VenueOrder,
)
from quorum.metrics import ORDER_ERRORS
from quorum.store.orders import OrderRepository

log = structlog.get_logger(__name__)


class OrderRefused(Exception):
    """An order we did not send; the refusal is recorded."""


@dataclass(frozen=True, slots=True)
class SubmitResult:
    client_order_id: str
    state: OrderState
    filled_quantity: float = 0.0
    average_price: float | None = None
    fee: float = 0.0
    error: str | None = None
    fills: tuple[VenueFill, ...] = field(default_factory=tuple)
    error_class: str | None = None  # the venue error's class label, e.g. "would_trigger"

    @property
    def ok(self) -> bool:
        return self.state in (OrderState.ACCEPTED, OrderState.PARTIALLY_FILLED, OrderState.FILLED)


def _err_class(exc: BaseException) -> str:
    return getattr(exc, "error_class", type(exc).__name__)


class OrderManager:
    """Sends orders for one mode through one venue; see the module docstring."""

    def __init__(self, exchange: Exchange, repo: OrderRepository, *, lookup_attempts: int = 5,
                 lookup_delay_s: float = 0.2, sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep) -> None:
        self.exchange = exchange
        self.repo = repo
        self.lookup_attempts = lookup_attempts
        self.lookup_delay_s = lookup_delay_s
        self._sleep = sleep

    async def prepare(self, req: OrderRequest, reference_price: float | None) -> tuple[OrderRequest, dict[str, Any]]:
        """Apply the symbol's precision and minimums; raise OrderRefused naming the problem."""
        if not (req.quantity > 0 and math.isfinite(req.quantity)):
            raise OrderRefused(f"{req.symbol}: quantity must be a positive number, got {req.quantity}")
        if req.order_side not in ("buy", "sell"):
            raise OrderRefused(f"{req.symbol}: order side must be buy or sell, got {req.order_side!r}")
        try:
            f = await self.exchange.symbol_filters(req.symbol)
        except UnknownSymbol as exc:
            raise OrderRefused(str(exc)) from None
        detail: dict[str, Any] = {}
        qty = floor_to_step(req.quantity, f.step_size)
        if qty != req.quantity:
            detail["quantity_rounded_from"] = req.quantity
        if qty < f.min_qty or qty <= 0:
            raise OrderRefused(f"{req.symbol}: quantity {req.quantity} is below the minimum {f.min_qty} "
                               f"after rounding to the step {f.step_size}")
        stop = req.stop_price
        if stop is not None:
            if not (stop > 0 and math.isfinite(stop)):
                raise OrderRefused(f"{req.symbol}: trigger price must be > 0, got {stop}")
            stop = round_to_tick(stop, f.tick_size)
            if stop != req.stop_price:
                detail["stop_rounded_from"] = req.stop_price
        price = reference_price or stop
        if not req.reduce_only and price is not None and qty * price < f.min_notional:
            raise OrderRefused(f"{req.symbol}: notional {qty * price:.4f} USDT is below the minimum "
                               f"{f.min_notional} USDT")
        return replace(req, quantity=qty, stop_price=stop), detail

    async def submit(self, req: OrderRequest, *, purpose: str, position_id: str | None = None,
                     decision_id: str | None = None, reference_price: float | None = None,
                     detail: dict[str, Any] | None = None) -> SubmitResult:
        """Prepare, store, send once, resolve. Never raises for venue errors: the result's state
        says what happened (`pending` = still unknown, reconciliation will resolve it)."""
        try:
            req, adj = await self.prepare(req, reference_price)
        except OrderRefused as exc:
            ORDER_ERRORS.labels(error_class="refused").inc()
            await self.repo.record_refusal(req, purpose=purpose, error=str(exc), position_id=position_id,
                                           decision_id=decision_id)
            log.warning("order.refused", cid=req.client_order_id, reason=str(exc))
            return SubmitResult(req.client_order_id, OrderState.REJECTED, error=str(exc))
        except ExchangeError as exc:  # filters unavailable: nothing stored, nothing sent
            ORDER_ERRORS.labels(error_class=_err_class(exc)).inc()
            return SubmitResult(req.client_order_id, OrderState.REJECTED, error=f"filters unavailable: {exc}")
        info = dict(detail or {})
        info.update(adj)
        if not await self.repo.insert_pending(req, purpose=purpose, position_id=position_id,
                                              decision_id=decision_id, detail=info):
            log.warning("order.exists", cid=req.client_order_id)  # never send twice: look it up
            return await self.resolve(req.client_order_id)
        try:
            venue = await self.exchange.create_order(req)
        except RateLimited as exc:
            ORDER_ERRORS.labels(error_class=exc.error_class).inc()
            await self.repo.add_event(req.client_order_id, "pending", {"rate_limited": str(exc),
                                                                       "retry_after_s": exc.retry_after_s})
            await self._sleep(exc.retry_after_s)
            return await self.resolve(req.client_order_id)
        except OrderRejected as exc:
            ORDER_ERRORS.labels(error_class=exc.error_class).inc()
            error = f"{exc.code or ''} {exc}".strip()
            await self.repo.transition(req.client_order_id, OrderState.REJECTED, error=error)
            return SubmitResult(req.client_order_id, OrderState.REJECTED, error=str(exc), error_class=exc.error_class)
        except UnknownSymbol as exc:
            ORDER_ERRORS.labels(error_class=exc.error_class).inc()
            await self.repo.transition(req.client_order_id, OrderState.REJECTED, error=str(exc))
            return SubmitResult(req.client_order_id, OrderState.REJECTED, error=str(exc))
        except (OutcomeUnknown, ExchangeError, OSError, TimeoutError) as exc:
            ORDER_ERRORS.labels(error_class=_err_class(exc)).inc()
            await self.repo.add_event(req.client_order_id, "pending",
                                      {"outcome_unknown": f"{type(exc).__name__}: {exc}"})
            log.warning("order.outcome_unknown", cid=req.client_order_id, error=str(exc))
            return await self.resolve(req.client_order_id)
        return await self.apply_venue(venue)

    async def apply_venue(self, venue: VenueOrder) -> SubmitResult:
        """Store the venue's view of an order and its trades."""
        fills: list[VenueFill] = []
        if venue.filled_quantity > 0:
            fills = await self.sync_fills(venue)
        state = await self.repo.transition(
            venue.client_order_id, venue.state, filled_quantity=venue.filled_quantity,
            average_price=venue.average_price, exchange_order_id=venue.exchange_order_id)
        row = await self.repo.get(venue.client_order_id)
        assert row is not None
        all_fills = await self.repo.fills_for_order(venue.client_order_id)
        return SubmitResult(venue.client_order_id, state, float(row["filled_quantity"]),
                            None if row["average_price"] is None else float(row["average_price"]),
                            sum(float(f["fee"]) for f in all_fills), row["error"], tuple(fills))

    async def sync_fills(self, venue: VenueOrder) -> list[VenueFill]:
        """Record the venue's trades of this order (idempotent); returns the new ones."""
        try:
            since = venue.time_ms - 60_000 if venue.time_ms else None
            trades = await self.exchange.fetch_fills(venue.symbol, since_ms=since)
        except ExchangeError as exc:
            log.warning("order.fills_unavailable", cid=venue.client_order_id, error=str(exc))
            return []
        new = []
        known = await self.repo.known_trade_ids(venue.symbol)  # a trade is recorded under one order only
        for t in trades:
            mine = t.client_order_id == venue.client_order_id or (
                venue.exchange_order_id is not None and t.exchange_order_id == venue.exchange_order_id)
            if mine and t.trade_id not in known and await self.repo.record_fill(t, venue.client_order_id):
                new.append(t)
        return new

    async def resolve(self, client_order_id: str) -> SubmitResult:
        """Look a pending order up by client id until the venue answers (bounded); never resend."""
        row = await self.repo.get(client_order_id)
        if row is None:
            raise LookupError(client_order_id)
        conditional = row["type"] in ("stop_market", "take_profit_market")
        answered_missing = 0
        # a venue whose books are transactional (paper) answers "unknown" definitively
        attempts = 1 if getattr(self.exchange, "definitive_lookups", False) else self.lookup_attempts
        for attempt in range(attempts):
            try:
                venue = await self.exchange.fetch_order(row["symbol"], client_order_id, conditional=conditional)
            except RateLimited as exc:
                await self._sleep(exc.retry_after_s)
                continue
            except (ExchangeError, OSError, TimeoutError) as exc:
                await self.repo.add_event(client_order_id, row["state"],
                                          {"lookup_failed": str(exc), "attempt": attempt})
                await self._sleep(self.lookup_delay_s * (attempt + 1))
                continue
            if venue is not None:
                return await self.apply_venue(venue)
            answered_missing += 1
            if attempt + 1 < attempts:
                await self._sleep(self.lookup_delay_s * (attempt + 1))
        if answered_missing:
            msg = f"not found at the venue after {answered_missing} lookups"
            state = await self.repo.transition(client_order_id, OrderState.REJECTED, error=msg)
            return SubmitResult(client_order_id, state, error=msg)
        await self.repo.add_event(client_order_id, row["state"], {"unresolved": "venue did not answer"})
        return SubmitResult(client_order_id, OrderState(row["state"]), error="outcome still unknown")

    async def cancel(self, symbol: str, client_order_id: str, *, conditional: bool) -> OrderState:
        """Cancel and store the venue's final view (a fill that raced the cancel is kept)."""
        try:
            venue = await self.exchange.cancel_order(symbol, client_order_id, conditional=conditional)
        except ExchangeError as exc:
            ORDER_ERRORS.labels(error_class=_err_class(exc)).inc()
            try:
                venue = await self.exchange.fetch_order(symbol, client_order_id, conditional=conditional)
            except ExchangeError:
                row = await self.repo.get(client_order_id)
                return OrderState(row["state"]) if row else OrderState.PENDING
        if venue is None:
            if await self.repo.get(client_order_id) is not None:
                return await self.repo.transition(client_order_id, OrderState.CANCELLED,
                                                  detail={"cancel": "unknown at venue"})
            return OrderState.CANCELLED
        if await self.repo.get(client_order_id) is None:
            return venue.state
        return (await self.apply_venue(venue)).state

    async def next_seq(self, prefix: str) -> int:
        return await self.repo.count_with_prefix(prefix)


__all__ = ["ExchangeUnavailable", "OrderManager", "OrderRefused", "SubmitResult"]
