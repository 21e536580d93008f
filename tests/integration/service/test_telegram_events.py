"""Every event kind the engine emits reaches the allowed chat as a readable message, through the
real notifier and a fake Bot API on 127.0.0.1; secrets never leave in a message."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from quorum.domain.breakers import BreakerEvent
from quorum.engine.runtime import RuntimeState
from quorum.execution.reconcile import ReconcileReport
from quorum.notify import events as ev
from quorum.notify.telegram import TelegramNotifier
from tests.fakes.telegram_server import FakeTelegram
from tests.integration.service.conftest import SECRETS, make_settings

CHAT = 4242
T = 1_759_752_000_000  # 2025-10-06 12:00 UTC


@pytest.fixture
async def fake() -> AsyncIterator[FakeTelegram]:
    server = FakeTelegram(SECRETS["telegram_bot_token"])
    await server.start()
    yield server
    await server.stop()


async def test_each_event_kind_is_sent_to_the_allowed_chat(fake: FakeTelegram) -> None:
    runtime = RuntimeState(mode="paper")
    n = TelegramNotifier(make_settings(telegram_api_url=fake.url, telegram_chat_id=str(CHAT)), runtime,
                         poll_timeout_s=0)
    runtime.listeners.append(n.on_event)
    trip = BreakerEvent("daily_loss", "trip", "day loss 5.10% of 1000.00", T, None, 5.1, 5.0, T + 43_200_000)
    reset = BreakerEvent("symbol_cooldown", "reset", "cool-down over", T + 3_600_000, "SOLUSDT",
                         actor="system")
    report = ReconcileReport(ok=True, corrections=[
        {"kind": "adopted_position", "symbol": "ETHUSDT", "position_id": "adopt-ETHUSDT-1"},
        {"kind": "replaced_stop", "symbol": "ETHUSDT", "position_id": "adopt-ETHUSDT-1"},
        {"kind": "order_synced", "symbol": "BTCUSDT", "client_order_id": "qbS-1"}])
    secret = SECRETS["binance_api_secret"]
    try:
        await runtime.emit("trade_opened", {"symbol": "BTCUSDT", "side": "long", "quantity": 0.012,
                                            "price": 117784.92})
        await runtime.emit("stop_moved", ev.stop_moved_payload("BTCUSDT", "long", 113826.0, 114435.96585,
                                                               "break_even_stop", "moved"))
        await runtime.emit("trade_closed", {"symbol": "BTCUSDT", "net_pnl": 4.914, "exit_reason": "take_profit"})
        for kind, payload in (ev.breaker_payload(trip), ev.breaker_payload(reset)):
            await runtime.emit(kind, payload)
        recon = ev.reconciliation_payload(report)
        assert recon is not None and ev.reconciliation_payload(ReconcileReport(ok=True)) is None
        await runtime.emit("reconciliation", recon)
        await runtime.emit("error", ev.error_payload("decision_failed", "BTCUSDT",
                                                     RuntimeError(f"HTTP 401 for key {secret}")))
        # a payload built elsewhere with a raw secret is redacted by the formatter too
        await runtime.emit("error", {"where": "step_failed", "error": f"boom {secret}", "fatal": True})
        await n.flush()
    finally:
        await n.close()

    texts = [m["text"] for m in fake.sent]
    assert [m["chat_id"] for m in fake.sent] == [str(CHAT)] * 8
    titles = [t.splitlines()[0] for t in texts]
    assert titles == ["[paper] Trade opened", "[paper] Stop moved", "[paper] Trade closed",
                      "[paper] Breaker tripped", "[paper] Breaker reset", "[paper] Reconciliation correction",
                      "[paper] Error", "[paper] Error"]
    opened, moved, closed, tripped, reset_msg, recon_msg, error, fatal = texts
    assert "price: 117784.92" in opened and "quantity: 0.012" in opened
    assert "old_stop: 113826\n" in moved and "new_stop: 114435.97" in moved and "reason: break_even_stop" in moved
    assert "net_pnl: 4.914" in closed and "exit_reason: take_profit" in closed
    assert "breaker: daily_loss" in tripped and "threshold: 5" in tripped and "until: 2025-10-07T00:00:00Z" in tripped
    assert "symbol: SOLUSDT" in reset_msg and "actor: system" in reset_msg and "cool-down over" in reset_msg
    assert "count: 3" in recon_msg and "adopted_position x1, order_synced x1, replaced_stop x1" in recon_msg
    assert "symbols: BTCUSDT, ETHUSDT" in recon_msg
    assert "where: decision_failed" in error and "RuntimeError: HTTP 401 for key ***" in error
    assert "fatal: True" in fatal and "boom ***" in fatal
    assert all(s not in t for t in texts for s in SECRETS.values())
