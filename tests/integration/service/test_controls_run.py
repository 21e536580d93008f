"""Each operator control through each surface against the real `quorum run` process (paper, the
live-style fake Binance in its own process, a fake model that always says LONG, a fake Telegram
Bot API): `quorum close` from another process, the token-protected API pausing a symbol, Telegram
closing a position and engaging the kill switch after a confirmation, then `quorum alerts resolve`
clearing the kill's alert so `quorum readiness` no longer fails on it. /status shows every action."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import asyncpg
import httpx

from tests.conftest import REDIS_URL
from tests.fakes.openai_server import FakeOpenAIServer
from tests.fakes.telegram_server import FakeTelegram
from tests.fakes.voters import always, openai_reply
from tests.integration.service.test_smoke_run import SYMBOLS, _free_port, _start_fake_binance, _until, smoke_db

__all__ = ["smoke_db"]
TG_TOKEN = "777:tg-controls-token"
CHAT = 5151


async def _quorum(env: dict[str, str], cwd: Path, *args: str) -> tuple[int, str]:
    proc = await asyncio.create_subprocess_exec(sys.executable, "-m", "quorum", *args, cwd=cwd, env=env,
                                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    out, _ = await asyncio.wait_for(proc.communicate(), 90)
    return proc.returncode or 0, out.decode()


async def _reply(tg: FakeTelegram, text: str, timeout: float = 40.0) -> str:
    before = [m for m in tg.sent if not m["text"].startswith("[paper]")]
    tg.push_message(CHAT, text)

    async def answered() -> str | None:
        replies = [m for m in tg.sent if not m["text"].startswith("[paper]")]
        return str(replies[-1]["text"]) if len(replies) > len(before) else None

    return str(await _until(f"a reply to {text}", answered, timeout))


async def test_controls_through_cli_api_and_telegram_on_quorum_run(smoke_db: str, shared_data: Path,
                                                                   tmp_path: Path) -> None:
    fake, info = await _start_fake_binance(shared_data)
    model = await FakeOpenAIServer(default=openai_reply(always("LONG"))).start()
    tg = FakeTelegram(TG_TOKEN)
    await tg.start()
    port, token = _free_port(), "ctl-token-" + uuid.uuid4().hex[:8]
    env = {**os.environ, "TRADING_MODE": "paper", "DATABASE_URL": smoke_db, "REDIS_URL": REDIS_URL,
           "SYMBOLS": SYMBOLS, "TIMEFRAMES": "1m,5m,15m", "EXECUTION_TIMEFRAME": "1m", "DECISION_TIMEFRAME": "1m",
           "MONITOR_INTERVAL_SECONDS": "60", "MODELS": "openai:ctl-model", "OPENAI_API_KEY": "sk-ctl-key-123",
           "OPENAI_BASE_URL": model.base_url, "BINANCE_FAPI_URL": info["rest_root"],
           "BINANCE_FSTREAM_URL": info["ws_root"], "API_HOST": "127.0.0.1", "API_PORT": str(port),
           "API_TOKEN": token, "LOG_FORMAT": "json", "LOG_LEVEL": "INFO", "MIN_AI_CONFIDENCE": "0.5",
           "VAR_DIR": str(tmp_path / "var"), "TELEGRAM_BOT_TOKEN": TG_TOKEN, "TELEGRAM_CHAT_ID": str(CHAT),
           "TELEGRAM_API_URL": tg.url}
    env.pop("QUORUM_TEST_CLOCK", None)
    log_path = tmp_path / "quorum-run.log"
    with log_path.open("w") as log:
        service = await asyncio.create_subprocess_exec(sys.executable, "-m", "quorum", "run", cwd=tmp_path, env=env,
                                                       stdout=log, stderr=subprocess.STDOUT)
    api = httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=40.0)
    auth = {"Authorization": f"Bearer {token}"}
    pool = None
    try:
        async def status() -> dict[str, Any] | None:
            try:
                r = await api.get("/status")
            except httpx.HTTPError:
                return None
            return r.json() if r.status_code == 200 else None

        async def both_open() -> dict[str, Any] | None:
            body = await status()
            return body if body and len(body.get("open_positions") or []) == 2 else None

        await _until("a position on each symbol", both_open, 180)
        pool = await asyncpg.create_pool(smoke_db, min_size=1, max_size=2)

        # the API pauses ETHUSDT (carried out by the engine; the request waits for it)
        r = await api.post("/control/symbols/ETHUSDT/pause", headers=auth, json={"who": "ops", "wait_s": 20})
        assert r.status_code == 200 and r.json()["action"]["status"] == "done", r.text
        # the CLI, another process, closes BTCUSDT
        code, out = await _quorum(env, tmp_path, "close", "BTCUSDT", "--who", "cli-user", "--why", "test", "--wait",
                                  "30")
        assert code == 0 and "close_position BTCUSDT: done (closed at" in out, out
        # Telegram closes ETHUSDT after a confirmation
        ask = await _reply(tg, "/close ETHUSDT")
        assert "reply /confirm" in ask, ask
        done = await _reply(tg, f"/confirm {ask.split('/confirm ')[1].split()[0]}")
        assert "close_position ETHUSDT: done (closed at" in done, done
        manual = await pool.fetch("SELECT symbol FROM positions WHERE exit_reason = 'manual' ORDER BY symbol")
        assert [r["symbol"] for r in manual] == ["BTCUSDT", "ETHUSDT"]
        body = await status()
        assert body is not None and body["paused_symbols"] == ["ETHUSDT"]
        assert [(a["action"], a["surface"], a["status"]) for a in body["operator_actions"][:3]] == [
            ("close_position", "telegram", "done"), ("close_position", "cli", "done"),
            ("pause_symbol", "api", "done")]

        # Telegram's /kill (confirmed) leaves a critical alert; the CLI resolves it
        ask = await _reply(tg, "/kill")
        done = await _reply(tg, f"/confirm {ask.split('/confirm ')[1].split()[0]}")
        assert "Kill switch engaged" in done, done
        alert = await pool.fetchrow("SELECT id FROM alerts WHERE kind = 'kill_switch' AND resolved_at IS NULL")
        assert alert is not None
        code, out = await _quorum(env, tmp_path, "readiness")
        assert code == 1 and "FAIL  critical_alerts" in out, out
        code, out = await _quorum(env, tmp_path, "alerts", "resolve", str(alert["id"]), "--why", "flat on purpose")
        assert code == 0 and f"resolve_alert {alert['id']}: done" in out, out
        code, out = await _quorum(env, tmp_path, "readiness")
        assert "PASS  critical_alerts" in out, out
        body = await status()
        assert body is not None and body["open_alerts"] == []
        assert [a["action"] for a in body["operator_actions"][:2]] == ["resolve_alert", "kill"]

        service.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(service.wait(), 30) == 0
    finally:
        if service.returncode is None:
            service.kill()
            await service.wait()
        await api.aclose()
        if pool is not None:
            await pool.close()
        await model.stop()
        await tg.stop()
        fake.terminate()
        await asyncio.wait_for(fake.wait(), 15)
        print("\n--- quorum run (log tail) ---\n" + "\n".join(log_path.read_text().splitlines()[-30:]))
    text = log_path.read_text()
    assert "Traceback" not in text and token not in text and TG_TOKEN not in text
