"""The engine's side of operator controls: at each step it picks up the pending
`operator_actions` of its mode (written by the CLI, the API process or Telegram) and carries them
out — a breaker reset through the risk manager (a drawdown reset re-bases the peak and keeps a
`drawdown_resets` row with the drawdown before it), a market close through the executor's normal
exit path, the per-symbol entry pause, the global pause — then marks each done, noop or failed."""

from __future__ import annotations

import asyncio
from typing import Any

import structlog

from quorum.domain import controls as c
from quorum.domain.breakers import DRAWDOWN
from quorum.domain.models import ExitReason
from quorum.engine.guard import short_reason
from quorum.logging import redact
from quorum.store.controls import ControlStore
from quorum.store.positions import ms_to_dt

log = structlog.get_logger("quorum.engine")


class EngineControls:
    """Owned by the engine (one per mode); `apply_pending(t)` runs inside the trading lock."""

    def __init__(self, engine: Any, store: ControlStore) -> None:
        self.engine = engine
        self.store = store
        self.paused: set[str] = set()

    async def load(self) -> None:
        """The per-symbol pause survives a restart."""
        self.paused = await self.store.paused_symbols()
        self.engine.runtime.paused_symbols = sorted(self.paused)

    async def apply_pending(self, t: int) -> int:
        """Carry out every pending control (oldest first); returns how many were finished. A lost
        database propagates (the step runs again); any other failure marks that control failed."""
        rows = await self.store.pending()
        for row in rows:
            try:
                status, result = await self._apply(row, t)
            except Exception as exc:
                if await self.engine.guard.database_down(exc):
                    raise
                status, result = "failed", {"error": redact(short_reason(exc))[:300]}
            await self.store.finish(row["id"], status, result)
            self.engine._dirty = True
            log.warning("control.applied", id=row["id"], action=row["action"], target=row["target"],
                        who=row["who"], surface=row["surface"], status=status)
            await self.engine.runtime.emit("control", {"action": row["action"], "target": row["target"],
                                                       "who": row["who"], "via": row["surface"], "status": status,
                                                       "detail": result.get("detail")})
        return len(rows)

    async def poll(self, interval_s: float = 1.0) -> None:
        """On live data the loop waits a whole monitor bar between steps: this task (started by
        `Engine.run` there) picks controls up every `interval_s` wall seconds in between, under
        the trading lock, at the clock's now. Runs until cancelled; never raises."""
        failing = False
        while True:
            await asyncio.sleep(interval_s)
            try:
                async with self.engine.trading_lock:
                    await self.apply_pending(self.engine.clock.now_ms())
            except Exception as exc:  # a lost database: the loop's own step notices and waits
                if not failing:  # one line per outage, not one per second
                    log.warning("control.poll_failed", error=type(exc).__name__)
                failing = True
            else:
                failing = False

    async def _apply(self, row: dict[str, Any], t: int) -> tuple[str, dict[str, Any]]:
        action, target, who = row["action"], row["target"], f"{row['who']} via {row['surface']}"
        if action == c.RESET_BREAKER:
            return await self._reset(target, who, row["id"], t)
        if action == c.CLOSE_POSITION:
            return await self._close(target, t)
        if action in (c.PAUSE_SYMBOL, c.RESUME_SYMBOL):
            sym = c.symbol_target(target)
            before = set(self.paused)
            (self.paused.add if action == c.PAUSE_SYMBOL else self.paused.discard)(sym)
            if self.paused == before:
                return "noop", {"detail": f"{sym} already {'paused' if action == c.PAUSE_SYMBOL else 'trading'}",
                                "paused_symbols": sorted(self.paused)}
            await self.store.save_paused_symbols(self.paused)
            self.engine.runtime.paused_symbols = sorted(self.paused)
            return "done", {"paused_symbols": sorted(self.paused)}
        if action == c.PAUSE:
            await self.engine.runtime.pause()
            return "done", {"paused": True}
        if action == c.RESUME:
            await self.engine.runtime.resume()
            return "done", {"paused": False}
        return "failed", {"error": f"the engine does not carry out {action!r}"}

    async def _reset(self, target: str, who: str, action_id: int, t: int) -> tuple[str, dict[str, Any]]:
        name, symbol = c.split_breaker(c.breaker_target(target))
        risk = self.engine.risk
        book = risk.book
        peak, equity = book.equity_peak, book.last_equity
        events = await risk.reset_breaker(name, actor=who, now_ms=t, symbol=symbol)
        if not events:
            return "noop", {"detail": f"{target} is not tripped"}
        self.engine.runtime.breakers = dict(risk.breakers_status(t))
        result: dict[str, Any] = {"breaker": target}
        if name == DRAWDOWN:
            dd = (peak - equity) / peak * 100.0 if peak and equity is not None and peak > 0 else None
            await self.store.record_drawdown_reset(record_at=ms_to_dt(t), peak_before=peak, equity_at_reset=equity,
                                                   drawdown_pct_before=dd, action_id=action_id, who=who)
            result.update(peak_before=peak, new_peak=risk.book.equity_peak,
                          drawdown_pct_before=None if dd is None else round(dd, 4))
        return "done", result

    async def _close(self, target: str, t: int) -> tuple[str, dict[str, Any]]:
        sym = c.symbol_target(target)
        ex = self.engine.executor
        pos = await ex.positions.open_for_symbol(sym)
        if pos is None or pos.position_id is None:
            return "noop", {"detail": f"no open position on {sym}"}
        res = await ex.close(pos.position_id, ExitReason.MANUAL.value)
        await self.engine._closed(pos.position_id, t)
        out = {"position_id": pos.position_id, "symbol": sym, "status": res.status, "price": res.price}
        if res.status != "closed":
            return "failed", {**out, "error": res.reason}
        closed = await ex.positions.closed_position(pos.position_id)
        if closed is not None:
            out["net_pnl"] = closed.net_pnl
        return "done", out
