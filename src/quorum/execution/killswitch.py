"""Kill switch: block entries, cancel entry orders, close every position at market, keep a record
(bot_state `kill_switch`, a critical alert, a reconciliation event per action)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import structlog

from quorum.domain.models import ExitReason
from quorum.execution.exchange import ExchangeError
from quorum.execution.protection import Executor
from quorum.execution.reconcile import Reconciler, ReconcileReport
from quorum.store.state import StateRepository

log = structlog.get_logger(__name__)


@dataclass
class KillReport:
    reason: str
    cancelled: list[str] = field(default_factory=list)
    closed: list[dict[str, Any]] = field(default_factory=list)
    failed: list[dict[str, Any]] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.failed


class KillSwitch:
    def __init__(self, executor: Executor) -> None:
        self.ex = executor
        self.state = StateRepository(executor.ledger.pool)

    async def engage(self, reason: str, *, actor: str = "system") -> KillReport:
        """Idempotent: running it again closes whatever is still open."""
        self.ex.entries_allowed = False
        report = KillReport(reason)
        started = self.ex.clock()
        await self.state.set("kill_switch", {"engaged_ms": started, "reason": reason, "actor": actor, "done": False})
        # 1. entry orders (anything not reduce-only) are cancelled
        try:
            for o in await self.ex.exchange.fetch_open_orders():
                if not o.reduce_only:
                    await self.ex.om.cancel(o.symbol, o.client_order_id, conditional=o.conditional)
                    report.cancelled.append(o.client_order_id)
        except ExchangeError as exc:
            report.failed.append({"step": "cancel_entries", "error": str(exc)})
        # 2. venue positions we do not know are adopted, so they are closed like ours
        try:
            known = {p.symbol for p in await self.ex.positions.open_positions()}
            venue = {p.symbol: p for p in await self.ex.exchange.fetch_positions()}
            if any(s not in known for s in venue):
                await Reconciler(self.ex)._positions(ReconcileReport(), venue)
        except ExchangeError as exc:
            report.failed.append({"step": "adopt", "error": str(exc)})
        # 3. close everything at market
        for pos in await self.ex.positions.open_positions():
            assert pos.position_id is not None
            try:
                res = await self.ex.close(pos.position_id, ExitReason.KILL_SWITCH.value, ensure=True, purpose="kill")
            except ExchangeError as exc:
                report.failed.append({"position_id": pos.position_id, "error": str(exc)})
                continue
            entry = {"position_id": pos.position_id, "symbol": pos.symbol, "status": res.status, "price": res.price}
            (report.closed if res.status == "closed" else report.failed).append(entry)
        await self.ex.orders.record_reconciliation("kill_switch", None, {
            "reason": reason, "actor": actor, "cancelled": report.cancelled, "closed": report.closed,
            "failed": report.failed})
        await self.ex.alerts.raise_alert(
            "critical", "kill_switch", f"kill switch engaged by {actor}: {reason}; closed {len(report.closed)} "
            f"position(s), {len(report.failed)} failure(s)", details={"closed": report.closed, "failed": report.failed})
        await self.state.set("kill_switch", {"engaged_ms": started, "reason": reason, "actor": actor, "done": report.ok,
                                             "closed": report.closed, "failed": report.failed})
        log.warning("killswitch.engaged", reason=reason, closed=len(report.closed), failed=len(report.failed))
        return report
