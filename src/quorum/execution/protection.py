"""Executor: opens protected positions, keeps the exchange stop equal to the position, reduces,
moves stops and closes — the one object the engine calls to act on `OrderIntent`s.

Protection invariant: after every entry fill and every partial exit the position has exactly
one reduce-only STOP_MARKET on the exchange for its whole size at its stop price. The new stop
is placed BEFORE the old one is cancelled (never a moment without protection). If a stop cannot
be placed, the position is closed at market and a critical alert is raised.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import asyncpg
import structlog

from quorum.domain.exits import exit_reason_for_stop
from quorum.domain.fills import close_order_side, open_order_side
from quorum.domain.models import ExitReason, IntentKind, OrderIntent, OrderState, PositionState
from quorum.domain.orders import client_order_id
from quorum.domain.sizing import round_to_tick
from quorum.execution.exchange import (
    Exchange,
    ExchangeError,
    UnknownSymbol,
    market_order,
    stop_order,
    take_profit_order,
)
from quorum.execution.ledger import Ledger
from quorum.execution.orders import OrderManager, SubmitResult
from quorum.store.state import AlertRepository

log = structlog.get_logger(__name__)


@dataclass(frozen=True, slots=True)
class ExecResult:
    """Outcome of one intent: status opened | reduced | closed | moved | refused | rejected |
    pending | protection_failed | noop."""

    status: str
    position_id: str | None = None
    quantity: float = 0.0
    price: float | None = None
    reason: str = ""


def wall_ms() -> int:
    return int(time.time() * 1000)


class Executor:
    """Acts on intents for one mode through one venue. `entries_allowed` stays False until
    reconciliation succeeds (the Reconciler sets it)."""

    def __init__(self, exchange: Exchange, pool: asyncpg.Pool, mode: str, *, margin_mode: str = "isolated",
                 order_manager: OrderManager | None = None, clock: Callable[[], int] = wall_ms) -> None:
        self.exchange = exchange
        self.mode = mode
        self.margin_mode = margin_mode
        self.ledger = Ledger(pool, mode, exchange)
        self.orders = self.ledger.orders
        self.positions = self.ledger.positions
        self.om = order_manager or OrderManager(exchange, self.orders)
        self.alerts = AlertRepository(pool, mode)
        self.clock = clock
        self.entries_allowed = False

    @property
    def fills_stored(self) -> int:
        """How many fills this process has stored (a new one: something to look at)."""
        return self.orders.fill_writes

    async def sync_funding(self, position: PositionState) -> float:
        """Store the venue's funding payments for an open position; returns the amount added."""
        return await self.ledger.sync_funding(position)

    # --- dispatch ----------------------------------------------------------------------------
    async def execute(self, intent: OrderIntent, **kw: Any) -> ExecResult:
        """OPEN → open_position; REDUCE → reduce; CLOSE → close; MOVE_STOP → move_stop."""
        if intent.kind is IntentKind.OPEN:
            return await self.open_position(intent, **kw)
        pos = await self.positions.open_for_symbol(intent.symbol)
        if pos is None or pos.position_id is None:
            return ExecResult("noop", reason=f"no open {intent.symbol} position")
        if intent.kind is IntentKind.REDUCE:
            return await self.reduce(pos.position_id, intent.quantity, intent.reason)
        if intent.kind is IntentKind.MOVE_STOP:
            if intent.stop_price is None:
                return ExecResult("refused", pos.position_id, reason="MOVE_STOP without stop_price")
            return await self.move_stop(pos.position_id, intent.stop_price)
        return await self.close(pos.position_id, intent.reason or ExitReason.CONSENSUS_CLOSE.value)

    # --- open ----------------------------------------------------------------------------------
    async def open_position(self, intent: OrderIntent, *, position_id: str | None = None,
                            take_profit: float | None = None, risk_usd: float | None = None,
                            atr: float | None = None) -> ExecResult:
        """Market entry, then the protective stop (and optional TP) for the filled size."""
        pid = position_id or (f"p-{intent.decision_id}" if intent.decision_id else f"p-{uuid.uuid4().hex[:20]}")
        cid = client_order_id(self.mode, pid, "entry")
        req = market_order(cid, intent.symbol, open_order_side(intent.side), intent.quantity)
        refusal = await self._entry_refusal(intent)
        if refusal:
            await self.orders.record_refusal(req, purpose="entry", error=refusal, decision_id=intent.decision_id)
            log.warning("entry.refused", symbol=intent.symbol, reason=refusal)
            return ExecResult("refused", None, reason=refusal)
        lev = int(round(intent.leverage or 1))
        detail = {"position_id": pid, "stop_price": intent.stop_price, "take_profit": take_profit,
                  "leverage": lev, "margin_mode": self.margin_mode, "risk_usd": risk_usd, "atr": atr,
                  "reason": intent.reason}
        res = await self.om.submit(req, purpose="entry", decision_id=intent.decision_id,
                                   reference_price=intent.price_hint, detail=detail)
        if res.filled_quantity <= 0:
            if res.state is OrderState.PENDING:
                # the venue may hold an unprotected position we cannot see yet: no more entries
                # until reconciliation has resolved the order (and protected what it finds)
                self.entries_allowed = False
                await self.alerts.raise_alert("warning", "entry_outcome_unknown",
                                              f"{intent.symbol}: entry {cid} outcome unknown; entries blocked "
                                              "until reconciliation", symbol=intent.symbol,
                                              details={"client_order_id": cid, "error": res.error})
                return ExecResult("pending", None, reason=res.error or "outcome unknown")
            return ExecResult("rejected", None, reason=res.error or res.state.value)
        pos = await self.ledger.book_entry(cid, pid, opened_ms=self.clock())
        assert pos is not None
        if not await self.ensure_stop(pid):
            row = await self.positions.get_row(pid)
            if row is not None and row["exit_reason"] != ExitReason.PROTECTION_FAILED.value:
                return ExecResult("closed", pid, pos.quantity, pos.entry_price, "stop level already breached")
            return ExecResult("protection_failed", pid, pos.quantity, pos.entry_price, "stop could not be placed")
        if take_profit is not None:
            await self._place_take_profit(pos, take_profit)
        return ExecResult("opened", pid, pos.quantity, pos.entry_price)

    async def _entry_refusal(self, intent: OrderIntent) -> str | None:
        if not self.entries_allowed:
            return "entries are blocked until reconciliation succeeds"
        if intent.stop_price is None or intent.stop_price <= 0:
            return "an entry needs a protective stop price"
        if intent.price_hint is not None and (intent.price_hint - intent.stop_price) * intent.side.sign <= 0:
            return f"stop {intent.stop_price} is on the wrong side of the price {intent.price_hint}"
        if await self.positions.open_for_symbol(intent.symbol) is not None:
            return f"a {intent.symbol} position is already open"
        lev = int(round(intent.leverage or 1))
        try:
            brackets = await self.exchange.leverage_brackets(intent.symbol)
            notional = intent.quantity * (intent.price_hint or 0.0)
            allowed = next((b.max_leverage for b in brackets if notional <= b.notional_cap), brackets[-1].max_leverage)
            if lev < 1 or lev > allowed:
                return (f"leverage {lev} is above the bracket maximum {allowed} for {intent.symbol} "
                        f"at notional {notional:.2f}")
            await self.exchange.check_position_mode()
            await self.exchange.set_margin_mode(intent.symbol, self.margin_mode)
            await self.exchange.set_leverage(intent.symbol, lev)
        except UnknownSymbol as exc:
            return str(exc)
        except ExchangeError as exc:
            return f"account setup failed: {exc}"
        return None

    # --- protection ------------------------------------------------------------------------------
    async def ensure_stop(self, position_id: str, *, breach_reason: str | None = None) -> bool:
        """Make the exchange stop match the position (size and price). False = the position was
        closed at market: because the venue says the stop level is already breached (closed as
        that stop would have closed it — `breach_reason`, by default classified from the position
        like a venue-triggered stop), or because protection failed (critical alert)."""
        pos = await self.positions.get(position_id)
        if pos is None:
            return False
        row = await self.positions.get_row(position_id)
        if row is None or row["status"] != "open":
            return True
        venue_qty = await self._venue_quantity(pos.symbol)
        if venue_qty == 0.0:  # flat on the venue: book what happened instead of protecting nothing
            await self.sync_position(position_id, ensure=False)
            return True
        try:
            stop_px, stops, good = await self.stop_status(pos)
        except ExchangeError as exc:
            log.warning("protection.check_failed", position_id=position_id, error=str(exc))
            return True  # cannot see the venue now; the existing stop stays, reconciliation re-checks
        if good:
            if await self._cancel_all(pos.symbol, [o.client_order_id for o in stops if o is not good[0]]):
                await self.sync_position(position_id)
            return True
        res = await self._submit_stop(pos, stop_px)
        if res.state is OrderState.REJECTED and (res.error or "").startswith("not found at the venue"):
            res = await self._submit_stop(pos, stop_px)  # confirmed never placed: one more, new client id
        if res.state in (OrderState.ACCEPTED, OrderState.SUBMITTED, OrderState.PARTIALLY_FILLED):
            if await self._cancel_all(pos.symbol, [o.client_order_id for o in stops]):
                await self.sync_position(position_id)  # an old stop filled while we replaced it
            return True
        if res.state is OrderState.FILLED:  # triggered at once: the position is (being) closed
            await self.sync_position(position_id)
            return True
        if res.state is OrderState.REJECTED and res.error_class == "would_trigger":
            await self._stop_breached(pos, res, breach_reason or exit_reason_for_stop(pos).value)
            return False
        await self._protection_failed(pos, res)
        return False

    async def stop_status(self, pos: PositionState) -> tuple[float, list[Any], list[Any]]:
        """(stop price at tick precision, all reduce-only stops on the venue, the ones that match)."""
        f = await self.exchange.symbol_filters(pos.symbol)
        open_orders = await self.exchange.fetch_open_orders(pos.symbol)
        stop_px = round_to_tick(pos.stop_price, f.tick_size)
        stops = [o for o in open_orders if o.type == "stop_market" and o.reduce_only]
        good = [o for o in stops if abs(o.quantity - pos.quantity) <= f.step_size / 2
                and o.stop_price is not None and abs(o.stop_price - stop_px) <= f.tick_size / 2]
        return stop_px, stops, good

    async def _submit_stop(self, pos: PositionState, stop_px: float) -> SubmitResult:
        assert pos.position_id is not None
        prefix = client_order_id(self.mode, pos.position_id, "stop").rsplit("-", 1)[0] + "-"
        cid = client_order_id(self.mode, pos.position_id, "stop", await self.om.next_seq(prefix))
        req = stop_order(cid, pos.symbol, close_order_side(pos.side), pos.quantity, stop_px)
        return await self.om.submit(req, purpose="stop", position_id=pos.position_id)

    async def _place_take_profit(self, pos: PositionState, price: float) -> None:
        assert pos.position_id is not None
        prefix = client_order_id(self.mode, pos.position_id, "take_profit").rsplit("-", 1)[0] + "-"
        cid = client_order_id(self.mode, pos.position_id, "take_profit", await self.om.next_seq(prefix))
        res = await self.om.submit(take_profit_order(cid, pos.symbol, close_order_side(pos.side), pos.quantity, price),
                                   purpose="take_profit", position_id=pos.position_id)
        if not res.ok:
            log.warning("take_profit.not_placed", position_id=pos.position_id, error=res.error)

    async def _protection_failed(self, pos: PositionState, res: SubmitResult) -> None:
        assert pos.position_id is not None
        await self.alerts.raise_alert(
            "critical", "protection_failed",
            f"{pos.symbol}: protective stop could not be placed ({res.error}); closing the position at market",
            symbol=pos.symbol, details={"position_id": pos.position_id, "stop_order": res.client_order_id,
                                        "state": res.state.value})
        log.error("protection.failed", position_id=pos.position_id, error=res.error)
        await self.close(pos.position_id, ExitReason.PROTECTION_FAILED.value, ensure=False)

    async def _stop_breached(self, pos: PositionState, res: SubmitResult, reason: str) -> None:
        """The price is already through the stop level (Binance -2021): exit at market now, as the
        stop would have. The previous stop stayed on the venue meanwhile, so this is an exit, not a
        protection failure: a warning, not a critical alert (which would block the go-live gate)."""
        assert pos.position_id is not None
        await self.alerts.raise_alert(
            "warning", "stop_breached",
            f"{pos.symbol}: price already through the stop {pos.stop_price} ({res.error}); closing at market",
            symbol=pos.symbol, details={"position_id": pos.position_id, "stop_order": res.client_order_id,
                                        "reason": reason})
        log.warning("protection.stop_breached", position_id=pos.position_id, reason=reason)
        await self.close(pos.position_id, reason, ensure=False)

    async def _cancel_all(self, symbol: str, cids: list[str]) -> bool:
        """Cancel; True if one of them had filled meanwhile (a fill that raced the cancel)."""
        raced = False
        for cid in cids:
            raced |= await self.om.cancel(symbol, cid, conditional=True) is OrderState.FILLED
        return raced

    # --- exits -----------------------------------------------------------------------------------
    async def reduce(self, position_id: str, quantity: float, reason: str) -> ExecResult:
        """Partial market exit (reduce-only), then resize the stop to the rest."""
        pos = await self.positions.get(position_id)
        if pos is None:
            return ExecResult("noop", position_id, reason="unknown position")
        qty = min(quantity, pos.quantity)
        res = await self._market_exit(pos, qty, "reduce")
        await self.sync_position(position_id, reason=reason)
        row = await self.positions.get_row(position_id)
        status = "reduced" if res.filled_quantity > 0 else "rejected"
        if row and row["status"] == "closed":
            status = "closed"
        return ExecResult(status, position_id, res.filled_quantity, res.average_price, res.error or reason)

    async def close(self, position_id: str, reason: str, *, ensure: bool = True, purpose: str = "exit") -> ExecResult:
        """Close at market (reduce-only), record, then cancel the remaining stop/TP orders."""
        pos = await self.positions.get(position_id)
        if pos is None:
            return ExecResult("noop", position_id, reason="unknown position")
        venue_qty = await self._venue_quantity(pos.symbol)
        res = None
        if venue_qty is None or venue_qty > 0:
            res = await self._market_exit(pos, venue_qty or pos.quantity, purpose)
        await self.sync_position(position_id, reason=reason, ensure=ensure)
        row = await self.positions.get_row(position_id)
        if row and row["status"] == "closed":
            await self.cancel_protective_orders(pos.symbol)
            return ExecResult("closed", position_id, float(row["initial_quantity"]), float(row["exit_price"]), reason)
        return ExecResult("pending", position_id, reason=(res.error if res else None) or "close not confirmed")

    async def _market_exit(self, pos: PositionState, qty: float, purpose: str) -> SubmitResult:
        assert pos.position_id is not None
        prefix = client_order_id(self.mode, pos.position_id, purpose).rsplit("-", 1)[0] + "-"
        cid = client_order_id(self.mode, pos.position_id, purpose, await self.om.next_seq(prefix))
        req = market_order(cid, pos.symbol, close_order_side(pos.side), qty, reduce_only=True)
        return await self.om.submit(req, purpose="kill" if purpose == "kill" else "exit", position_id=pos.position_id)

    async def _venue_quantity(self, symbol: str) -> float | None:
        try:
            for p in await self.exchange.fetch_positions():
                if p.symbol == symbol:
                    return p.quantity
            return 0.0
        except ExchangeError:
            return None

    async def refresh_orders(self, position_id: str) -> None:
        """Bring the position's still-open order rows up to the venue's word, so a stop that
        filled on the venue is recorded as filled here, not left for reconciliation to correct."""
        for row in await self.orders.orders_for_position(position_id):
            if row["state"] not in (OrderState.ACCEPTED.value, OrderState.PARTIALLY_FILLED.value):
                continue
            try:
                venue = await self.exchange.fetch_order(
                    row["symbol"], row["client_order_id"],
                    conditional=row["type"] in ("stop_market", "take_profit_market"))
            except ExchangeError as exc:
                log.warning("sync.order_refresh_failed", cid=row["client_order_id"], error=str(exc))
                continue
            if venue is not None and (venue.state.value != row["state"]
                                      or venue.filled_quantity != float(row["filled_quantity"])):
                await self.om.apply_venue(venue)

    async def cancel_protective_orders(self, symbol: str) -> None:
        try:
            orders = await self.exchange.fetch_open_orders(symbol)
        except ExchangeError:
            return
        await self._cancel_all(symbol, [o.client_order_id for o in orders if o.reduce_only])

    async def move_stop(self, position_id: str, new_stop: float, reason: str | None = None) -> ExecResult:
        """Persist the new stop and make the exchange follow (new stop first, then cancel old).
        If the price is already through the new level, the position is closed at market instead
        (status "closed"), with `reason` or the stop's classification as the exit reason."""
        pos = await self.positions.get(position_id)
        if pos is None:
            return ExecResult("noop", position_id, reason="unknown position")
        await self.positions.update_risk_state(replace(pos, stop_price=new_stop))
        if await self.ensure_stop(position_id, breach_reason=reason):
            return ExecResult("moved", position_id, pos.quantity, new_stop)
        row = await self.positions.get_row(position_id)
        exit_reason = str(row["exit_reason"]) if row is not None else ""
        status = "protection_failed" if exit_reason == ExitReason.PROTECTION_FAILED.value else "closed"
        return ExecResult(status, position_id, pos.quantity, new_stop, exit_reason)

    async def sync_position(self, position_id: str, *, reason: str | None = None, ensure: bool = True) -> None:
        """Import the venue's trades for the position's symbol, book them, close the record when
        the venue is flat, otherwise make the stop match the remaining size."""
        pos = await self.positions.get(position_id)
        if pos is None:
            return
        try:
            await self.ledger.import_venue_fills(pos.symbol, since_ms=pos.opened_ms - 60_000)
        except ExchangeError as exc:
            log.warning("sync.fills_unavailable", position_id=position_id, error=str(exc))
            return
        venue_qty = await self._venue_quantity(pos.symbol)
        net = await self.ledger.settle(position_id, reason, closed_ms=self.clock())
        if net is not None:
            await self.cancel_protective_orders(pos.symbol)  # what is left of its stop/TP orders
            await self.refresh_orders(position_id)  # e.g. the stop that filled, the TP that expired
        elif venue_qty == 0.0:
            # venue flat but our fills do not add up: close on the venue's word, say so
            await self.orders.record_reconciliation("closed_without_fills", pos.symbol, {"position_id": position_id})
            await self.alerts.raise_alert("critical", "fills_missing", f"{pos.symbol}: the venue is flat but the "
                                          "recorded fills do not close the position; check the trade history",
                                          symbol=pos.symbol, details={"position_id": position_id})
        elif ensure:
            await self.ensure_stop(position_id)
