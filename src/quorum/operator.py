"""One seam for every operator control, whatever the surface (CLI, API, Telegram).

    row = await submit(pool, "paper", who="alice", surface="cli", action="close_position",
                       target="BTCUSDT", reason="news", wait_s=15)

Targets are checked first (`ControlError`, one line, nothing recorded); the control is then
recorded in `operator_actions`. Alert controls are applied at once; the others are carried out by
the engine trading `mode` at its next step — `submit` waits up to `wait_s` for that and returns
the row as it stands (`status` pending when no engine picked it up in time: it will be carried out
when the engine runs).
"""

from __future__ import annotations

from typing import Any

import asyncpg

from quorum.domain import controls as c
from quorum.domain.controls import ControlError
from quorum.store.controls import RECENT_KEYS, ControlStore


def normalise_target(action: str, target: str | None) -> str | None:
    """The stored target of `action` (breaker key, symbol, alert id); ControlError when invalid."""
    if action == c.RESET_BREAKER:
        return c.breaker_target(target or "")
    if action in (c.CLOSE_POSITION, c.PAUSE_SYMBOL, c.RESUME_SYMBOL):
        return c.symbol_target(target or "")
    if action in (c.ACK_ALERT, c.RESOLVE_ALERT):
        try:
            return str(int(str(target)))
        except ValueError:
            raise ControlError(f"not an alert id: {target!r}") from None
    if action in (c.PAUSE, c.RESUME, c.KILL):
        return None
    raise ControlError(f"unknown control {action!r}")


async def check(pool: asyncpg.Pool, mode: str, action: str, target: str | None) -> str | None:
    """The normalised target, when the control can be taken now (a close needs an open position
    on the symbol); ControlError otherwise. Nothing is recorded."""
    tgt = normalise_target(action, target)
    if action == c.CLOSE_POSITION:
        held = await ControlStore(pool, mode).open_positions_on(tgt)
        if not held:
            raise ControlError(f"no open {mode} position on {tgt}")
    return tgt


async def submit(pool: asyncpg.Pool, mode: str, *, who: str, surface: str, action: str,
                 target: str | None = None, reason: str | None = None, wait_s: float = 0.0) -> dict[str, Any]:
    """Check, record and (alert controls) apply or (engine controls) wait for one control; the
    `operator_actions` row as a dict."""
    if surface not in c.SURFACES:
        raise ControlError(f"unknown surface {surface!r}")
    tgt = await check(pool, mode, action, target)
    store = ControlStore(pool, mode)
    if action in (c.ACK_ALERT, c.RESOLVE_ALERT):
        assert tgt is not None
        fn = store.ack_alert if action == c.ACK_ALERT else store.resolve_alert
        done = await fn(int(tgt), who, surface, reason)
        row = await store.get(done["id"])
        assert row is not None
        return {k: row[k] for k in RECENT_KEYS}
    if action not in c.ENGINE_ACTIONS:
        raise ControlError(f"{action} is not queued for the engine")
    aid = await store.request(who, surface, action, tgt, reason)
    row = await store.wait(aid, wait_s) if wait_s > 0 else await store.get(aid)
    assert row is not None
    return {k: row[k] for k in RECENT_KEYS}


async def record_done(pool: asyncpg.Pool, mode: str, *, who: str, surface: str, action: str,
                      reason: str | None = None, result: dict[str, Any] | None = None, status: str = "done") -> int:
    """Record a control another path already carried out (the global pause, resume and kill
    that act on the running engine directly)."""
    return await ControlStore(pool, mode).request(who, surface, action, None, reason, status=status, result=result)


def describe(row: dict[str, Any]) -> str:
    """One line for a person: `#12 close_position BTCUSDT: done (closed at 101234.5)`."""
    result = row.get("result") or {}
    extra = result.get("detail") or result.get("error")
    if extra is None and row.get("action") == c.CLOSE_POSITION and result.get("price") is not None:
        extra = f"closed at {result['price']:.10g}" + (f", net P&L {result['net_pnl']:.2f}"
                                                    if result.get("net_pnl") is not None else "")
    if extra is None and result.get("drawdown_pct_before") is not None:
        extra = (f"drawdown before reset {result['drawdown_pct_before']:.2f}%, "
                 f"peak re-based to {result['new_peak']:.10g}")
    status = row.get("status")
    if status == "pending":
        extra = "queued: the running engine carries it out at its next step"
    target = f" {row['target']}" if row.get("target") else ""
    return f"#{row.get('id')} {row.get('action')}{target}: {status}" + (f" ({extra})" if extra else "")
