"""No configured secret appears in any captured log line or HTTP response of the service surface."""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator

import asyncpg
import httpx
import pytest
import structlog

from quorum.api.app import create_app
from quorum.cache import MemoryTTLCache
from quorum.engine.runtime import RuntimeState, wall_ms
from quorum.logging import _RedactingFormatter, configure_logging
from quorum.notify.telegram import TelegramNotifier
from quorum.store.db import redact_url, resolve_database_url
from tests.fakes.telegram_server import FakeTelegram
from tests.integration.service.conftest import API_TOKEN, SECRETS, make_settings


@pytest.fixture
def captured_logs() -> Iterator[io.StringIO]:
    """The real logging pipeline (structlog JSON + stdlib), written into a buffer."""
    buf = io.StringIO()
    saved = structlog.get_config()
    configure_logging(make_settings(), level="DEBUG", fmt="json")
    structlog.configure(logger_factory=structlog.PrintLoggerFactory(file=buf))
    root = logging.getLogger()
    old_streams = [(h, getattr(h, "stream", None)) for h in root.handlers]
    for h in root.handlers:
        if isinstance(h, logging.StreamHandler):
            h.setStream(buf)
    for noisy in ("httpx", "httpcore", "uvicorn", "aiohttp"):
        logging.getLogger(noisy).setLevel(logging.DEBUG)  # the chattiest setting, on purpose
    try:
        yield buf
    finally:
        for h, stream in old_streams:
            if isinstance(h, logging.StreamHandler) and stream is not None:
                h.setStream(stream)
        for noisy in ("httpx", "httpcore", "uvicorn", "aiohttp"):
            logging.getLogger(noisy).setLevel(logging.WARNING)
        structlog.configure(**saved)


async def test_no_secret_in_logs_or_responses(captured_logs: io.StringIO, pool: asyncpg.Pool) -> None:
    # pytest re-arranges root handlers between phases: attach the redacting stdlib handler here
    stdlib = logging.StreamHandler(captured_logs)
    stdlib.setFormatter(_RedactingFormatter("%(levelname)s %(name)s: %(message)s"))
    logging.getLogger().addHandler(stdlib)
    settings = make_settings()
    secrets = [v for v in SECRETS.values() if v] + ["DBPASS-SECRET-19af"]
    runtime = RuntimeState(mode="paper", scan_interval_s=60)
    runtime.mark_scan()
    runtime.mark_market_data()
    # an engine that reports a provider error whose text happens to carry a key
    runtime.mark_provider("openai:gpt-x", False, f"401 invalid key {SECRETS['binance_api_key']}")
    runtime.set_breaker("daily_loss", "day loss")
    bodies: list[str] = []
    fake = FakeTelegram(SECRETS["telegram_bot_token"])
    await fake.start()
    notifier = TelegramNotifier(make_settings(telegram_api_url=fake.url), runtime, poll_timeout_s=0)
    try:
        app = create_app(settings, runtime, pool, MemoryTTLCache())
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as c:
            for method, path, headers, content in [
                ("GET", "/health", {}, None), ("GET", "/status", {}, None), ("GET", "/metrics", {}, None),
                ("GET", "/nope", {}, None), ("PUT", "/status", {}, None),
                ("POST", "/control/pause", {"Authorization": "Bearer wrong"}, None),
                ("POST", "/control/pause", {"Authorization": f"Basic {API_TOKEN}"}, None),
                ("POST", "/control/kill", {"Authorization": f"Bearer {API_TOKEN}"}, None),
                ("POST", "/control/pause", {"Authorization": f"Bearer {API_TOKEN}"}, b"z" * 100_000),
                ("POST", "/control/resume", {"Authorization": f"Bearer {API_TOKEN}"}, None),
            ]:
                r = await c.request(method, path, headers=headers, content=content)
                bodies.append(f"{r.status_code} {dict(r.headers)} {r.text}")
        # Telegram: events, commands, a failing send, a wrong-token client
        await runtime.emit("error", {"message": "boom"})
        notifier_listener = notifier.on_event
        await notifier_listener("trade_opened", {"symbol": "BTCUSDT"})
        await notifier.flush()
        fake.push_message(4242, "/status")
        fake.push_message(777, "/kill")
        await notifier.poll_once()
        fake.fail_next_send = 1
        await notifier.send("x")
        bad = TelegramNotifier(make_settings(telegram_api_url=fake.url, telegram_bot_token="1:bad-token"),
                               runtime, poll_timeout_s=0)
        await bad.send("y")
        await bad.close()
        # the database URL is only ever logged redacted
        resolve_database_url(SECRETS["database_url"], settings.var_dir)
        assert "DBPASS" not in redact_url(SECRETS["database_url"])
        structlog.get_logger("test").info("leak_probe", note=f"token={API_TOKEN}")  # redaction backstop
        probe = logging.getLogger(f"probe{id(captured_logs)}")  # a fresh logger: never disabled by dictConfig
        probe.warning("stdlib probe %s", SECRETS["binance_api_secret"])
    finally:
        logging.getLogger().removeHandler(stdlib)
        await notifier.close()
        await fake.stop()
    logs = captured_logs.getvalue()
    assert "telegram.ignored_foreign_chat" in logs and "control.rejected" in logs  # logs were captured
    assert "leak_probe" in logs and "stdlib probe ***" in logs
    haystack = logs + "\n".join(bodies) + "\n".join(m["text"] for m in fake.sent)
    leaked = [s for s in secrets if s in haystack]
    assert not leaked, f"secrets leaked: {len(leaked)}"
    assert wall_ms() > 0
