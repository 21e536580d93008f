"""Book-keeping of positions from fills: everything is recomputed from the stored fills, so a
repeat (after a crash or a replayed venue answer) changes nothing.

- `book_entry` creates the position row from its entry order's fills (+ the stop/TP/leverage
  stored with the order before it was sent);
- `settle` sets the position's quantity and fees from its fills and closes it when flat
  (exit price = quantity-weighted exit fills, gross P&L from the entry price);
- `import_venue_fills` stores venue trades we have not seen (including trades of orders we
  never sent, e.g. a liquidation) so no fill is lost;
- `sync_funding` stores funding payments and adds them to the position's costs.
"""

from __future__ import annotations

from typing import Any

import asyncpg
import structlog

from quorum.domain.exits import exit_reason_for_order
from quorum.domain.fills import gross_pnl
from quorum.domain.models import OrderState, PositionState, Side
from quorum.domain.orders import is_valid_client_id
from quorum.execution.exchange import Exchange, OrderRequest, VenueFill
from quorum.store.orders import OrderRepository
from quorum.store.positions import PositionRepository, dt_to_ms, row_to_state
from quorum.store.settlement import lock_position, settlement_fills

log = structlog.get_logger(__name__)
QTY_EPS = 1e-9


class Ledger:
    def __init__(self, pool: asyncpg.Pool, mode: str, exchange: Exchange) -> None:
        self.pool = pool
        self.mode = mode
        self.exchange = exchange
        self.orders = OrderRepository(pool, mode)
        self.positions = PositionRepository(pool, mode)
        self.positions.forget()  # a new owner of the mode's positions (a start) reads them afresh
        self._funding_seen: dict[str, set[int]] = {}  # position id → funding times already stored
        self._known_trades: dict[str, set[str]] = {}  # symbol → venue trade ids already stored
        self._settled_at: dict[str, int] = {}  # position id → `orders.fill_writes` when it was last settled

    async def book_entry(self, entry_cid: str, position_id: str, *, opened_ms: int) -> PositionState | None:
        """Create (once) the position of a filled entry order. Returns the position or None."""
        existing = await self.positions.get(position_id)
        if existing is not None:
            return existing
        order = await self.orders.get(entry_cid)
        if order is None or float(order["filled_quantity"]) <= 0:
            return None
        info = await self.orders.first_event_detail(entry_cid)
        fills = await self.orders.fills_for_order(entry_cid)
        qty = sum(float(f["quantity"]) for f in fills) or float(order["filled_quantity"])
        avg = (sum(float(f["quantity"]) * float(f["price"]) for f in fills) / qty) if fills else float(
            order["average_price"])
        fees = sum(float(f["fee"]) for f in fills)
        side = Side.LONG if order["side"] == "buy" else Side.SHORT
        if fills:  # opened when the venue filled it: its funding, stops and hold times count from there
            opened_ms = min(opened_ms, min(int(f["at"].timestamp() * 1000) for f in fills))
        lev = float(info.get("leverage") or 1)
        stop = float(info.get("stop_price") or 0)
        state = PositionState(
            symbol=order["symbol"], side=side, entry_price=avg, quantity=qty, initial_quantity=qty,
            initial_stop=stop, stop_price=stop, take_profit=info.get("take_profit"), leverage=lev,
            opened_ms=opened_ms, peak_price=avg, atr=info.get("atr"), position_id=position_id,
            decision_id=order["decision_id"])
        with self.positions.uncommitted_on_failure():
            async with self.pool.acquire() as conn, conn.transaction():
                await self.positions.open(state, margin_mode=info.get("margin_mode", "isolated"),
                                          margin=qty * avg / lev, risk_usd=info.get("risk_usd"), fees=fees, conn=conn)
                await self.orders.set_position(entry_cid, position_id, conn=conn)
                await self.orders.set_fills_position(entry_cid, position_id, conn=conn)
        log.info("position.opened", position_id=position_id, symbol=state.symbol, qty=qty, entry=avg)
        return state

    async def settle(self, position_id: str, exit_reason: str | None, *, closed_ms: int) -> float | None:
        """Quantity and fees from the fills; close when flat. Returns net P&L when closed."""
        mark = self.orders.fill_writes
        if self._settled_at.get(position_id) == mark:
            return None  # no fill stored since it was settled open: nothing would change
        await self.orders.link_fills()
        with self.positions.uncommitted_on_failure():
            net = await self._settle(position_id, exit_reason, closed_ms)
        if net is None:
            self._settled_at[position_id] = mark
        else:
            self._settled_at.pop(position_id, None)
            self._funding_seen.pop(position_id, None)
        return net

    async def _settle(self, position_id: str, exit_reason: str | None, closed_ms: int) -> float | None:
        async with self.pool.acquire() as conn, conn.transaction():
            row = await lock_position(conn, position_id)
            if row is None or row["status"] != "open":
                return None
            pos = row_to_state(row)
            fills = await settlement_fills(conn, position_id)
            open_side = "buy" if pos.side is Side.LONG else "sell"
            entries = [f for f in fills if f["side"] == open_side]
            exits = [f for f in fills if f["side"] != open_side]
            # an adopted position may have no entry fills on record: its adopted size stands in
            in_qty = sum(float(f["quantity"]) for f in entries) if entries else pos.initial_quantity
            out_qty = sum(float(f["quantity"]) for f in exits)
            fees = sum(float(f["fee"]) for f in fills)
            delta_fees = fees - float(row["fees"])
            if abs(delta_fees) > 1e-12:
                await self.positions.add_costs(position_id, fees=delta_fees, conn=conn)
            remaining = max(in_qty - out_qty, 0.0)
            if remaining > QTY_EPS or not exits:
                if abs(remaining - pos.quantity) > QTY_EPS:
                    await self.positions.set_quantity(position_id, remaining, conn=conn)
                return None
            if exit_reason is None:  # the order that closed it says why
                last = exits[-1]
                trigger = last["order_stop_price"]
                exit_reason = exit_reason_for_order(last["purpose"], last["client_order_id"], pos,
                                                    None if trigger is None else float(trigger)).value
            exit_price = sum(float(f["quantity"]) * float(f["price"]) for f in exits) / out_qty
            gross = sum(gross_pnl(pos.side, float(f["quantity"]), pos.entry_price, float(f["price"])) for f in exits)
            # closed when its last exit filled (after a catch-up that is an earlier bar than now)
            last_fill_ms = max(int(f["at"].timestamp() * 1000) for f in exits)
            net = await self.positions.close(position_id, exit_price=exit_price, gross_pnl=gross,
                                             exit_reason=exit_reason, closed_ms=min(closed_ms, last_fill_ms),
                                             conn=conn)
        log.info("position.closed", position_id=position_id, reason=exit_reason, net=net)
        return net

    async def import_venue_fills(self, symbol: str, since_ms: int | None = None) -> list[tuple[VenueFill, str]]:
        """Store every venue trade of `symbol` we lack. Returns (fill, purpose) of new ones."""
        trades = await self.exchange.fetch_fills(symbol, since_ms=since_ms)
        known = self._known_trades.get(symbol)
        if known is None or any(t.trade_id not in known for t in trades):
            known = self._known_trades[symbol] = await self.orders.known_trade_ids(symbol)
        new: list[tuple[VenueFill, str]] = []
        for t in trades:
            if t.trade_id in known:
                continue
            cid = t.client_order_id
            row = await self.orders.get(cid) if cid else None
            if row is None and cid is not None and t.exchange_order_id:
                row = await self.orders.get_by_exchange_id(t.exchange_order_id)
            if row is None:  # a trade of an order we did not send (liquidation, manual)
                if not (cid and is_valid_client_id(cid)):
                    cid = f"venue-{t.exchange_order_id or t.trade_id}"[:36]
                row = await self.orders.get(cid)
                if row is None:
                    holder = await self.positions.open_for_symbol(symbol)
                    await self.orders.insert_pending(
                        OrderRequest(cid, symbol, t.order_side, "market", t.quantity, None, True), purpose="exit",
                        position_id=holder.position_id if holder else None,
                        detail={"foreign": True, "exchange_order_id": t.exchange_order_id})
                    await self.orders.transition(cid, OrderState.FILLED, filled_quantity=t.quantity,
                                                 average_price=t.price, exchange_order_id=t.exchange_order_id)
                    row = await self.orders.get(cid)
                    assert row is not None
            if await self.orders.record_fill(t, row["client_order_id"], position_id=row["position_id"]):
                new.append((t, row["purpose"]))
            known.add(t.trade_id)
        return new

    async def sync_funding(self, position: PositionState) -> float:
        """Store the venue's funding payments for an open position; returns the amount added."""
        assert position.position_id is not None
        entries = await self.exchange.funding_history(position.symbol, since_ms=position.opened_ms)
        added = 0.0
        seen = self._funding_seen.setdefault(position.position_id, set())
        for e in entries:
            if e.time_ms in seen:  # stored by an earlier call of this process
                continue
            with self.positions.uncommitted_on_failure():
                async with self.pool.acquire() as conn, conn.transaction():
                    ok = await self.orders.record_funding(
                        position_id=position.position_id, symbol=e.symbol, time_ms=e.time_ms, rate=e.rate or 0.0,
                        mark_price=e.mark_price or 0.0, quantity=e.quantity or position.quantity, amount=e.amount,
                        conn=conn)
                    if ok:
                        await self.positions.add_costs(position.position_id, funding=e.amount, conn=conn)
            seen.add(e.time_ms)
            if ok:
                added += e.amount
        return added


def row_opened_ms(row: dict[str, Any]) -> int:
    return dt_to_ms(row["opened_at"])
