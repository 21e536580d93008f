"""Operator controls made from another process (the `quorum` CLI) are carried out by the running
paper engine at its next step: a market close through the engine's exit path, a drawdown-breaker
reset that re-bases the peak and keeps the drawdown before it, and a per-symbol entry pause that
survives a restart. The engine is wired as `quorum run` wires it (bootstrap, paper, live-style
fake Binance)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest

from quorum.api.app import create_app
from quorum.backtest.request import parse_time
from quorum.cache import MemoryTTLCache
from quorum.domain.models import IntentKind, OrderIntent, Side
from quorum.notify.telegram import TelegramNotifier
from quorum.store.controls import ControlStore
from tests.fakes.telegram_server import FakeTelegram
from tests.integration.engine.live_paper import paper_app, settings_for, start_fake
from tests.integration.service.conftest import API_TOKEN, SECRETS
from tests.integration.service.test_readiness import _cli

SYMBOL = "BTCUSDT"
MIN = 60_000


def _ms(text: str) -> int:
    t = parse_time(text, "t")
    assert t is not None
    return t


async def test_cli_controls_reach_the_running_engine(pool: asyncpg.Pool, pg_url: str, shared_data: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    t0 = _ms("2025-10-09T12:00")
    fake = await start_fake(shared_data, [SYMBOL, "ETHUSDT"], t0 - 10 * MIN)
    settings = settings_for([SYMBOL, "ETHUSDT"], paper_funding_rate=0.0)
    monkeypatch.setenv("TRADING_MODE", "paper")
    try:
        app = await paper_app(settings, pool, fake)
        events: list[tuple[str, dict[str, object]]] = []

        async def listen(kind: str, payload: dict[str, object]) -> None:
            events.append((kind, payload))

        app.engine.runtime.listeners.append(listen)
        await app.engine.start()
        await app.clock.sleep_until(t0)
        await app.venue_feed.price_now(SYMBOL, t0)
        price = await app.market.last_price(SYMBOL)
        assert price is not None
        res = await app.executor.open_position(OrderIntent(
            IntentKind.OPEN, SYMBOL, Side.LONG, 0.01, "entry", price_hint=price, stop_price=round(price * 0.97, 1),
            leverage=3), position_id="p-manual-1")
        assert res.status == "opened"
        # the drawdown breaker is tripped (peak 1000, equity 700: 30 % ≥ MAX_DRAWDOWN_PCT 20)
        await app.risk.update_equity(1000.0, t0)
        await app.risk.update_equity(700.0, t0)
        assert app.risk.book.tripped("drawdown") is not None

        # the CLI (another thread, its own pool) asks; the engine steps meanwhile
        cli = asyncio.create_task(asyncio.to_thread(
            _cli, pg_url, monkeypatch, "close", SYMBOL, "--who", "carol", "--why", "take it off", "--wait", "30"))
        t = t0
        while not cli.done():
            t += MIN
            await app.clock.sleep_until(t)
            await app.engine.step(t)
            await asyncio.sleep(0.1)
        code, out = await cli
        assert code == 0 and "close_position BTCUSDT: done (closed at" in out, out
        pos = await pool.fetchrow("SELECT status, exit_reason, exit_price FROM positions WHERE id = 'p-manual-1'")
        assert (pos["status"], pos["exit_reason"]) == ("closed", "manual")
        exits = await pool.fetch("SELECT purpose, state FROM orders WHERE position_id = 'p-manual-1' "
                                 "AND purpose = 'exit'")
        assert [(r["purpose"], r["state"]) for r in exits] == [("exit", "filled")]
        assert any(k == "trade_closed" and p["exit_reason"] == "manual" for k, p in events)
        assert await app.exchange.fetch_positions() == []

        code, out = await asyncio.to_thread(_cli, pg_url, monkeypatch, "reset-breaker", "drawdown", "--who", "carol",
                                            "--why", "reviewed", "--wait", "0")
        assert code == 0 and "pending" in out
        code, out = await asyncio.to_thread(_cli, pg_url, monkeypatch, "pause", "ethusdt", "--wait", "0")
        assert code == 0 and "pending" in out
        assert app.engine.entry_block("ETHUSDT") is None
        t += MIN
        await app.clock.sleep_until(t)
        await app.engine.step(t)
        assert app.risk.book.tripped("drawdown") is None and app.risk.book.equity_peak == 700.0
        reset = await pool.fetchrow("SELECT * FROM drawdown_resets WHERE mode = 'paper'")
        assert float(reset["peak_before"]) == 1000.0 and float(reset["equity_at_reset"]) == 700.0
        assert float(reset["drawdown_pct_before"]) == pytest.approx(30.0)
        assert int(reset["record_at"].timestamp() * 1000) == t and reset["who"] == "carol via cli"
        ev = await pool.fetchrow("SELECT actor FROM breaker_events WHERE breaker = 'drawdown' AND event = 'reset'")
        assert ev["actor"] == "carol via cli"
        assert app.engine.entry_block("ETHUSDT") == "paused_symbol" and app.engine.entry_block(SYMBOL) is None
        assert app.engine.runtime.paused_symbols == ["ETHUSDT"]
        done = await ControlStore(pool, "paper").recent()
        assert [(a["action"], a["status"]) for a in done] == [
            ("pause_symbol", "done"), ("reset_breaker", "done"), ("close_position", "done")]
        assert done[1]["result"]["drawdown_pct_before"] == pytest.approx(30.0)
        # a second reset finds nothing tripped
        code, out = await asyncio.to_thread(_cli, pg_url, monkeypatch, "reset-breaker", "drawdown", "--wait", "0")
        t += MIN
        await app.clock.sleep_until(t)
        await app.engine.step(t)
        assert (await ControlStore(pool, "paper").recent(1))[0]["status"] == "noop"
        # four stopped-out losses: the loss streak and ETHUSDT's cool-down trip; they and the day's
        # loss (tripped by the 30 % fall above) are reset
        for _ in range(4):
            await app.risk.record_trade_closed("ETHUSDT", -1.0, "stop_loss", t)
        assert app.risk.book.tripped("loss_streak") and app.risk.book.tripped("symbol_cooldown", "ETHUSDT")
        assert app.risk.book.tripped("daily_loss")
        for args in (("reset-breaker", "loss_streak"), ("reset-breaker", "cooldown", "--symbol", "ETHUSDT"),
                     ("reset-breaker", "daily_loss")):
            code, out = await asyncio.to_thread(_cli, pg_url, monkeypatch, *args, "--wait", "0")
            assert code == 0, out
        t += MIN
        await app.clock.sleep_until(t)
        await app.engine.step(t)
        assert not app.risk.book.trips and app.risk.book.consecutive_losses == 0
        assert app.risk.book.day_start_equity == 700.0  # the day's loss is measured from the reset
        assert [(a["target"], a["status"]) for a in await ControlStore(pool, "paper").recent(3)] == [
            ("daily_loss", "done"), ("symbol_cooldown:ETHUSDT", "done"), ("loss_streak", "done")]
        await app.close()

        app2 = await paper_app(settings, pool, fake)  # a restart keeps the pause and the re-based peak
        await app2.engine.start()
        assert app2.engine.entry_block("ETHUSDT") == "paused_symbol"
        assert app2.risk.book.equity_peak == 700.0 and app2.risk.book.tripped("drawdown") is None
        code, out = await asyncio.to_thread(_cli, pg_url, monkeypatch, "resume", "ETHUSDT", "--wait", "0")
        t += MIN
        await app2.clock.sleep_until(t)
        await app2.engine.step(t)
        assert app2.engine.entry_block("ETHUSDT") is None
        await app2.close()
    finally:
        await fake.stop()


async def _step_until(app: Any, task: asyncio.Future[Any], t: int) -> int:
    """Step the engine (one monitor bar at a time) until `task` — a control waiting for the
    engine — is done; returns the last step's time."""
    while not task.done():
        t += MIN
        await app.clock.sleep_until(t)
        await app.engine.step(t)
        await asyncio.sleep(0.05)
    return t


