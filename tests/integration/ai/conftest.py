"""Fake provider servers and helpers for the AI integration tests."""

from __future__ import annotations

import gzip
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from quorum.ai.analysts import ModelAnalyst
from quorum.ai.anthropic_provider import AnthropicClient
from quorum.ai.openai_provider import OpenAIChatClient
from quorum.ai.prompts import PromptSet
from quorum.ai.retry import RetryPolicy
from tests.fakes.anthropic_server import FakeAnthropicServer
from tests.fakes.openai_server import FakeOpenAIServer

PROMPTS = PromptSet()
SMALL_ROWS = 4000  # ~14 days of 5m bars from 2024-12-31: enough for 15m/1h indicators (4h ones are flagged short)


@pytest.fixture
def small_data(tmp_path: Path, shared_data: Path) -> Path:
    """A data directory with the first `SMALL_ROWS` BTCUSDT 5m bars of the shared data."""
    d = tmp_path / "data"
    d.mkdir()
    with gzip.open(shared_data / "BTCUSDT-futures-5m.csv.gz", "rt") as src:
        lines = [next(src) for _ in range(SMALL_ROWS + 1)]
    with gzip.open(d / "BTCUSDT-futures-5m.csv.gz", "wt") as dst:
        dst.writelines(lines)
    return d


class RecordingSleep:
    """Injected into the retry policy: records each wait, sleeps (almost) nothing."""

    def __init__(self) -> None:
        self.waits: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)


@pytest.fixture
def sleeps() -> RecordingSleep:
    return RecordingSleep()


@pytest.fixture
def fast_retry(sleeps: RecordingSleep) -> RetryPolicy:
    return RetryPolicy(attempts=3, initial_wait=0.01, max_wait=0.05, sleep=sleeps)


@pytest.fixture
async def oai() -> AsyncIterator[FakeOpenAIServer]:
    async with FakeOpenAIServer() as server:
        yield server  # type: ignore[misc]


@pytest.fixture
async def ant() -> AsyncIterator[FakeAnthropicServer]:
    async with FakeAnthropicServer() as server:
        yield server  # type: ignore[misc]


def openai_analyst(server: FakeOpenAIServer, retry: RetryPolicy, model: str = "gpt-4.1-mini",
                   provider: str = "openai", timeout: float = 5.0, **kw: Any) -> ModelAnalyst:
    client = OpenAIChatClient(provider, model, api_key="sk-test-openai", base_url=server.base_url,
                              timeout_seconds=timeout, temperature=0.2)
    return ModelAnalyst(client, PROMPTS, retry=retry, **kw)


def anthropic_analyst(server: FakeAnthropicServer, retry: RetryPolicy, model: str = "claude-haiku-4-5",
                      timeout: float = 5.0, **kw: Any) -> ModelAnalyst:
    client = AnthropicClient(model, api_key="sk-ant-test", base_url=server.base_url, timeout_seconds=timeout,
                             temperature=0.2)
    return ModelAnalyst(client, PROMPTS, retry=retry, **kw)
