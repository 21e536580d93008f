"""In-process runtime status: the engine writes it, the API, notifier and CLI read it.

One `RuntimeState` per process. The engine updates the fields as it works (scan times, provider
successes, positions, equity, breakers, decisions) and registers async control hooks; the API's
/control endpoints and the Telegram commands call `pause()`, `resume()` and `kill()`, which set
the flags and await the hooks. Plain attributes, no locking: everything runs on one event loop.

Times: `*_ms` fields are WALL-clock epoch ms (what /health compares against `time.time()`), even
in an accelerated replay; simulated times live in `sim_time_ms`.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import structlog

from quorum.logging import redact

log = structlog.get_logger(__name__)

ControlHook = Callable[[], Awaitable[Any]]
EventListener = Callable[[str, dict[str, Any]], Awaitable[None]]


def wall_ms() -> int:
    """Wall-clock epoch milliseconds."""
    return int(time.time() * 1000)


@dataclass
class RuntimeState:
    """Mutable status shared between the engine and the service surface.

    Fields the engine maintains:
    - `mode`: "backtest" | "paper" | "live"; `started_ms`: wall ms the service started.
    - `paused`: no new entries (exits and stops still managed); `kill_requested`: flatten asked.
    - `last_scan_ms`: wall ms of the last completed decision cycle; `scan_interval_s`: the
      expected seconds between cycles (the decision timeframe in wall time; in an accelerated
      replay the engine may set it smaller or leave it — /health uses it for staleness).
    - `last_market_data_ms`: wall ms of the last market data received; `exchange_ok` and
      `exchange_error`: last exchange call outcome.
    - `provider_last_success` {voter: wall ms}, `provider_last_error` {voter: short text};
      `providers`: the configured voter names (rules included when used).
    - `breakers` {name: reason} for breakers currently blocking entries; `paused_symbols`:
      symbols an operator paused entries on (`quorum pause SYMBOL`).
    - `last_decisions`: most recent decisions (newest last), dicts such as
      {"time_ms", "symbol", "action", "confidence", "votes": [{"voter", "action",
      "confidence", ...}], "abstentions": [...], "verdict": ...}.
    - `positions`: open positions as dicts with keys symbol, side, entry_price, mark_price,
      quantity, leverage, pnl, stop_price, liquidation_price, take_profit, trailing_active,
      trailing_stop, peak_price, opened_ms (missing keys are shown as null).
    - `equity`, `day_pnl`, `wallet_balance`, `unrealized_pnl`, `drawdown_pct` (from the equity
      peak), `sim_time_ms` (replay clock, if any).
    - `live_override`: {"who", "why", "at"} when live trading was started over a failing gate.
    - `database_ok` / `database_error`: the engine's own view of Postgres (False while it waits
      for the database to return; nothing trades meanwhile).
    - `engine`: loop counters {steps, failed_steps, consecutive_failures, cycles, cycles_skipped,
      catch_up_bars, database_outages, entries_blocked}; `funding`: paper funding events by rate
      source {published, fallback, fallback_rate}.
    - `cache_degraded`: why the engine's cache serves from process memory (Redis unreachable),
      None while Redis answers (set by the service surface's cache).
    """

    mode: str = "paper"
    started_ms: int = field(default_factory=wall_ms)
    paused: bool = False
    kill_requested: bool = False
    last_scan_ms: int | None = None
    scan_interval_s: float = 900.0
    last_market_data_ms: int | None = None
    exchange_ok: bool = True
    exchange_error: str | None = None
    providers: list[str] = field(default_factory=list)
    provider_last_success: dict[str, int] = field(default_factory=dict)
    provider_last_error: dict[str, str] = field(default_factory=dict)
    breakers: dict[str, str] = field(default_factory=dict)
    paused_symbols: list[str] = field(default_factory=list)
    last_decisions: deque[dict[str, Any]] = field(default_factory=lambda: deque(maxlen=20))
    positions: list[dict[str, Any]] = field(default_factory=list)
    equity: float | None = None
    wallet_balance: float | None = None
    unrealized_pnl: float | None = None
    drawdown_pct: float | None = None
    day_pnl: float = 0.0
    sim_time_ms: int | None = None
    live_override: dict[str, Any] | None = None
    symbols: list[str] = field(default_factory=list)
    database_ok: bool = True
    database_error: str | None = None
    engine: dict[str, Any] = field(default_factory=dict)
    funding: dict[str, Any] = field(default_factory=dict)
    cache_degraded: str | None = None
    # Async hooks the engine registers; called by pause()/resume()/kill().
    on_pause: ControlHook | None = None
    on_resume: ControlHook | None = None
    on_kill: ControlHook | None = None
    # Listeners for events (notifier): called as `await listener(kind, payload)`.
    listeners: list[EventListener] = field(default_factory=list)
    # The engine's event loop: control actions coming from another loop run there.
    loop: asyncio.AbstractEventLoop | None = None
    # Set only in the API process's mirror: wall ms of the last snapshot from the engine process.
    heartbeat_ms: int | None = None
    has_engine: bool = False

    # --- engine-side helpers ----------------------------------------------------------------
    def mark_scan(self, now_ms: int | None = None) -> None:
        """Record a completed decision cycle (wall time)."""
        self.last_scan_ms = now_ms if now_ms is not None else wall_ms()

    def mark_market_data(self, now_ms: int | None = None) -> None:
        self.last_market_data_ms = now_ms if now_ms is not None else wall_ms()

    def mark_exchange(self, ok: bool, error: str | None = None) -> None:
        self.exchange_ok = ok
        self.exchange_error = None if ok else redact(error or "error")[:200]

    def mark_provider(self, voter: str, ok: bool, error: str | None = None, now_ms: int | None = None) -> None:
        """Record a model call outcome for /health (error text is truncated; never a secret)."""
        if voter not in self.providers:
            self.providers.append(voter)
        if ok:
            self.provider_last_success[voter] = now_ms if now_ms is not None else wall_ms()
            self.provider_last_error.pop(voter, None)
        else:
            self.provider_last_error[voter] = redact(error or "error")[:200]

    def record_decision(self, decision: dict[str, Any]) -> None:
        self.last_decisions.append(decision)

    def set_breaker(self, name: str, reason: str | None) -> None:
        """Set (reason given) or clear (None) a breaker."""
        if reason is None:
            self.breakers.pop(name, None)
        else:
            self.breakers[name] = reason

    async def emit(self, kind: str, payload: dict[str, Any]) -> None:
        """Tell listeners (e.g. Telegram) about an event: trade_opened, trade_closed,
        stop_moved, breaker_tripped, breaker_reset, reconciliation, error. Never raises."""
        for listener in list(self.listeners):
            try:
                await listener(kind, payload)
            except Exception as exc:  # a notifier failure must never stop trading
                log.warning("event_listener_failed", kind=kind, error=type(exc).__name__)

    # --- control (API, Telegram, CLI) -------------------------------------------------------
    async def pause(self) -> None:
        self.paused = True
        if self.on_pause is not None:
            await self.on_pause()

    async def resume(self) -> None:
        self.paused = False
        self.kill_requested = False
        if self.on_resume is not None:
            await self.on_resume()

    async def kill(self) -> Any:
        """Stop new entries and flatten everything (the engine's hook does the flattening)."""
        self.paused = True
        self.kill_requested = True
        if self.on_kill is not None:
            return await self.on_kill()
        return None

    async def control(self, action: str) -> Any:
        """Run `pause` / `resume` / `kill` on the engine's loop, from whichever loop calls."""
        fn = {"pause": self.pause, "resume": self.resume, "kill": self.kill}[action]
        target = self.loop
        try:
            current = asyncio.get_running_loop()
        except RuntimeError:
            current = None
        if target is None or target is current or target.is_closed():
            return await fn()
        return await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(fn(), target))

    def uptime_s(self, now_ms: int | None = None) -> float:
        return max(0.0, ((now_ms if now_ms is not None else wall_ms()) - self.started_ms) / 1000.0)
