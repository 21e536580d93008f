"""Fixtures for the service-surface tests: settings with known secrets, a runtime, an app."""

from __future__ import annotations

from collections.abc import AsyncIterator

import asyncpg
import httpx
import pytest

from quorum.api.app import create_app
from quorum.cache import MemoryTTLCache
from quorum.config import Settings
from quorum.engine.runtime import RuntimeState, wall_ms
from quorum.logging import register_secrets

API_TOKEN = "tok-3f9c1d2e7a6b5c4d"
SECRETS = {
    "api_token": API_TOKEN,
    "binance_api_key": "bnkey-SECRET-81c2f0aa",
    "binance_api_secret": "bnsecret-SECRET-77e1d0cc",
    "telegram_bot_token": "123456:TG-SECRET-bot-token-xyz",
    "database_url": "postgresql://quorum:DBPASS-SECRET-19af@127.0.0.1:5432/quorum",
}


def make_settings(**overrides: object) -> Settings:
    values: dict[str, object] = {**SECRETS, "telegram_chat_id": "4242", "scan_interval_seconds": 60}
    values.update(overrides)
    settings = Settings(_env_file=None, **values)  # type: ignore[call-arg]
    register_secrets(settings.secret_values())
    return settings


@pytest.fixture
def settings() -> Settings:
    return make_settings()


@pytest.fixture
def runtime() -> RuntimeState:
    rt = RuntimeState(mode="paper", scan_interval_s=60.0)
    now = wall_ms()
    rt.mark_scan(now)
    rt.mark_market_data(now)
    rt.mark_provider("rules", True, now_ms=now)
    return rt


@pytest.fixture
async def client(settings: Settings, runtime: RuntimeState,
                 pool: asyncpg.Pool) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(settings, runtime, pool, MemoryTTLCache())
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test") as c:
        yield c
