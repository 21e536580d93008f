"""Telegram notifications and commands over the raw Bot API (httpx).

Enabled when TELEGRAM_BOT_TOKEN and TELEGRAM_CHAT_ID are set. Events the engine emits through
`RuntimeState.emit` (trade opened/closed, stop moved, breaker tripped/reset, reconciliation
corrections, errors, operator controls carried out) are queued and sent to the allowed chat; a
sender failure never blocks trading. Commands (`quorum.notify.telegram_commands`: /status
/positions /trades /profit /balance /daily /performance /breakers /gate /pause /resume /close
/reset_breaker /kill /help ...) are obeyed from the allowed chat only; a message from any other
chat is ignored and logged without its content. The token is part of every Bot API URL, so
neither URLs nor exception texts are ever logged — only method names and error types.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from typing import Any

import asyncpg
import httpx
import structlog

from quorum.config import Settings
from quorum.engine.runtime import RuntimeState
from quorum.logging import redact
from quorum.notify.telegram_commands import HELP, TelegramCommands
from quorum.scrub import scrub

log = structlog.get_logger(__name__)

StatusProvider = Callable[[], Awaitable[dict[str, Any]]]

TITLES = {
    "trade_opened": "Trade opened",
    "trade_closed": "Trade closed",
    "stop_moved": "Stop moved",
    "breaker_tripped": "Breaker tripped",
    "breaker_reset": "Breaker reset",
    "reconciliation": "Reconciliation correction",
    "error": "Error",
    "kill": "Kill switch",
    "control": "Operator control",
}
__all__ = ["HELP", "TelegramError", "TelegramNotifier", "format_event", "format_status"]


def format_event(kind: str, payload: dict[str, Any]) -> str:
    """One short message per event: a title and `key: value` lines (floats compact, empty values
    left out), secrets redacted. Payloads: see `quorum.notify.events`."""
    lines = [f"[{payload.get('mode', '')}] {TITLES.get(kind, kind)}".replace("[] ", "")]
    for key, value in payload.items():
        if key == "mode" or value is None:
            continue
        if isinstance(value, float):
            value = f"{value:.8g}"
        lines.append(f"{key}: {value}")
    return redact("\n".join(lines))[:4000]


def format_status(status: dict[str, Any]) -> str:
    lines = [f"mode {status.get('mode')}  paused {status.get('paused')}  uptime {status.get('uptime_s')}s"]
    if status.get("equity") is not None:
        lines.append(f"equity {status['equity']:.2f}  day P&L {status.get('day_pnl') or 0:.2f}")
    positions = status.get("open_positions") or []
    lines.append(f"open positions: {len(positions)}")
    for p in positions[:10]:
        lines.append(f"  {p.get('symbol')} {p.get('side')} qty {p.get('quantity')} entry {p.get('entry_price')} "
                     f"stop {p.get('stop_price')} pnl {p.get('pnl')}")
    for b in status.get("breakers") or []:
        lines.append(f"breaker {b['name']}: {b['reason']}")
    if status.get("paused_symbols"):
        lines.append("entries paused on: " + ", ".join(status["paused_symbols"]))
    if status.get("open_alerts"):
        lines.append(f"open alerts: {len(status['open_alerts'])} (/alerts)")
    return "\n".join(lines)


class TelegramNotifier:
    """Sends events to the allowed chat and answers its commands (long polling)."""

    def __init__(self, settings: Settings, runtime: RuntimeState, status: StatusProvider | None = None,
                 *, client: httpx.AsyncClient | None = None, poll_timeout_s: int = 25,
                 queue_size: int = 500, pool: asyncpg.Pool | None = None, control_wait_s: float = 10.0) -> None:
        if not (settings.telegram_bot_token and settings.telegram_chat_id):
            raise ValueError("TELEGRAM_BOT_TOKEN and TELEGRAM_CHAT_ID must both be set")
        token = settings.telegram_bot_token.get_secret_value()
        self._base = f"{settings.telegram_api_url.rstrip('/')}/bot{token}"
        self.chat_id = str(settings.telegram_chat_id).strip()
        self.runtime = runtime
        self._status = status
        self._client = client or httpx.AsyncClient(timeout=httpx.Timeout(10.0, read=poll_timeout_s + 10.0))
        self._own_client = client is None
        self.poll_timeout_s = poll_timeout_s
        self._queue: asyncio.Queue[str] = asyncio.Queue(maxsize=queue_size)
        self._offset = 0
        self.sent = 0
        self.ignored = 0
        self.dropped = 0
        self.commands = TelegramCommands(settings, runtime, pool, status, format_status,
                                         control_wait_s=control_wait_s)

    @classmethod
    def from_settings(cls, settings: Settings, runtime: RuntimeState, status: StatusProvider | None = None,
                      pool: asyncpg.Pool | None = None) -> TelegramNotifier | None:
        """A notifier when Telegram is configured, else None."""
        if settings.telegram_bot_token and settings.telegram_bot_token.get_secret_value() and settings.telegram_chat_id:
            return cls(settings, runtime, status, pool=pool)
        return None

    # --- Bot API ------------------------------------------------------------------------------
    async def _call(self, method: str, payload: dict[str, Any], timeout: float | None = None) -> Any:
        try:
            r = await self._client.post(f"{self._base}/{method}", json=payload,
                                        timeout=timeout if timeout is not None else httpx.USE_CLIENT_DEFAULT)
        except httpx.HTTPError as exc:
            raise TelegramError(method, type(exc).__name__) from None
        try:
            body = r.json()
        except ValueError:
            raise TelegramError(method, f"HTTP {r.status_code}, not JSON") from None
        if r.status_code != 200 or not body.get("ok"):
            raise TelegramError(method, f"HTTP {r.status_code}: {str(body.get('description', ''))[:100]}")
        return body.get("result")

    async def send(self, text: str) -> bool:
        """Send a message to the allowed chat now (scrubbed of key-like material: `quorum.scrub`);
        False (logged) on failure."""
        try:
            await self._call("sendMessage", {"chat_id": self.chat_id, "text": scrub(text)[:4096],
                                             "disable_web_page_preview": True})
        except TelegramError as exc:
            log.warning("telegram.send_failed", method=exc.method, error=exc.reason)
            return False
        self.sent += 1
        return True

    # --- events -------------------------------------------------------------------------------
    async def on_event(self, kind: str, payload: dict[str, Any]) -> None:
        """RuntimeState listener: queue the message (never waits on the network)."""
        text = format_event(kind, {"mode": self.runtime.mode, **payload})
        try:
            self._queue.put_nowait(text)
        except asyncio.QueueFull:
            self.dropped += 1
            log.warning("telegram.queue_full", dropped=self.dropped)

    async def flush(self) -> None:
        """Send everything queued (used by the sender loop and at shutdown)."""
        while not self._queue.empty():
            await self.send(self._queue.get_nowait())

    async def _sender(self) -> None:
        while True:
            text = await self._queue.get()
            if not await self.send(text):
                await asyncio.sleep(2.0)
                await self.send(text)  # one retry, then give up (logged)

    # --- commands -----------------------------------------------------------------------------
    async def handle_update(self, update: dict[str, Any]) -> str | None:
        """Obey a command from the allowed chat; ignore (and log) anything else. Returns the reply."""
        message = update.get("message") or update.get("edited_message") or {}
        chat_id = str((message.get("chat") or {}).get("id", ""))
        text = str(message.get("text") or "").strip()
        if chat_id != self.chat_id:
            self.ignored += 1
            log.warning("telegram.ignored_foreign_chat", chat_id=chat_id, update_id=update.get("update_id"))
            return None
        command = text.split()[0].split("@")[0].lower() if text else ""
        sender = message.get("from") or {}
        who = f"telegram:{sender.get('username') or sender.get('id') or chat_id}"
        reply = await self.commands.handle(text, who)
        log.info("telegram.command", command=command or "(none)")
        await self.send(reply)
        return reply

    async def poll_once(self, timeout_s: int | None = None) -> int:
        """One getUpdates long poll; handles each update; returns how many arrived."""
        t = self.poll_timeout_s if timeout_s is None else timeout_s
        updates = await self._call("getUpdates", {"offset": self._offset, "timeout": t,
                                                  "allowed_updates": ["message"]}, timeout=t + 10.0)
        for update in updates or []:
            self._offset = max(self._offset, int(update.get("update_id", 0)) + 1)
            try:
                await self.handle_update(update)
            except Exception as exc:
                log.error("telegram.command_failed", error=type(exc).__name__)
        return len(updates or [])

    async def run(self) -> None:
        """Sender and poller until cancelled; network errors back off and retry."""
        sender = asyncio.create_task(self._sender())
        backoff = 1.0
        try:
            while True:
                try:
                    await self.poll_once()
                    backoff = 1.0
                except TelegramError as exc:
                    log.warning("telegram.poll_failed", method=exc.method, error=exc.reason)
                    await asyncio.sleep(backoff)
                    backoff = min(backoff * 2, 60.0)
        finally:
            sender.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await sender

    async def close(self) -> None:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.flush(), 5.0)
        if self._own_client:
            await self._client.aclose()


class TelegramError(Exception):
    """A Bot API call failed; carries the method and a reason without URL or token."""

    def __init__(self, method: str, reason: str) -> None:
        super().__init__(f"telegram {method} failed: {reason}")
        self.method = method
        self.reason = reason
