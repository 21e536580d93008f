"""The daily AI budget with calls in flight (reserve → settle / release) and the per-provider
concurrency setting `<PROVIDER>_MAX_CONCURRENCY`."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pytest

from quorum.ai import build_analysts
from quorum.ai.analysts import ModelAnalyst
from quorum.ai.cost import REQUEST_OVERHEAD_TOKENS, CostTracker, upper_bound_tokens
from quorum.config import ConfigError, load_settings

DAY = date(2025, 1, 1)


def test_a_reservation_counts_against_the_budget_until_settled() -> None:
    ct = CostTracker({"m": (1.0, 2.0)}, daily_budget_usd=1.0)
    a = ct.reserve(DAY, "openai:m", 0.4)
    b = ct.reserve(DAY, "openai:m", 0.4)
    assert a is not None and b is not None
    assert ct.reserved_total(DAY) == pytest.approx(0.8) and ct.day_total(DAY) == 0.0
    # nothing spent yet, but a third call could overshoot: refused, and nothing held for it
    assert ct.reserve(DAY, "openai:m", 0.4) is None
    assert ct.reserved_total(DAY) == pytest.approx(0.8)
    ct.settle(a, 0.1)  # the call cost less than its bound: the rest goes back to the budget
    assert ct.day_total(DAY) == pytest.approx(0.1) and ct.reserved_total(DAY) == pytest.approx(0.4)
    ct.settle(a, 0.1)  # settling twice changes nothing
    assert ct.day_total(DAY) == pytest.approx(0.1)
    c = ct.reserve(DAY, "openai:m", 0.4)
    assert c is not None
    ct.settle(b)  # failed or cancelled: released, nothing spent
    ct.settle(c, 0.4)
    assert ct.reserved_total(DAY) == 0.0 and ct.day_total(DAY) == pytest.approx(0.5)
    assert ct.spent[DAY] == {"openai:m": pytest.approx(0.5)}
    assert ct.reserve(date(2025, 1, 2), "openai:m", 1.0) is not None  # another day, another budget


def test_a_refused_reservation_raises_the_budget_event_once_a_day() -> None:
    ct = CostTracker({"m": (1.0, 2.0)}, daily_budget_usd=1.0)
    held = ct.reserve(DAY, "x", 0.9)
    assert held is not None and not ct.first_exhaustion(DAY)  # nothing refused yet
    assert ct.reserve(DAY, "x", 0.2) is None
    assert ct.first_exhaustion(DAY) and not ct.first_exhaustion(DAY)
    zero = CostTracker({"m": (1.0, 2.0)}, daily_budget_usd=0.0)  # 0 = no paid calls at all
    assert zero.reserve(DAY, "x", 1e-9) is None


def test_the_upper_bound_covers_every_byte_and_the_reply_limit() -> None:
    text = "Symbol: BTCUSDT — Δ 1.5 %"  # non-ASCII characters are several bytes, hence tokens
    assert upper_bound_tokens(text) == len(text.encode()) + REQUEST_OVERHEAD_TOKENS > len(text)
    ct = CostTracker({"m": (1.0, 2.0)})
    usd = ct.estimate("openai", "m", [text, "more"], 800)
    assert usd == pytest.approx(((len(text.encode()) + 4 + REQUEST_OVERHEAD_TOKENS) * 1.0 + 800 * 2.0) / 1e6)
    assert ct.estimate("ollama", "llama3", [text], 800) == 0.0


def test_provider_max_concurrency_is_read_and_validated(tmp_cwd: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    settings = load_settings(model_max_concurrency=7)
    assert settings.provider("deepseek").max_concurrency == 7  # the global default
    monkeypatch.setenv("DEEPSEEK_MAX_CONCURRENCY", "3")
    assert settings.provider("deepseek").max_concurrency == 3
    for bad in ("0", "1001", "two", "1.5", "-4"):
        monkeypatch.setenv("DEEPSEEK_MAX_CONCURRENCY", bad)
        with pytest.raises(ConfigError, match="DEEPSEEK_MAX_CONCURRENCY") as err:
            settings.provider("deepseek")
        assert "\n" not in str(err.value) and "1..1000" in str(err.value)


def test_models_of_one_provider_share_one_cap(tmp_cwd: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    monkeypatch.setenv("DEEPSEEK_API_KEY", "sk-ds")
    monkeypatch.setenv("OPENAI_MAX_CONCURRENCY", "2")
    settings = load_settings(models="openai:gpt-4.1-mini,openai:gpt-4.1-nano,deepseek:deepseek-chat",
                             model_max_concurrency=9)
    a, b, d = build_analysts(settings)
    assert isinstance(a, ModelAnalyst) and isinstance(b, ModelAnalyst) and isinstance(d, ModelAnalyst)
    assert a.limiter is not None and a.limiter is b.limiter and d.limiter is not a.limiter
    assert a.limiter._value == 2 and d.limiter is not None and d.limiter._value == 9
    assert a.max_output_tokens == settings.model_max_tokens
    monkeypatch.setenv("OPENAI_MAX_CONCURRENCY", "0")
    with pytest.raises(ConfigError, match="OPENAI_MAX_CONCURRENCY"):
        build_analysts(settings)
