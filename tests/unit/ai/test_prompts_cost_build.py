"""Prompts (version, content, no dates), cost and budget, and building the voters from settings."""

from __future__ import annotations

import json
import re
import shutil
from datetime import date
from pathlib import Path

import pytest
import structlog

from quorum.ai import build_analysts
from quorum.ai.analysts import ModelAnalyst, RulesAnalyst, cache_key
from quorum.ai.anthropic_provider import AnthropicClient
from quorum.ai.cost import CostTracker, PriceTableError, load_prices
from quorum.ai.openai_provider import OpenAIChatClient
from quorum.ai.prompts import DEFAULT_PROMPTS_DIR, PromptError, PromptLimits, PromptSet
from quorum.config import load_settings
from tests.unit.ai.factory import context, snapshot

DATE = re.compile(r"\b(19|20)\d\d[-/.](0?[1-9]|1[0-2])[-/.]\d{1,2}\b|\b(January|February|March|April|June|July|"
                  r"August|September|October|November|December)\b|\b(19|20)\d\d\b")


def test_prompt_states_fees_limits_account_and_positions_without_dates() -> None:
    p = PromptSet()
    system = p.system(PromptLimits(taker_fee_pct=0.05, maker_fee_pct=0.02, max_leverage=7,
                                   min_stop_loss_pct=0.4, max_stop_loss_pct=8))
    user = p.user(context(position=True))
    assert "0.05 %" in system and "0.02 %" in system and "7x" in system
    assert "enforced in code" in system and "literal numbers" in system
    for needle in ("Equity: 1000", "Available balance: 800", "entry 98", "mark 100", "peak P&L 2.5 %",
                   "stop 96", "liquidation 70", "unrealised P&L 1 USDT"):
        assert needle in user, needle
    for text in (system, user, p.repair("bad")):
        assert not DATE.search(text), DATE.search(text)
    assert "$" not in user.replace("USDT", "")  # every placeholder was filled


def test_prompt_version_is_the_hash_of_the_files(tmp_path: Path) -> None:
    d = tmp_path / "prompts"
    shutil.copytree(DEFAULT_PROMPTS_DIR, d)
    v1 = PromptSet(d).version
    assert v1 == PromptSet(DEFAULT_PROMPTS_DIR).version
    (d / "user.md").write_text((d / "user.md").read_text() + "\nBe brief.\n")
    assert PromptSet(d).version != v1
    (d / "repair.md").unlink()
    with pytest.raises(PromptError, match="repair.md"):
        PromptSet(d)


def test_cache_key_depends_on_what_changes_the_answer() -> None:
    ctx = context()
    base = cache_key("h", "openai", "m", "v1", "sys", ctx)
    assert base == cache_key("h", "openai", "m", "v1", "sys", context())
    assert base != cache_key("h2", "openai", "m", "v1", "sys", ctx)
    assert base != cache_key("h", "openai", "m2", "v1", "sys", ctx)
    assert base != cache_key("h", "openai", "m", "v2", "sys", ctx)
    assert base != cache_key("h", "openai", "m", "v1", "sys", context(position=True))
    assert base == cache_key("h", "openai", "m", "v1", "sys", context(equity=1004.0))  # drift within 2 digits


def test_cost_and_daily_budget(tmp_path: Path) -> None:
    f = tmp_path / "prices.json"
    f.write_text(json.dumps({"my-model": {"input": 1.0, "output": 2.0}, "gpt-4.1-mini": [0.5, 1.0]}))
    prices = load_prices(f)
    ct = CostTracker(prices, daily_budget_usd=0.01)
    assert ct.cost("openai", "my-model", 1_000_000, 500_000) == pytest.approx(2.0)
    assert ct.cost("openai", "gpt-4.1-mini", 1000, 1000) == pytest.approx(0.0015)
    assert ct.cost("ollama", "llama3", 10**6, 10**6) == 0.0
    assert ct.cost("openai", "unknown-model", 10**6, 0) == prices["*"][0]  # conservative default
    day = date(2025, 1, 1)
    assert ct.allowed(day)
    ct.add(day, "openai:my-model", 0.006)
    ct.add(day, "anthropic:x", 0.005)
    assert not ct.allowed(day) and ct.allowed(date(2025, 1, 2))
    assert ct.first_exhaustion(day) and not ct.first_exhaustion(day)
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"m": {"input": 1}}))
    with pytest.raises(PriceTableError, match="'m'"):
        load_prices(bad)


