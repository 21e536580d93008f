"""Every Telegram command against the fake Bot API server (real httpx, real wire format) and the
real Postgres record: the read commands answer from the engine's state and the record; /close,
/reset_breaker and /kill ask to confirm with a single-use code; every control is recorded in
`operator_actions` (surface telegram); other chats are ignored and logged without content."""

from __future__ import annotations

from collections.abc import AsyncIterator

import asyncpg
import pytest
from structlog.testing import capture_logs

from quorum.api.status import build_status
from quorum.engine.runtime import RuntimeState
from quorum.notify.telegram import TelegramNotifier
from quorum.risk.gate import check_gate
from quorum.store.state import AlertRepository
from tests.fakes.telegram_server import FakeTelegram
from tests.integration.service.conftest import SECRETS, make_settings
from tests.integration.service.record import insert_trades
from tests.integration.service.test_controls_api import _open_position
from tests.integration.service.test_readiness import PASSING

TOKEN = SECRETS["telegram_bot_token"]
CHAT = 4242


@pytest.fixture
async def fake() -> AsyncIterator[FakeTelegram]:
    server = FakeTelegram(TOKEN)
    await server.start()
    yield server
    await server.stop()


@pytest.fixture
async def bot(fake: FakeTelegram, pool: asyncpg.Pool) -> AsyncIterator[tuple[TelegramNotifier, RuntimeState]]:
    runtime = RuntimeState(mode="paper")
    settings = make_settings(telegram_api_url=fake.url, telegram_chat_id=str(CHAT))
    n = TelegramNotifier(settings, runtime, lambda: build_status(runtime, pool), poll_timeout_s=0, pool=pool,
                         control_wait_s=0.2)
    yield n, runtime
    await n.close()


async def ask(fake: FakeTelegram, n: TelegramNotifier, text: str, chat: int = CHAT) -> str:
    before = len(fake.sent)
    fake.push_message(chat, text)
    assert await n.poll_once() == 1
    assert len(fake.sent) == before + 1, "one reply per command"
    assert fake.sent[-1]["chat_id"] == str(CHAT)
    return str(fake.sent[-1]["text"])


async def test_read_commands(fake: FakeTelegram, bot: tuple[TelegramNotifier, RuntimeState],
                             pool: asyncpg.Pool) -> None:
    n, runtime = bot
    assert await ask(fake, n, "/trades") == "No closed trades yet."
    assert await ask(fake, n, "/profit") == "No closed trades yet. Unrealized 0.00."
    assert await ask(fake, n, "/balance") == "No balance yet: the engine has not published one."
    assert await ask(fake, n, "/positions") == "No open positions."
    assert await ask(fake, n, "/breakers") == "No breaker tripped."
    await insert_trades(pool, [12.0, -6.0, 4.0, 8.0], days=2, symbols=("BTCUSDT", "ETHUSDT"))
    runtime.equity, runtime.wallet_balance, runtime.day_pnl = 1021.5, 1018.0, 3.5
    runtime.positions = [{"symbol": "SOLUSDT", "side": "short", "quantity": 2.0, "leverage": 3, "entry_price": 150.0,
                          "mark_price": 148.25, "pnl": 3.5, "stop_price": 155.0, "liquidation_price": 199.0}]
    runtime.set_breaker("loss_streak", "4 losses in a row")
    runtime.paused_symbols = ["ETHUSDT"]

    status = await ask(fake, n, "/status")
    assert status.startswith("mode paper") and "equity 1021.50" in status and "SOLUSDT short" in status
    assert "entries paused on: ETHUSDT" in status
    positions = await ask(fake, n, "/positions")
    assert "SOLUSDT short qty 2.0 x3 entry 150.0 mark 148.25 pnl +3.50 stop 155.0 liq 199.0" in positions
    trades = (await ask(fake, n, "/trades 3")).splitlines()
    assert trades[0] == "Last 3 closed trades:" and len(trades) == 4 and "+8.00" in trades[1]
    profit = await ask(fake, n, "/profit")
    assert "Closed trades: 4 (3 won)" in profit and "Win rate 75.0% (n=4, 95% CI" in profit
    assert "Net P&L +18.00" in profit and "Profit factor 4.00" in profit and "Unrealized +3.50" in profit
    balance = await ask(fake, n, "/balance")
    assert "Equity 1021.50 USDT" in balance and "Wallet 1018.00" in balance and "Open positions 1" in balance
    daily = (await ask(fake, n, "/daily")).splitlines()
    assert daily[0] == "P&L per UTC day:" and len(daily) >= 2 and "trades" in daily[1]
    perf = (await ask(fake, n, "/performance")).splitlines()
    assert perf[0] == "Performance by symbol:"
    assert perf[1].startswith("ETHUSDT +2.00 (2 trades") or perf[1].startswith("BTCUSDT +16.00 (2 trades"), perf
    breakers = await ask(fake, n, "/breakers")
    assert "loss_streak: 4 losses in a row" in breakers and "Entries paused on: ETHUSDT" in breakers
    gate = await ask(fake, n, "/gate")
    assert "FAIL  trades" in gate and "go-live gate: FAILED" in gate
    for unknown in ("/help", "/start", "hello", "/nonsense"):
        reply = await ask(fake, n, unknown)
        assert reply.startswith("Commands:") and "/close SYMBOL" in reply and "/reset_breaker" in reply


