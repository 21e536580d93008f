"""Operator controls from the command line (each recorded in `operator_actions`, shown on /status):

- `quorum reset-breaker NAME [--symbol S]`: drawdown | daily_loss | loss_streak | symbol_cooldown
- `quorum close SYMBOL`: market-close the open position through the engine's exit path
- `quorum pause [SYMBOL]` / `quorum resume [SYMBOL]`: entries on one symbol (or all)
- `quorum alerts` (open alerts), `quorum alerts ack ID`, `quorum alerts resolve ID`
- `quorum actions`: the recent controls

Engine controls are written to Postgres and carried out by the running `quorum run` at its next
step; the command waits `--wait` seconds for that. Exit 0 done/noop/queued, 1 failed, 2 a bad
target (one line).
"""

from __future__ import annotations

import asyncio
import getpass
import json
import sys
from typing import Any

import typer

from quorum.api.status import jsonable
from quorum.bootstrap import record_pool
from quorum.config import Settings, load_settings
from quorum.domain import controls as c
from quorum.domain.controls import ControlError
from quorum.logging import configure_logging
from quorum.operator import describe, submit
from quorum.store.controls import ControlStore
from quorum.store.db import DatabaseUnavailable

WHO = typer.Option(None, "--who", help="Who takes the action (recorded; default: your user name).")
WHY = typer.Option(None, "--why", help="Why (recorded).")
WAIT = typer.Option(15.0, "--wait", help="Seconds to wait for the running engine to carry it out.")
MODE = typer.Option(None, "--mode", help="Which record (default TRADING_MODE).")
AS_JSON = typer.Option(False, "--json", help="Print the recorded action as JSON.")


def _mode(settings: Settings, mode: str | None) -> str:
    return mode or settings.trading_mode.value


def _who(who: str | None) -> str:
    if who:
        return who
    try:
        return getpass.getuser()
    except Exception:
        return "cli"


async def _submit(settings: Settings, mode: str, **kw: Any) -> dict[str, Any]:
    async with record_pool(settings, max_size=2) as pool:
        return await submit(pool, mode, surface="cli", **kw)


def run_control(action: str, target: str | None, who: str | None, why: str | None, wait: float,
                mode: str | None, as_json: bool) -> None:
    """Submit one control and print its outcome; the exit code follows the status."""
    settings = load_settings()
    configure_logging(settings)
    try:
        row = asyncio.run(_submit(settings, _mode(settings, mode), who=_who(who), action=action, target=target,
                                  reason=why, wait_s=wait))
    except ControlError as exc:
        print(f"error: {exc}", file=sys.stderr)
        raise typer.Exit(2) from None
    except DatabaseUnavailable as exc:
        print(f"error: {exc}", file=sys.stderr)
        raise typer.Exit(1) from None
    print(json.dumps(jsonable(row), indent=2) if as_json else describe(row))
    raise typer.Exit(1 if row["status"] == "failed" else 0)


def register(app: typer.Typer) -> None:
    @app.command("reset-breaker")
    def reset_breaker_cmd(name: str = typer.Argument(..., help="drawdown | daily_loss | loss_streak | "
                                                                "symbol_cooldown"),
                          symbol: str = typer.Option(None, "--symbol", help="The symbol of a symbol_cooldown."),
                          who: str = WHO, why: str = WHY, wait: float = WAIT, mode: str = MODE,
                          as_json: bool = AS_JSON) -> None:
        """Reset a tripped breaker (a drawdown reset re-bases the peak; the record keeps the drawdown)."""
        target = name if symbol is None else f"{name}:{symbol}"
        run_control(c.RESET_BREAKER, target, who, why, wait, mode, as_json)

    @app.command("close")
    def close_cmd(symbol: str = typer.Argument(..., help="Symbol of the open position, e.g. BTCUSDT."),
                  who: str = WHO, why: str = WHY, wait: float = WAIT, mode: str = MODE,
                  as_json: bool = AS_JSON) -> None:
        """Close one open position at market through the running engine's exit path."""
        run_control(c.CLOSE_POSITION, symbol, who, why, wait, mode, as_json)

    @app.command("pause")
    def pause_cmd(symbol: str = typer.Argument(None, help="Pause entries on this symbol only (default: all)."),
                  who: str = WHO, why: str = WHY, wait: float = WAIT, mode: str = MODE,
                  as_json: bool = AS_JSON) -> None:
        """Stop new entries (on one symbol, or all); exits and stops are still managed."""
        run_control(c.PAUSE_SYMBOL if symbol else c.PAUSE, symbol, who, why, wait, mode, as_json)

    @app.command("resume")
    def resume_cmd(symbol: str = typer.Argument(None, help="Resume entries on this symbol (default: all)."),
                   who: str = WHO, why: str = WHY, wait: float = WAIT, mode: str = MODE,
                   as_json: bool = AS_JSON) -> None:
        """Take new entries again (on one symbol, or all)."""
        run_control(c.RESUME_SYMBOL if symbol else c.RESUME, symbol, who, why, wait, mode, as_json)

    @app.command("alerts")
    def alerts_cmd(action: str = typer.Argument("list", help="list | ack | resolve"),
                   alert_id: str = typer.Argument(None, help="The alert id (ack, resolve)."),
                   who: str = WHO, why: str = WHY, as_json: bool = AS_JSON) -> None:
        """Open alerts; acknowledge one (seen) or resolve it (it no longer blocks the go-live gate)."""
        if action in ("ack", "resolve"):
            if alert_id is None:
                print(f"error: quorum alerts {action} needs an alert id", file=sys.stderr)
                raise typer.Exit(2)
            run_control(c.ACK_ALERT if action == "ack" else c.RESOLVE_ALERT, alert_id, who, why, 0.0, None, as_json)
        if action != "list":
            print(f"error: unknown alerts action {action!r}: list, ack or resolve", file=sys.stderr)
            raise typer.Exit(2)
        settings = load_settings()
        configure_logging(settings)
        rows = asyncio.run(_list(settings, "alerts"))
        _print_rows(rows, as_json, _alert_line, "no open alerts")

    @app.command("actions")
    def actions_cmd(limit: int = typer.Option(20, help="How many."), mode: str = MODE,
                    as_json: bool = AS_JSON) -> None:
        """The recent operator controls (newest first): who, through what, why, and what came of it."""
        settings = load_settings()
        configure_logging(settings)
        rows = asyncio.run(_list(settings, "actions", _mode(settings, mode), limit))
        _print_rows(rows, as_json, lambda r: f"{r['at']:%Y-%m-%d %H:%M:%S} {r['who']} via {r['surface']}: "
                                             f"{describe(r)}" + (f" — {r['reason']}" if r["reason"] else ""),
                    "no operator actions")


async def _list(settings: Settings, what: str, mode: str = "paper", limit: int = 20) -> list[dict[str, Any]]:
    async with record_pool(settings, max_size=2) as pool:
        store = ControlStore(pool, mode)
        return await store.open_alerts() if what == "alerts" else await store.recent(limit)


def _alert_line(r: dict[str, Any]) -> str:
    ack = f"(acknowledged by {r['acknowledged_by']}) " if r["acknowledged_by"] else ""
    return f"#{r['id']} {r['severity']:<8} {r['kind']} [{r['mode']}] {ack}{r['message'][:160]}"


def _print_rows(rows: list[dict[str, Any]], as_json: bool, line: Any, empty: str) -> None:
    if as_json:
        print(json.dumps(jsonable(rows), indent=2))
    else:
        print("\n".join(line(r) for r in rows) if rows else empty)