def test_zero_keys_gives_the_rules_analyst(tmp_cwd: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MODELS", raising=False)
    analysts = build_analysts(load_settings())
    assert [a.name for a in analysts] == ["rules"] and isinstance(analysts[0], RulesAnalyst)


def test_model_without_key_is_skipped_with_one_warning(tmp_cwd: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("OPENAI_API_KEY", "ANTHROPIC_API_KEY", "DEEPSEEK_API_KEY"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-test")
    monkeypatch.setenv("ANTHROPIC_BASE_URL", "http://127.0.0.1:9")
    monkeypatch.setenv("DEEPSEEK_TIMEOUT_SECONDS", "240")
    monkeypatch.setenv("DEEPSEEK_API_KEY", "sk-ds")
    settings = load_settings(models="openai:gpt-4.1-mini,anthropic:claude-haiku-4-5,deepseek:deepseek-chat")
    with structlog.testing.capture_logs() as logs:
        analysts = build_analysts(settings)
    skipped = [e for e in logs if e["event"] == "ai.model_skipped_no_key"]
    assert len(skipped) == 1 and skipped[0]["model"] == "openai:gpt-4.1-mini"
    assert [a.name for a in analysts] == ["anthropic:claude-haiku-4-5", "deepseek:deepseek-chat"]
    a, d = analysts
    assert isinstance(a, ModelAnalyst) and isinstance(a.client, AnthropicClient)
    assert isinstance(d, ModelAnalyst) and isinstance(d.client, OpenAIChatClient)
    assert d.client.structured == "json_object"
    assert str(d.client._client.base_url).startswith("https://api.deepseek.com")
    assert d.client._client.timeout == 240
    assert "sk-ant-test" not in repr(logs)


def test_rules_voter_always(tmp_cwd: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OLLAMA_BASE_URL", "http://127.0.0.1:9/v1")
    analysts = build_analysts(load_settings(models="ollama:llama3", rules_voter="always"))
    assert [a.name for a in analysts] == ["rules", "ollama:llama3"]  # keyless local provider


async def test_rules_analyst_record() -> None:
    result, rec = await RulesAnalyst().vote_with_record(context(snapshot(trend="up")))
    assert rec.voter == "rules" and rec.action == "LONG" and rec.prompt_version.startswith("rules")
    assert rec.parsed is not None and rec.parsed["stop_loss"] == result.stop_loss  # type: ignore[union-attr]


def test_fallback_market_renderer_has_no_dates_and_shows_every_timeframe() -> None:
    from quorum.ai.prompts import render_market

    text = PromptSet(market_renderer=render_market).user(context())
    assert not DATE.search(text)
    assert all(f"### {tf}" in text for tf in ("15m", "1h", "4h")) and "next funding in 60 minutes" in text


def test_retry_after_header_forms() -> None:
    from datetime import UTC, datetime, timedelta
    from email.utils import format_datetime

    from quorum.ai.retry import retry_after_seconds

    class Resp:
        def __init__(self, headers: dict[str, str]) -> None:
            self.headers = headers

    class Err(Exception):
        def __init__(self, headers: dict[str, str]) -> None:
            self.response = Resp(headers)

    assert retry_after_seconds(Err({"retry-after": "3"})) == 3.0
    assert retry_after_seconds(Err({"retry-after-ms": "250", "retry-after": "3"})) == 0.25
    later = format_datetime(datetime.now(UTC) + timedelta(seconds=60), usegmt=True)
    ra = retry_after_seconds(Err({"retry-after": later}))
    assert ra is not None and 50 < ra <= 60
    assert retry_after_seconds(Err({})) is None and retry_after_seconds(ValueError()) is None


def test_memoised_snapshot_hash_matches_the_content_hash() -> None:
    import dataclasses

    from quorum.ai.context import snapshot_hash

    s = snapshot()
    assert snapshot_hash(s) == s.hash == snapshot_hash(snapshot())
    moved = dataclasses.replace(s, price=100.5)
    assert snapshot_hash(moved) == moved.hash != s.hash
    nan = dataclasses.replace(s, price=float("nan"))
    assert snapshot_hash(nan) == nan.hash


async def test_rules_analyst_uses_the_decision_timeframe() -> None:
    import dataclasses

    from quorum.domain.models import Action

    up = snapshot(trend="up")
    flat_15m = dataclasses.replace(up, timeframes=(dataclasses.replace(up.timeframes[0], adx=5.0),
                                                   *up.timeframes[1:]))
    assert (await RulesAnalyst("15m").vote(context(flat_15m))).action is Action.HOLD  # type: ignore[union-attr]
    assert (await RulesAnalyst("1h").vote(context(flat_15m))).action is Action.LONG  # type: ignore[union-attr]
    missing = await RulesAnalyst("30m").vote(context(up))
    assert missing.action is Action.HOLD and "30m" in missing.reasoning  # type: ignore[union-attr]