async def test_close_asks_to_confirm_with_a_single_use_code(fake: FakeTelegram, pool: asyncpg.Pool,
                                                            bot: tuple[TelegramNotifier, RuntimeState]) -> None:
    n, _ = bot
    assert await ask(fake, n, "/close") == "Not done: say which: /close SYMBOL"
    assert await ask(fake, n, "/close ETHUSDT") == "Not done: no open paper position on ETHUSDT"
    await _open_position(pool)
    reply = await ask(fake, n, "/close btcusdt")
    assert reply.startswith("To market-close the BTCUSDT position, reply /confirm ")
    code = reply.split("/confirm ")[1].split()[0]
    assert len(code) == 4 and code.isdigit()
    assert await pool.fetchval("SELECT count(*) FROM operator_actions") == 0  # nothing before the confirmation
    wrong = "1000" if code != "1000" else "1001"
    assert (await ask(fake, n, f"/confirm {wrong}")).startswith("No such confirmation code")
    reply = await ask(fake, n, f"/confirm {code}")
    assert reply.startswith("#1 close_position BTCUSDT: pending (queued")
    assert (await ask(fake, n, f"/confirm {code}")).startswith("No such confirmation code")  # single use
    row = await pool.fetchrow("SELECT * FROM operator_actions")
    assert (row["action"], row["target"], row["surface"], row["who"], row["status"]) == (
        "close_position", "BTCUSDT", "telegram", f"telegram:{CHAT}", "pending")


async def test_codes_expire(fake: FakeTelegram, pool: asyncpg.Pool,
                            bot: tuple[TelegramNotifier, RuntimeState]) -> None:
    n, _ = bot
    now = [1000.0]
    n.commands._clock = lambda: now[0]
    reply = await ask(fake, n, "/reset_breaker drawdown")
    assert reply.startswith("To reset breaker drawdown, reply /confirm ") and "within 120s" in reply
    now[0] += 121
    assert (await ask(fake, n, f"/confirm {reply.split('/confirm ')[1].split()[0]}")).startswith("No such")
    assert await pool.fetchval("SELECT count(*) FROM operator_actions") == 0