async def test_api_and_telegram_controls_reach_the_running_engine(pool: asyncpg.Pool, shared_data: Path) -> None:
    t0 = _ms("2025-10-09T12:00")
    fake = await start_fake(shared_data, [SYMBOL, "ETHUSDT"], t0 - 10 * MIN)
    tg = FakeTelegram(SECRETS["telegram_bot_token"])
    await tg.start()
    settings = settings_for([SYMBOL, "ETHUSDT"], paper_funding_rate=0.0, api_token=API_TOKEN,
                            telegram_bot_token=SECRETS["telegram_bot_token"], telegram_chat_id="4242",
                            telegram_api_url=tg.url)
    try:
        app = await paper_app(settings, pool, fake)
        await app.engine.start()
        await app.clock.sleep_until(t0)
        for sym in (SYMBOL, "ETHUSDT"):
            await app.venue_feed.price_now(sym, t0)
            price = await app.market.last_price(sym)
            assert price is not None
            res = await app.executor.open_position(OrderIntent(
                IntentKind.OPEN, sym, Side.SHORT, 0.01 if sym == SYMBOL else 0.2, "entry", price_hint=price,
                stop_price=round(price * 1.03, 1), leverage=3), position_id=f"p-{sym}")
            assert res.status == "opened"
        api = create_app(settings, app.engine.runtime, pool, MemoryTTLCache())
        bot = TelegramNotifier(settings, app.engine.runtime, poll_timeout_s=0, pool=pool, control_wait_s=30)
        app.engine.runtime.listeners.append(bot.on_event)
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=api), base_url="http://t") as client:
            # the API: close BTCUSDT, the request waits while the engine steps
            call = asyncio.ensure_future(client.post(f"/control/positions/{SYMBOL}/close", json={
                "who": "frank", "reason": "api close", "wait_s": 30}, headers={"Authorization": f"Bearer {API_TOKEN}"}))
            t = await _step_until(app, call, t0)
            r = call.result()
            assert r.status_code == 200 and r.json()["action"]["status"] == "done", r.text
            assert r.json()["summary"].startswith("#1 close_position BTCUSDT: done (closed at ")

            # Telegram: /close ETHUSDT asks, /confirm is carried out by the engine
            tg.push_message(4242, "/close ETHUSDT")
            await bot.poll_once()
            code = tg.sent[-1]["text"].split("/confirm ")[1].split()[0]
            tg.push_message(4242, f"/confirm {code}")
            t = await _step_until(app, asyncio.ensure_future(bot.poll_once()), t)
            assert tg.sent[-1]["text"].startswith("#2 close_position ETHUSDT: done (closed at "), tg.sent[-1]
            tg.push_message(4242, "/pause BTCUSDT")
            t = await _step_until(app, asyncio.ensure_future(bot.poll_once()), t)
            assert tg.sent[-1]["text"] == "#3 pause_symbol BTCUSDT: done"
            assert app.engine.entry_block(SYMBOL) == "paused_symbol"
            status = (await client.get("/status")).json()
            assert status["paused_symbols"] == [SYMBOL]
            assert [(a["action"], a["surface"], a["status"]) for a in status["operator_actions"]] == [
                ("pause_symbol", "telegram", "done"), ("close_position", "telegram", "done"),
                ("close_position", "api", "done")]
        rows = await pool.fetch("SELECT id, status, exit_reason FROM positions ORDER BY id")
        assert [(r["id"], r["status"], r["exit_reason"]) for r in rows] == [
            ("p-BTCUSDT", "closed", "manual"), ("p-ETHUSDT", "closed", "manual")]
        await bot.flush()  # what the engine carried out is announced in the chat too
        assert sum("Operator control" in m["text"] for m in tg.sent) == 3
        await bot.close()
        await app.close()
    finally:
        await tg.stop()
        await fake.stop()
