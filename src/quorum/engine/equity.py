"""The engine's equity history: an account snapshot (wallet, unrealised P&L, equity, open
positions, gross exposure) at every execution-bar close and right after every fill, written to
`equity_snapshots` (`quorum.store.equity`), and the hourly retention run.

Per-position rows are not kept: equity is account level. A fill's row carries the fill's time
and the account as the engine sees it just after the fill was booked (in a catch-up, at that
bar). Writing is idempotent (a bar close or a fill has one row), so a step that runs again after
a database outage, or a restart, writes nothing twice. The running peak (since the last
drawdown breaker reset) gives the drawdown gauge without reading the history back.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import structlog

from quorum.domain.equity import FULL_RESOLUTION_MS, HOUR_MS
from quorum.store.equity import AccountSnapshot, EquityRepository, drawdown_base_ms, drawdown_since

log = structlog.get_logger("quorum.engine")


class EquityRecorder:
    """Writes the history for one engine (see the module docstring)."""

    def __init__(self, pool: Any, mode: str, exchange: Any, *, keep_ms: int = FULL_RESOLUTION_MS,
                 fills_written: Callable[[], int] | None = None) -> None:
        self.pool = pool
        # how many fills this process has stored so far (no new one: no need to look)
        self._fills_written = fills_written
        self._looked_at: int | None = None
        self.repo = EquityRepository(pool, mode)
        self.mode = mode
        self.exchange = exchange
        self.keep_ms = keep_ms
        self._last_fill_id: int | None = None
        self._peak: float | None = None
        self._next_compact_ms: int | None = None
        self._lock = asyncio.Lock()
        self.rows_written = 0
        self.drawdown_pct: float | None = None

    async def load(self) -> None:
        """Where the history stands (the engine's start): the last fill with a row and the peak."""
        if self._last_fill_id is None:
            # a history with no fill row yet starts at the current fills (older ones are not back-filled)
            recorded = await self.repo.last_fill_id()
            self._last_fill_id = recorded if recorded is not None else await self.repo.max_fill_id()
        if self._peak is None:
            dd = await drawdown_since(self.pool, self.mode, await drawdown_base_ms(self.pool, self.mode))
            self._peak = dd.peak

    async def account(self, at_ms: int) -> AccountSnapshot:
        """The account now, stamped `at_ms`."""
        balance = await self.exchange.balance()
        venue = await self.exchange.fetch_positions()
        gross = sum(abs(p.quantity) * float(p.mark_price or p.entry_price) for p in venue)
        return AccountSnapshot(at_ms, balance.wallet_balance, balance.unrealized_pnl, len(venue), gross)

    async def _write(self, snap: AccountSnapshot, kind: str, fill_id: int | None = None) -> None:
        if await self.repo.record_account(snap, kind=kind, fill_id=fill_id):
            self.rows_written += 1
        self._peak = snap.equity if self._peak is None else max(self._peak, snap.equity)
        self.drawdown_pct = (self._peak - snap.equity) / self._peak * 100.0 if self._peak > 0 else 0.0

    async def fills(self) -> int:
        """A row for every fill stored since the last call (the account as it is now, at the
        fill's time). Returns how many."""
        async with self._lock:
            written = self._fills_written() if self._fills_written is not None else None
            if written is not None and written == self._looked_at:
                return 0
            await self.load()
            assert self._last_fill_id is not None
            new = await self.repo.new_fills(self._last_fill_id)
            if not new:
                self._looked_at = written
                return 0
            snap = await self.account(new[-1][1])
            for fill_id, at_ms in new:
                await self._write(AccountSnapshot(at_ms, snap.wallet_balance, snap.unrealized_pnl,
                                                  snap.open_positions, snap.gross_exposure), "fill", fill_id)
                self._last_fill_id = fill_id
            self._looked_at = written
            return len(new)

    async def bar_closed(self, t: int) -> None:
        """The row of the execution bar closing at `t` (after that bar's fills' rows)."""
        await self.fills()
        async with self._lock:
            await self._write(await self.account(t), "bar")

    async def retention(self, t: int) -> None:
        """Compact hours older than the full-resolution window, at most once per hour of record time."""
        if self._next_compact_ms is not None and t < self._next_compact_ms:
            return
        self._next_compact_ms = t + HOUR_MS
        removed, written = await self.repo.compact(t, self.keep_ms)
        if removed:
            log.info("equity.compacted", rows=removed, hour_rows=written)

    def rebase(self) -> None:
        """Forget the running peak (a drawdown breaker reset): the next write reloads it."""
        self._peak = None
