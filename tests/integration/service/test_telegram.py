"""Telegram notifier against a fake Bot API server on 127.0.0.1 (real httpx, real wire format)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from quorum.engine.runtime import RuntimeState
from quorum.notify.telegram import TelegramNotifier, format_event
from tests.fakes.telegram_server import FakeTelegram
from tests.integration.service.conftest import SECRETS, make_settings

TOKEN = SECRETS["telegram_bot_token"]
CHAT = 4242


@pytest.fixture
async def fake() -> AsyncIterator[FakeTelegram]:
    server = FakeTelegram(TOKEN)
    await server.start()
    yield server
    await server.stop()


@pytest.fixture
async def notifier(fake: FakeTelegram) -> AsyncIterator[tuple[TelegramNotifier, RuntimeState]]:
    runtime = RuntimeState(mode="paper")
    settings = make_settings(telegram_api_url=fake.url, telegram_chat_id=str(CHAT))
    n = TelegramNotifier(settings, runtime, poll_timeout_s=0)
    runtime.listeners.append(n.on_event)
    yield n, runtime
    await n.close()


async def test_events_are_sent_to_the_allowed_chat(fake: FakeTelegram,
                                                   notifier: tuple[TelegramNotifier, RuntimeState]) -> None:
    n, runtime = notifier
    await runtime.emit("trade_opened", {"symbol": "BTCUSDT", "side": "long", "entry_price": 101234.5,
                                        "quantity": 0.01, "stop_price": 99000.0})
    await runtime.emit("breaker_tripped", {"breaker": "daily_loss", "reason": "day P&L -5.1%"})
    await runtime.emit("trade_closed", {"symbol": "BTCUSDT", "net_pnl": -12.5, "exit_reason": "stop"})
    await n.flush()
    assert [m["chat_id"] for m in fake.sent] == [str(CHAT)] * 3
    assert fake.sent[0]["text"].startswith("[paper] Trade opened") and "entry_price: 101234" in fake.sent[0]["text"]
    assert "Breaker tripped" in fake.sent[1]["text"] and "day P&L -5.1%" in fake.sent[1]["text"]
    assert "net_pnl: -12.5" in fake.sent[2]["text"]


async def test_commands_from_allowed_chat_control_the_runtime(
        fake: FakeTelegram, notifier: tuple[TelegramNotifier, RuntimeState]) -> None:
    n, runtime = notifier
    killed: list[bool] = []

    async def on_kill() -> dict[str, object]:
        killed.append(True)
        return {"closed": 2}

    runtime.on_kill = on_kill
    fake.push_message(CHAT, "/pause")
    assert await n.poll_once() == 1
    assert runtime.paused
    fake.push_message(CHAT, "/resume@quorum_bot")
    await n.poll_once()
    assert not runtime.paused
    fake.push_message(CHAT, "/status")
    fake.push_message(CHAT, "/kill")
    assert await n.poll_once() == 2
    assert killed == [] and not runtime.kill_requested  # /kill asks to confirm first
    code = fake.sent[-1]["text"].split("/confirm ")[1].split()[0]
    fake.push_message(CHAT, f"/confirm {code}")
    assert await n.poll_once() == 1
    assert killed == [True] and runtime.kill_requested
    texts = [m["text"] for m in fake.sent]
    assert texts[0].startswith("Paused") and texts[1] == "Resumed."
    assert texts[2].startswith("mode paper") and "reply /confirm" in texts[3] and "Kill switch engaged" in texts[4]
    await n.poll_once()  # offsets advanced: nothing is handled twice
    assert len(fake.sent) == 5


async def test_message_from_another_chat_is_ignored_and_logged(
        fake: FakeTelegram, notifier: tuple[TelegramNotifier, RuntimeState]) -> None:
    n, runtime = notifier
    fake.push_message(999, "/kill")
    fake.push_message(999, "/pause")
    assert await n.poll_once() == 2
    assert runtime.paused is False and runtime.kill_requested is False
    assert fake.sent == [] and n.ignored == 2


async def test_send_failures_do_not_raise(fake: FakeTelegram,
                                          notifier: tuple[TelegramNotifier, RuntimeState]) -> None:
    n, _ = notifier
    fake.fail_next_send = 1
    assert await n.send("hello") is False
    assert await n.send("hello again") is True
    assert [m["text"] for m in fake.sent] == ["hello again"]


async def test_wrong_token_is_an_error_without_the_token(fake: FakeTelegram) -> None:
    runtime = RuntimeState()
    settings = make_settings(telegram_api_url=fake.url, telegram_bot_token="999:wrong-token-value")
    n = TelegramNotifier(settings, runtime, poll_timeout_s=0)
    try:
        assert await n.send("x") is False
        with pytest.raises(Exception) as info:
            await n.poll_once()
        assert "401" in str(info.value) and "wrong-token-value" not in str(info.value)
    finally:
        await n.close()


def test_not_configured_means_no_notifier() -> None:
    assert TelegramNotifier.from_settings(make_settings(telegram_bot_token=None), RuntimeState()) is None
    assert "Stop moved" in format_event("stop_moved", {"symbol": "ETHUSDT", "stop_price": 3000.0})
