"""Reconciliation: make Postgres and the venue agree, at start-up and periodically.

Steps (each correction is one `reconciliation_events` row):
1. resolve orders whose outcome we do not know (pending/submitted: looked up by client id,
   never resent) and refresh open ones;                              → resolved_pending / order_synced
2. book entry orders that filled but have no position (crash between fill and booking); → booked_entry
3. import venue trades we lack; close positions the venue has closed (stop, TP,
   liquidation) and fix quantities;                                   → closed_on_exchange
4. adopt venue positions Postgres does not know (protected like ours);→ adopted_position
5. every open position gets exactly one stop of its size;             → replaced_stop
6. reduce-only orders on flat symbols are cancelled;                  → cancelled_orphan
7. funding payments are stored.
Only a run that completes sets `executor.entries_allowed = True`. A failing run records why,
raises a critical alert, keeps entries blocked and still tries to protect what exists.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import structlog

from quorum.domain.models import OrderState, PositionState
from quorum.execution.exchange import ExchangeError, VenuePosition
from quorum.execution.protection import Executor

log = structlog.get_logger(__name__)


@dataclass
class ReconcileReport:
    ok: bool = False
    corrections: list[dict[str, Any]] = field(default_factory=list)
    error: str | None = None

    def count(self, kind: str) -> int:
        return sum(1 for c in self.corrections if c["kind"] == kind)


class Reconciler:
    def __init__(self, executor: Executor, *, adopt_stop_pct: float = 8.0) -> None:
        self.ex = executor
        self.exchange = executor.exchange
        self.orders = executor.orders
        self.positions = executor.positions
        self.adopt_stop_pct = adopt_stop_pct

    async def _record(self, report: ReconcileReport, kind: str, symbol: str | None, **details: Any) -> None:
        report.corrections.append({"kind": kind, "symbol": symbol, **details})
        await self.orders.record_reconciliation(kind, symbol, details)
        log.info("reconcile.correction", kind=kind, symbol=symbol, **details)

    async def run(self) -> ReconcileReport:
        """One full pass; see the module docstring."""
        report = ReconcileReport()
        self.positions.forget()  # the record is read afresh, as after a restart
        try:
            await self.exchange.check_position_mode()
            await self._orders(report)
            await self._unbooked(report)
            venue = {p.symbol: p for p in await self.exchange.fetch_positions()}
            await self._positions(report, venue)
            await self._stops(report)
            await self._orphans(report)
            for pos in await self.positions.open_positions():
                await self.ex.ledger.sync_funding(pos)
        except Exception as exc:  # crash-only: record, alert, protect what we can
            report.error = f"{type(exc).__name__}: {exc}"
            self.ex.entries_allowed = False
            await self._record(report, "failed", None, error=report.error)
            await self.ex.alerts.raise_alert("critical", "reconciliation_failed",
                                             f"reconciliation failed, entries blocked: {report.error}")
            await self._protect_best_effort()
            return report
        report.ok = True
        self.ex.entries_allowed = True
        return report

    async def _orders(self, report: ReconcileReport) -> None:
        for row in await self.orders.open_orders():
            cid, before = row["client_order_id"], row["state"]
            if before in (OrderState.PENDING.value, OrderState.SUBMITTED.value):
                res = await self.ex.om.resolve(cid)
                await self._record(report, "resolved_pending", row["symbol"], client_order_id=cid,
                                   before=before, after=res.state.value)
                continue
            venue = await self.exchange.fetch_order(row["symbol"], cid,
                                                    conditional=row["type"] in ("stop_market", "take_profit_market"))
            if venue is None:
                await self.orders.transition(cid, OrderState.CANCELLED, detail={"reconcile": "unknown at venue"})
                await self._record(report, "order_vanished", row["symbol"], client_order_id=cid)
            elif venue.state.value != before or venue.filled_quantity != float(row["filled_quantity"]):
                res = await self.ex.om.apply_venue(venue)
                await self._record(report, "order_synced", row["symbol"], client_order_id=cid, before=before,
                                   after=res.state.value)

    async def _unbooked(self, report: ReconcileReport) -> None:
        for row in await self.orders.unbooked_entries():
            info = await self.orders.first_event_detail(row["client_order_id"])
            pid = info.get("position_id")
            if not pid:
                continue
            holder = await self.positions.open_for_symbol(row["symbol"])
            if holder is not None and holder.position_id != pid:  # e.g. adopted meanwhile: same venue position
                await self.orders.set_position(row["client_order_id"], str(holder.position_id))
                await self.orders.link_fills()
                await self._record(report, "linked_entry", row["symbol"], position_id=holder.position_id,
                                   client_order_id=row["client_order_id"])
                continue
            pos = await self.ex.ledger.book_entry(row["client_order_id"], pid, opened_ms=self.ex.clock())
            if pos is not None:
                await self._record(report, "booked_entry", row["symbol"], position_id=pid,
                                   client_order_id=row["client_order_id"], quantity=pos.quantity)

    async def _positions(self, report: ReconcileReport, venue: dict[str, VenuePosition]) -> None:
        for pos in await self.positions.open_positions():
            assert pos.position_id is not None
            before = pos.quantity
            await self.ex.sync_position(pos.position_id, ensure=False)
            row = await self.positions.get_row(pos.position_id)
            if row and row["status"] == "closed":
                await self._record(report, "closed_on_exchange", pos.symbol, position_id=pos.position_id,
                                   exit_reason=row["exit_reason"], net_pnl=float(row["net_pnl"]))
            elif row and abs(float(row["quantity"]) - before) > 1e-12:
                await self._record(report, "quantity_corrected", pos.symbol, position_id=pos.position_id,
                                   before=before, after=float(row["quantity"]))
        known = {p.symbol for p in await self.positions.open_positions()}
        for symbol, vp in venue.items():
            if symbol not in known:
                await self._adopt(report, vp)

    async def _adopt(self, report: ReconcileReport, vp: VenuePosition) -> None:
        """A venue position we have no record of: take it under protection and say so."""
        orders = await self.exchange.fetch_open_orders(vp.symbol)
        stops = [o for o in orders if o.type == "stop_market" and o.reduce_only and o.stop_price]
        if stops:
            stop = max((o.stop_price or 0.0 for o in stops), key=lambda p: p * vp.side.sign)
        else:
            stop = vp.entry_price * (1 - vp.side.sign * self.adopt_stop_pct / 100)
        now = self.ex.clock()
        pid = f"adopt-{vp.symbol}-{now}"
        state = PositionState(symbol=vp.symbol, side=vp.side, entry_price=vp.entry_price, quantity=vp.quantity,
                              initial_quantity=vp.quantity, initial_stop=stop, stop_price=stop, take_profit=None,
                              leverage=vp.leverage or 1.0, opened_ms=now, peak_price=vp.entry_price,
                              liquidation_price=vp.liquidation_price, position_id=pid)
        await self.positions.open(state, margin_mode=vp.margin_mode, margin=vp.isolated_margin)
        # the venue trades that built it become its (foreign) entry fills
        await self.ex.ledger.import_venue_fills(vp.symbol)
        await self._record(report, "adopted_position", vp.symbol, position_id=pid, side=vp.side.value,
                           quantity=vp.quantity, entry_price=vp.entry_price, stop_price=stop)
        await self.ex.alerts.raise_alert("warning", "adopted_position",
                                         f"{vp.symbol}: unknown {vp.side.value} position of {vp.quantity} adopted "
                                         f"and protected at {stop}", symbol=vp.symbol, details={"position_id": pid})

    async def _stops(self, report: ReconcileReport) -> None:
        for pos in await self.positions.open_positions():
            assert pos.position_id is not None
            _, stops, good = await self.ex.stop_status(pos)
            if good and len(stops) == 1:
                continue
            ok = await self.ex.ensure_stop(pos.position_id)
            await self._record(report, "replaced_stop" if not good else "cancelled_extra_stops", pos.symbol,
                               position_id=pos.position_id, stops_before=len(stops), protected=ok)

    async def _orphans(self, report: ReconcileReport) -> None:
        venue_symbols = {p.symbol for p in await self.exchange.fetch_positions()}
        for o in await self.exchange.fetch_open_orders():
            if o.reduce_only and o.symbol not in venue_symbols:
                await self.ex.om.cancel(o.symbol, o.client_order_id, conditional=o.conditional)
                await self._record(report, "cancelled_orphan", o.symbol, client_order_id=o.client_order_id)

    async def _protect_best_effort(self) -> None:
        try:
            for pos in await self.positions.open_positions():
                if pos.position_id:
                    try:
                        await self.ex.ensure_stop(pos.position_id)
                    except ExchangeError as exc:
                        log.error("reconcile.protect_failed", position_id=pos.position_id, error=str(exc))
        except Exception as exc:  # the database itself may be the problem
            log.error("reconcile.protect_unavailable", error=str(exc))
