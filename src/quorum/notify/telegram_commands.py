"""The Telegram commands a user of other trading bots expects (freqtrade's set), answered from the
running engine's state and the record in Postgres:

read:     /status /positions /trades [N] /profit /balance /daily [N] /performance /breakers /gate
          /alerts /actions /help
control:  /pause [SYMBOL] /resume [SYMBOL]           (at once)
          /ack ID /resolve ID                        (alerts, at once)
          /close SYMBOL  /reset_breaker NAME [SYMBOL]  /kill
                                                     (ask to confirm: reply `/confirm CODE`)

Every control is recorded in `operator_actions` (surface `telegram`, who `telegram:<user>`).
Confirmation codes are 4 digits, single use, and expire after `CONFIRM_TTL_S`.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import asyncpg
import structlog

from quorum.domain import controls as c
from quorum.domain.controls import ControlError
from quorum.domain.statistics import wilson_interval
from quorum.engine.runtime import RuntimeState
from quorum.operator import check, describe, record_done, submit
from quorum.risk.gate import check_gate, format_gate
from quorum.store import reports
from quorum.store.controls import ControlStore

log = structlog.get_logger(__name__)

CONFIRM_TTL_S = 120.0
HELP = """Commands:
/status - mode, equity, positions, breakers
/positions - open positions with stops
/trades [N] - the last closed trades
/profit - P&L, win rate (n, 95% interval), fees, funding
/balance - equity, wallet, unrealized
/daily [N] - P&L per UTC day
/performance - P&L by symbol
/breakers - tripped breakers, paused symbols
/gate - the go-live gate on the paper record
/alerts - open alerts; /ack ID, /resolve ID
/actions - recent operator actions
/pause [SYMBOL], /resume [SYMBOL] - entries (all, or one symbol)
/close SYMBOL - market-close a position (asks to confirm)
/reset_breaker NAME [SYMBOL] - drawdown, daily_loss, loss_streak, symbol_cooldown (asks to confirm)
/kill - flatten everything (asks to confirm)
/confirm CODE - confirm the asked action"""


@dataclass(frozen=True)
class Pending:
    action: str
    target: str | None
    who: str
    expires: float


def _money(x: Any) -> str:
    return "n/a" if x is None else f"{float(x):+.2f}" if float(x) else "0.00"


class TelegramCommands:
    """Answers one command text; `reply = await commands.handle(text, who)`."""

    def __init__(self, settings: Any, runtime: RuntimeState, pool: asyncpg.Pool | None,
                 status: Callable[[], Awaitable[dict[str, Any]]] | None, format_status: Callable[[dict[str, Any]], str],
                 *, control_wait_s: float = 10.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.settings = settings
        self.runtime = runtime
        self.pool = pool
        self._status = status
        self._format_status = format_status
        self.control_wait_s = control_wait_s
        self._clock = clock
        self.pending: dict[str, Pending] = {}

    @property
    def mode(self) -> str:
        return self.runtime.mode

    async def handle(self, text: str, who: str) -> str:
        parts = text.split()
        command = parts[0].split("@")[0].lower() if parts else ""
        args = parts[1:]
        fn = {
            "/status": self._status_cmd, "/positions": self._positions, "/trades": self._trades,
            "/profit": self._profit, "/balance": self._balance, "/daily": self._daily,
            "/performance": self._performance, "/breakers": self._breakers, "/gate": self._gate,
            "/alerts": self._alerts, "/actions": self._actions,
        }.get(command)
        try:
            if fn is not None:
                return await fn(args)
            if command in ("/pause", "/resume"):
                return await self._pause_resume(command == "/pause", args, who)
            if command in ("/ack", "/resolve"):
                return await self._alert(command == "/ack", args, who)
            if command in ("/close", "/reset_breaker", "/kill"):
                return await self._ask(command, args, who)
            if command == "/confirm":
                return await self._confirm(args, who)
        except ControlError as exc:
            return f"Not done: {exc}"
        return HELP

    def _db(self) -> asyncpg.Pool:
        if self.pool is None:
            raise ControlError("no database in reach")
        return self.pool

    # --- read -----------------------------------------------------------------------------------
    async def _status_cmd(self, _: list[str]) -> str:
        status = await self._status() if self._status else {"mode": self.mode, "paused": self.runtime.paused}
        return self._format_status(status)

    async def _positions(self, _: list[str]) -> str:
        if not self.runtime.positions:
            return "No open positions."
        lines = [f"Open positions ({len(self.runtime.positions)}):"]
        for p in self.runtime.positions:
            lines.append(f"{p.get('symbol')} {p.get('side')} qty {p.get('quantity')} x{p.get('leverage')} "
                         f"entry {p.get('entry_price')} mark {p.get('mark_price')} pnl {_money(p.get('pnl'))} "
                         f"stop {p.get('stop_price')} liq {p.get('liquidation_price')}")
        return "\n".join(lines)

    async def _trades(self, args: list[str]) -> str:
        n = _count(args, 10, 50)
        rows = await reports.last_closed_trades(self._db(), self.mode, n)
        if not rows:
            return "No closed trades yet."
        lines = [f"Last {len(rows)} closed trades:"]
        for r in rows:
            lines.append(f"{r['closed_at']:%Y-%m-%d %H:%M} {r['symbol']} {r['side']} {float(r['entry_price']):.6g}"
                         f"→{float(r['exit_price'] or 0):.6g} {_money(r['net_pnl'])} ({r['exit_reason']})")
        return "\n".join(lines)

    async def _profit(self, _: list[str]) -> str:
        r = await reports.profit_totals(self._db(), self.mode)
        n, wins = int(r["n"]), int(r["wins"])
        unreal = sum(float(p.get("pnl") or 0.0) for p in self.runtime.positions)
        if not n:
            return f"No closed trades yet. Unrealized {_money(unreal)}."
        lo, hi = wilson_interval(wins, n)
        pf = f"{float(r['won']) / float(r['lost']):.2f}" if float(r["lost"]) else "n/a"
        return (f"Closed trades: {n} ({wins} won)\nWin rate {wins / n:.1%} (n={n}, 95% CI {lo:.1%}–{hi:.1%})\n"
                f"Net P&L {_money(r['net'])} (fees {float(r['fees']):.2f}, funding {float(r['funding']):.2f})\n"
                f"Profit factor {pf}\nUnrealized {_money(unreal)}")

    async def _balance(self, _: list[str]) -> str:
        rt = self.runtime
        unreal = sum(float(p.get("pnl") or 0.0) for p in rt.positions)
        if rt.equity is None:
            return "No balance yet: the engine has not published one."
        return (f"Equity {rt.equity:.2f} USDT\nWallet {rt.wallet_balance or 0:.2f}\nUnrealized {_money(unreal)}\n"
                f"Day P&L {_money(rt.day_pnl)}\nOpen positions {len(rt.positions)}")

    async def _daily(self, args: list[str]) -> str:
        n = _count(args, 7, 60)
        rows = await reports.daily_pnl(self._db(), self.mode, n)
        if not rows:
            return "No closed trades yet."
        return "P&L per UTC day:\n" + "\n".join(
            f"{r['day']} {_money(r['net'])} ({r['n']} trades, {r['wins']} won)" for r in rows)

    async def _performance(self, _: list[str]) -> str:
        rows = await reports.pnl_by_symbol(self._db(), self.mode)
        if not rows:
            return "No closed trades yet."
        return "Performance by symbol:\n" + "\n".join(
            f"{r['symbol']} {_money(r['net'])} ({r['n']} trades, win rate {r['wins'] / r['n']:.0%})" for r in rows)

    async def _breakers(self, _: list[str]) -> str:
        lines = [f"{k}: {v}" for k, v in sorted(self.runtime.breakers.items())] or ["No breaker tripped."]
        if self.runtime.paused:
            lines.append("Entries paused (all symbols).")
        if self.runtime.paused_symbols:
            lines.append("Entries paused on: " + ", ".join(self.runtime.paused_symbols))
        return "\n".join(lines)

    async def _gate(self, _: list[str]) -> str:
        return format_gate(await check_gate(self._db(), self.settings, "paper"))

    async def _alerts(self, _: list[str]) -> str:
        rows = await ControlStore(self._db(), self.mode).open_alerts()
        if not rows:
            return "No open alerts."
        return "Open alerts (/ack ID, /resolve ID):\n" + "\n".join(
            f"#{r['id']} {r['severity']} {r['kind']}: {r['message'][:200]}"
            + (" (acknowledged)" if r["acknowledged_at"] else "") for r in rows)

    async def _actions(self, _: list[str]) -> str:
        rows = await ControlStore(self._db(), self.mode).recent(10)
        return "\n".join(f"{r['who']} via {r['surface']}: {describe(r)}" for r in rows) or "No operator actions."

    # --- control --------------------------------------------------------------------------------
    async def _pause_resume(self, pause: bool, args: list[str], who: str) -> str:
        if args:
            row = await submit(self._db(), self.mode, who=who, surface="telegram",
                               action=c.PAUSE_SYMBOL if pause else c.RESUME_SYMBOL, target=args[0],
                               wait_s=self.control_wait_s)
            return describe(row)
        await (self.runtime.pause() if pause else self.runtime.resume())
        await self._record(c.PAUSE if pause else c.RESUME, who, {"paused": self.runtime.paused})
        return "Paused: no new entries; open positions keep their stops." if pause else "Resumed."

    async def _alert(self, ack: bool, args: list[str], who: str) -> str:
        if not args:
            raise ControlError(f"say which alert: {'/ack' if ack else '/resolve'} ID (see /alerts)")
        row = await submit(self._db(), self.mode, who=who, surface="telegram",
                           action=c.ACK_ALERT if ack else c.RESOLVE_ALERT, target=args[0],
                           reason=" ".join(args[1:]) or None)
        return describe(row)

    async def _ask(self, command: str, args: list[str], who: str) -> str:
        self._expire()
        if command == "/kill":
            action, target, what = c.KILL, None, "flatten EVERYTHING (kill switch)"
        elif command == "/close":
            if not args:
                raise ControlError("say which: /close SYMBOL")
            action = c.CLOSE_POSITION
            target = await check(self._db(), self.mode, action, args[0])
            what = f"market-close the {target} position"
        else:
            if not args:
                raise ControlError("say which: /reset_breaker NAME [SYMBOL] (see /breakers)")
            action = c.RESET_BREAKER
            target = await check(self._db(), self.mode, action, ":".join(args[:2]))
            what = f"reset breaker {target}"
        code = f"{secrets.randbelow(9000) + 1000}"
        while code in self.pending:
            code = f"{secrets.randbelow(9000) + 1000}"
        self.pending[code] = Pending(action, target, who, self._clock() + CONFIRM_TTL_S)
        return f"To {what}, reply /confirm {code} within {CONFIRM_TTL_S:.0f}s."

    async def _confirm(self, args: list[str], who: str) -> str:
        self._expire()
        asked = self.pending.pop(args[0], None) if args else None
        if asked is None:
            return "No such confirmation code (or it expired): ask again."
        if asked.action == c.KILL:
            result = await self.runtime.kill()
            flattened = self.runtime.on_kill is not None
            await self._record(c.KILL, who, {"flattened": flattened}, "done" if flattened else "failed")
            reply = ("Kill switch engaged: flattening everything." if flattened
                     else "Kill requested, but no engine runs in this process: nothing was flattened.")
            if isinstance(result, dict) and result:
                reply += f"\n{result}"
            elif result is not None and hasattr(result, "closed"):
                reply += f"\nclosed {len(result.closed)} position(s), {len(result.failed)} failure(s)"
            return reply + "\nThe kill leaves a critical alert: /alerts, then /resolve ID when dealt with."
        row = await submit(self._db(), self.mode, who=who, surface="telegram", action=asked.action,
                           target=asked.target, wait_s=self.control_wait_s)
        return describe(row)

    def _expire(self) -> None:
        now = self._clock()
        for code in [k for k, p in self.pending.items() if p.expires <= now]:
            del self.pending[code]

    async def _record(self, action: str, who: str, result: dict[str, Any], status: str = "done") -> None:
        if self.pool is None:
            return
        try:
            await record_done(self.pool, self.mode, who=who, surface="telegram", action=action, status=status,
                              result=result)
        except Exception as exc:  # the record never stands in the way of the control
            log.warning("telegram.record_failed", action=action, error=type(exc).__name__)


def _count(args: list[str], default: int, most: int) -> int:
    try:
        return max(1, min(most, int(args[0]))) if args else default
    except ValueError:
        return default