async def test_reset_breaker_and_pause_symbols(fake: FakeTelegram, pool: asyncpg.Pool,
                                               bot: tuple[TelegramNotifier, RuntimeState]) -> None:
    n, runtime = bot
    assert (await ask(fake, n, "/reset_breaker margin")).startswith("Not done: unknown breaker 'margin'")
    assert (await ask(fake, n, "/reset_breaker symbol_cooldown")).startswith("Not done: symbol_cooldown needs")
    reply = await ask(fake, n, "/reset_breaker symbol_cooldown ethusdt")
    assert reply.startswith("To reset breaker symbol_cooldown:ETHUSDT, reply /confirm ")
    reply = await ask(fake, n, f"/confirm {reply.split('/confirm ')[1].split()[0]}")
    assert reply.startswith("#1 reset_breaker symbol_cooldown:ETHUSDT: pending")
    assert (await ask(fake, n, "/pause SOLUSDT")).startswith("#2 pause_symbol SOLUSDT: pending")
    assert (await ask(fake, n, "/resume SOLUSDT")).startswith("#3 resume_symbol SOLUSDT: pending")
    assert (await ask(fake, n, "/pause")).startswith("Paused") and runtime.paused
    assert await ask(fake, n, "/resume") == "Resumed." and not runtime.paused
    rows = await pool.fetch("SELECT action, target, status, surface FROM operator_actions ORDER BY id")
    assert [tuple(r) for r in rows] == [
        ("reset_breaker", "symbol_cooldown:ETHUSDT", "pending", "telegram"),
        ("pause_symbol", "SOLUSDT", "pending", "telegram"), ("resume_symbol", "SOLUSDT", "pending", "telegram"),
        ("pause", None, "done", "telegram"), ("resume", None, "done", "telegram")]
    actions = await ask(fake, n, "/actions")
    assert actions.splitlines()[0] == f"telegram:{CHAT} via telegram: #5 resume: done"


async def test_kill_confirmed_then_its_alert_resolved(fake: FakeTelegram, pool: asyncpg.Pool,
                                                      bot: tuple[TelegramNotifier, RuntimeState]) -> None:
    n, runtime = bot
    await insert_trades(pool, PASSING, days=35)
    alerts = AlertRepository(pool, "paper")

    async def on_kill() -> dict[str, object]:  # the engine's kill switch leaves its critical alert
        await alerts.raise_alert("critical", "kill_switch", "kill switch engaged by operator: kill requested")
        return {"closed": 0}

    runtime.on_kill = on_kill
    reply = await ask(fake, n, "/kill")
    assert reply.startswith("To flatten EVERYTHING (kill switch), reply /confirm ") and not runtime.kill_requested
    reply = await ask(fake, n, f"/confirm {reply.split('/confirm ')[1].split()[0]}")
    assert "Kill switch engaged" in reply and "/resolve ID" in reply and runtime.kill_requested
    assert not (await check_gate(pool, make_settings(), "paper")).passed
    listed = await ask(fake, n, "/alerts")
    aid = int(listed.splitlines()[1].split()[0].lstrip("#"))
    assert "critical kill_switch" in listed
    assert (await ask(fake, n, f"/ack {aid}")) == f"#2 ack_alert {aid}: done"
    assert "(acknowledged)" in await ask(fake, n, "/alerts")
    assert (await ask(fake, n, f"/resolve {aid} flat, checked")) == f"#3 resolve_alert {aid}: done"
    assert await ask(fake, n, "/alerts") == "No open alerts."
    assert (await check_gate(pool, make_settings(), "paper")).passed
    assert (await ask(fake, n, "/resolve")).startswith("Not done: say which alert")
    assert (await ask(fake, n, "/resolve 999")) == "Not done: no alert 999"
    rows = await pool.fetch("SELECT action, status, reason FROM operator_actions ORDER BY id")
    assert [(r["action"], r["status"]) for r in rows] == [("kill", "done"), ("ack_alert", "done"),
                                                          ("resolve_alert", "done")]
    assert rows[2]["reason"] == "flat, checked"


async def test_other_chats_are_ignored_and_logged_without_content(
        fake: FakeTelegram, pool: asyncpg.Pool, bot: tuple[TelegramNotifier, RuntimeState]) -> None:
    n, runtime = bot
    await _open_position(pool)
    with capture_logs() as logs:
        for text in ("/close BTCUSDT", "/confirm 1234", "/kill", "/pause", "/trades", "/resolve 1 secret-words"):
            fake.push_message(999, text)
        assert await n.poll_once() == 6
    assert fake.sent == [] and n.ignored == 6 and not runtime.paused
    assert await pool.fetchval("SELECT count(*) FROM operator_actions") == 0
    ignored = [e for e in logs if e["event"] == "telegram.ignored_foreign_chat"]
    assert len(ignored) == 6 and all(e["chat_id"] == "999" for e in ignored)
    assert not any("BTCUSDT" in str(e) or "secret-words" in str(e) for e in logs)
