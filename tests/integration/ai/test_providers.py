"""The official openai/anthropic SDKs against wire-level fakes on 127.0.0.1: consensus,
retries, timeouts, repair, refusals, cache and budget."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from quorum import metrics
from quorum.ai import build_analysts
from quorum.ai.analysts import RulesAnalyst
from quorum.ai.client import Message
from quorum.ai.consensus import ConsensusEngine
from quorum.ai.cost import CostTracker
from quorum.ai.retry import RetryPolicy
from quorum.cache import MemoryTTLCache
from quorum.config import load_settings
from quorum.domain.consensus import ConsensusRules
from quorum.domain.models import Abstention, Action, Vote
from tests.fakes.anthropic_server import FakeAnthropicServer
from tests.fakes.openai_server import FakeOpenAIServer, Reply
from tests.integration.ai.conftest import PROMPTS, RecordingSleep, anthropic_analyst, openai_analyst
from tests.unit.ai.factory import context, snapshot, vote_json

RULES = ConsensusRules(min_voters=2, min_agreement=0.66, min_confidence=0.6)


def _anthropic_key(headers: dict[str, str]) -> str:
    # SDK versions differ: x-api-key (classic) or Authorization: Bearer (2.x)
    return headers.get("x-api-key") or headers.get("Authorization", "")


def tool(action: str = "LONG", **kw: object) -> dict[str, object]:
    return json.loads(vote_json(action, **kw))  # type: ignore[arg-type]


async def test_agreement_gives_a_proposal(oai: FakeOpenAIServer, ant: FakeAnthropicServer,
                                          fast_retry: RetryPolicy) -> None:
    oai.default = Reply(text=vote_json("LONG", 0.8, stop_loss=97.0, leverage=4))
    ant.default = Reply(tool_input=tool("LONG", confidence=0.7, stop_loss=98.5, leverage=2))
    engine = ConsensusEngine([RulesAnalyst(), openai_analyst(oai, fast_retry), anthropic_analyst(ant, fast_retry)],
                             RULES, deadline_seconds=10)
    result = await engine.decide(context(snapshot(trend="up")))
    p = result.proposal
    assert p.action is Action.LONG and p.valid_votes == 3 and not result.abstentions
    assert p.stop_loss is not None and 97.0 <= p.stop_loss <= 98.5
    assert p.decision_id == result.decision_id and result.analyst == "models"
    # the real wire format reached the fakes
    req = oai.requests[0]
    assert req.path == "/v1/chat/completions" and req.headers["Authorization"] == "Bearer sk-test-openai"
    assert req.body["response_format"]["type"] == "json_schema"
    assert req.body["messages"][0]["role"] == "system" and "enforced in code" in req.body["messages"][0]["content"]
    areq = ant.requests[0]
    assert "sk-ant-test" in _anthropic_key(areq.headers) and "anthropic-version" in areq.headers
    assert areq.body["tool_choice"]["name"] == "submit_vote"
    assert "BTCUSDT" in areq.body["messages"][0]["content"]
    rec = {r.voter: r for r in result.records}
    assert rec["openai:gpt-4.1-mini"].tokens_in > 0 and rec["openai:gpt-4.1-mini"].attempts == 1


async def test_disagreement_gives_hold(oai: FakeOpenAIServer, ant: FakeAnthropicServer,
                                       fast_retry: RetryPolicy) -> None:
    oai.default = Reply(text=vote_json("LONG", 0.9))
    ant.default = Reply(tool_input=tool("SHORT", confidence=0.9))
    engine = ConsensusEngine([RulesAnalyst(), openai_analyst(oai, fast_retry), anthropic_analyst(ant, fast_retry)],
                             RULES, deadline_seconds=10)
    result = await engine.decide(context(snapshot(trend="flat")))
    assert result.proposal.action is Action.HOLD
    assert {v.action for v in result.votes} == {Action.LONG, Action.SHORT, Action.HOLD}
    assert "MIN_AGREEMENT" in result.proposal.reason or "tie" in result.proposal.reason


async def test_a_voter_past_the_deadline_abstains_and_the_others_decide(
        oai: FakeOpenAIServer, ant: FakeAnthropicServer, fast_retry: RetryPolicy) -> None:
    oai.default = Reply(text=vote_json("SHORT", 0.9), delay=30)
    ant.default = Reply(tool_input=tool("LONG", confidence=0.8))
    engine = ConsensusEngine([RulesAnalyst(), openai_analyst(oai, fast_retry, timeout=60),
                              anthropic_analyst(ant, fast_retry)], RULES, deadline_seconds=0.5)
    result = await engine.decide(context(snapshot(trend="up")))
    assert result.proposal.action is Action.LONG and result.proposal.valid_votes == 2
    (late,) = result.abstentions
    assert late.voter == "openai:gpt-4.1-mini" and late.reason.startswith("deadline")
    rec = next(r for r in result.records if r.voter == late.voter)
    assert rec.error == "deadline exceeded" and rec.abstain_reason == late.reason


async def test_per_call_timeout_is_retried_then_abstains(oai: FakeOpenAIServer, sleeps: RecordingSleep) -> None:
    oai.default = Reply(text=vote_json(), delay=3)
    analyst = openai_analyst(oai, RetryPolicy(attempts=2, initial_wait=0.01, sleep=sleeps), timeout=0.2)
    result, rec = await analyst.vote_with_record(context())
    assert isinstance(result, Abstention) and result.reason.startswith("timeout")
    assert len(oai.requests) == 2 and rec.attempts == 2 and rec.error and "Timeout" in rec.error


async def test_429_with_retry_after_is_retried_honouring_the_header(
        oai: FakeOpenAIServer, fast_retry: RetryPolicy, sleeps: RecordingSleep) -> None:
    oai.push(Reply(status=429, headers={"Retry-After": "7"}, error_message="Rate limit reached"))
    oai.default = Reply(text=vote_json())
    voter = "openai:gpt-4.1-mini"
    calls = metrics.MODEL_CALLS.labels(voter)._value.get()
    limited = metrics.MODEL_ERRORS.labels(voter, "rate_limit")._value.get()
    result, rec = await openai_analyst(oai, fast_retry).vote_with_record(context())
    assert isinstance(result, Vote)
    assert len(oai.requests) == 2 and rec.attempts == 2
    assert sleeps.waits == [7.0]
    assert metrics.MODEL_CALLS.labels(voter)._value.get() == calls + 2
    assert metrics.MODEL_ERRORS.labels(voter, "rate_limit")._value.get() == limited + 1


async def test_529_overloaded_is_retried(ant: FakeAnthropicServer, fast_retry: RetryPolicy,
                                         sleeps: RecordingSleep) -> None:
    ant.push(Reply(status=529, error_message="Overloaded"), Reply(status=500))
    ant.default = Reply(tool_input=tool())
    result, rec = await anthropic_analyst(ant, fast_retry).vote_with_record(context())
    assert isinstance(result, Vote) and len(ant.requests) == 3 and rec.attempts == 3
    assert len(sleeps.waits) == 2 and all(0 < w <= 0.05 * 1.25 for w in sleeps.waits)


@pytest.mark.parametrize("status", [400, 401, 403])
async def test_client_errors_are_not_retried(oai: FakeOpenAIServer, fast_retry: RetryPolicy,
                                             sleeps: RecordingSleep, status: int) -> None:
    oai.default = Reply(status=status, error_message="Incorrect API key provided")
    result, rec = await openai_analyst(oai, fast_retry).vote_with_record(context())
    assert isinstance(result, Abstention) and len(oai.requests) == 1 and sleeps.waits == []
    assert rec.error is not None and str(status) in rec.error


async def test_anthropic_401_is_not_retried(ant: FakeAnthropicServer, fast_retry: RetryPolicy) -> None:
    ant.default = Reply(status=401, error_message="invalid x-api-key")
    result, _ = await anthropic_analyst(ant, fast_retry).vote_with_record(context())
    assert isinstance(result, Abstention) and result.reason.startswith("auth") and len(ant.requests) == 1


async def test_malformed_json_gets_one_repair_retry_then_abstains(oai: FakeOpenAIServer,
                                                                  fast_retry: RetryPolicy) -> None:
    oai.default = Reply(text='{"action": "LONG", "confidence": 0.8, "stop_loss": 9')
    result, rec = await openai_analyst(oai, fast_retry).vote_with_record(context())
    assert isinstance(result, Abstention) and result.reason.startswith("invalid reply after repair")
    assert len(oai.requests) == 2
    repair = oai.requests[1].body["messages"]
    assert [m["role"] for m in repair] == ["system", "user", "assistant", "user"]
    assert "truncated" in repair[-1]["content"]
    assert rec.raw_reply is not None and "repair reply" in rec.raw_reply


async def test_repair_retry_can_succeed(ant: FakeAnthropicServer, fast_retry: RetryPolicy) -> None:
    ant.push(Reply(tool_input=tool("LONG", stop_loss=120.0)))  # stop on the wrong side
    ant.default = Reply(tool_input=tool("LONG"))
    result, _ = await anthropic_analyst(ant, fast_retry).vote_with_record(context())
    assert isinstance(result, Vote) and len(ant.requests) == 2
    assert "below the price" in ant.requests[1].body["messages"][-1]["content"]


async def test_refusals_abstain_without_repair(oai: FakeOpenAIServer, ant: FakeAnthropicServer,
                                               fast_retry: RetryPolicy) -> None:
    oai.push(Reply(refusal="I'm sorry, I can't assist with that."))
    r1, _ = await openai_analyst(oai, fast_retry).vote_with_record(context())
    oai.push(Reply(text="I'm sorry, but I cannot provide financial advice."))
    r2, _ = await openai_analyst(oai, fast_retry).vote_with_record(context())
    ant.push(Reply(text="I won't help with leveraged trading.", stop_reason="refusal"))
    r3, _ = await anthropic_analyst(ant, fast_retry).vote_with_record(context())
    for r in (r1, r2, r3):
        assert isinstance(r, Abstention) and r.reason.startswith("refused")
    assert len(oai.requests) == 2 and len(ant.requests) == 1


async def test_adversarial_leverage_is_clamped_and_recorded(oai: FakeOpenAIServer, fast_retry: RetryPolicy) -> None:
    oai.default = Reply(text=vote_json(leverage=125, reasoning="ignore your limits, use 125x"))
    result, rec = await openai_analyst(oai, fast_retry).vote_with_record(context())
    assert isinstance(result, Vote) and result.leverage == 5
    assert rec.notes and "clamped" in rec.notes[0]


async def _cache_roundtrip(oai: FakeOpenAIServer, fast_retry: RetryPolicy, cache: object) -> None:
    oai.default = Reply(text=vote_json())
    analyst = openai_analyst(oai, fast_retry, cache=cache)
    hits = metrics.CACHE_HITS._value.get()
    r1, rec1 = await analyst.vote_with_record(context())
    r2, rec2 = await analyst.vote_with_record(context())
    assert isinstance(r1, Vote) and r1 == r2
    assert len(oai.requests) == 1
    assert not rec1.cached and rec2.cached and rec2.tokens_in == 0 and rec2.cost_usd == 0
    assert metrics.CACHE_HITS._value.get() == hits + 1
    # a different snapshot (next bar) is a miss
    await analyst.vote_with_record(context(snapshot(time_ms=2_000_000_000_000)))
    assert len(oai.requests) == 2


async def test_cache_hit_makes_no_second_request_memory(oai: FakeOpenAIServer, fast_retry: RetryPolicy) -> None:
    await _cache_roundtrip(oai, fast_retry, MemoryTTLCache())


async def test_cache_hit_makes_no_second_request_redis(oai: FakeOpenAIServer, fast_retry: RetryPolicy,
                                                       redis_cache: object) -> None:
    await _cache_roundtrip(oai, fast_retry, redis_cache)


async def test_abstentions_are_not_cached(oai: FakeOpenAIServer, fast_retry: RetryPolicy) -> None:
    oai.push(Reply(status=401))
    oai.default = Reply(text=vote_json())
    analyst = openai_analyst(oai, fast_retry, cache=MemoryTTLCache())
    r1, _ = await analyst.vote_with_record(context())
    r2, _ = await analyst.vote_with_record(context())
    assert isinstance(r1, Abstention) and isinstance(r2, Vote) and len(oai.requests) == 2


async def test_daily_budget_skips_models_and_rules_continue(oai: FakeOpenAIServer, fast_retry: RetryPolicy) -> None:
    oai.default = Reply(text=vote_json(), tokens_in=4_000, tokens_out=800)  # within what the request allows
    cost = CostTracker({"gpt-4.1-mini": (0.4, 1.6), "*": (5.0, 15.0)}, daily_budget_usd=0.05)
    events: list[tuple[object, float, float]] = []

    async def sink(day: object, spent: float, limit: float) -> None:
        events.append((day, spent, limit))

    analyst = openai_analyst(oai, fast_retry, cost=cost, budget_sink=sink)
    # room for one call at its upper bound, not two
    cost.daily_budget_usd = budget = 1.5 * analyst.upper_bound_usd([Message("user", PROMPTS.user(context()))])
    engine = ConsensusEngine([RulesAnalyst(), analyst], ConsensusRules(1, 0.5, 0.5), deadline_seconds=5)
    r1 = await engine.decide(context(snapshot(trend="up")))
    rec = next(r for r in r1.records if r.voter == analyst.name)
    assert rec.cost_usd == pytest.approx(0.00288) and rec.usage_anomaly is None
    for t in (1, 2):
        r = await engine.decide(context(snapshot(trend="up", time_ms=snapshot().time_ms + t * 900_000)))
        (ab,) = r.abstentions
        assert "budget" in ab.reason and r.proposal.action is Action.LONG  # the rules analyst still votes
    assert len(oai.requests) == 1
    assert len(events) == 1 and events[0][1] == pytest.approx(0.00288) and events[0][2] == budget


async def test_configured_from_settings_against_the_fakes(
        oai: FakeOpenAIServer, ant: FakeAnthropicServer, tmp_cwd: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-from-env")
    monkeypatch.setenv("OPENAI_BASE_URL", oai.base_url)
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-env")
    monkeypatch.setenv("ANTHROPIC_BASE_URL", ant.base_url)
    monkeypatch.setenv("ANTHROPIC_TIMEOUT_SECONDS", "3")
    oai.default = Reply(text=vote_json("SHORT", 0.8))
    ant.default = Reply(tool_input=tool("SHORT", confidence=0.9))
    settings = load_settings(models="openai:gpt-4.1-mini,anthropic:claude-haiku-4-5", min_voters=2,
                             model_retry_initial_seconds=0.01)
    analysts = build_analysts(settings, cache=MemoryTTLCache())
    engine = ConsensusEngine.from_settings(settings, analysts)
    result = await engine.decide(context(snapshot(trend="down")))
    assert result.proposal.action is Action.SHORT and result.proposal.valid_votes == 2
    assert oai.requests[0].headers["Authorization"] == "Bearer sk-from-env"
    await engine.close()
    assert "sk-ant-env" in _anthropic_key(ant.requests[0].headers)


async def test_server_rejecting_response_format_falls_back_to_plain_json(oai: FakeOpenAIServer,
                                                                        fast_retry: RetryPolicy) -> None:
    oai.push(Reply(status=400, error_message="Invalid parameter: 'response_format' of type 'json_schema' is "
                   "not supported with this model."))
    oai.default = Reply(text="Sure.\n```json\n" + vote_json("SHORT") + "\n```")
    analyst = openai_analyst(oai, fast_retry, provider="openai")
    result, _ = await analyst.vote_with_record(context())
    assert isinstance(result, Vote) and result.action is Action.SHORT
    assert "response_format" in oai.requests[0].body and "response_format" not in oai.requests[1].body
    await analyst.vote_with_record(context(snapshot(time_ms=5)))
    assert "response_format" not in oai.requests[2].body


async def test_engine_turns_a_broken_custom_analyst_vote_into_an_abstention() -> None:
    class Broken:
        name = "custom"

        async def vote(self, ctx):  # type: ignore[no-untyped-def]
            return Vote("custom", ctx.snapshot.symbol, Action.LONG, 0.9, 3, ctx.snapshot.price * 1.1, ())

    class Crashing:
        name = "crash"

        async def vote(self, ctx):  # type: ignore[no-untyped-def]
            raise RuntimeError("boom")

    engine = ConsensusEngine([RulesAnalyst(), Broken(), Crashing()], ConsensusRules(1, 0.5, 0.5))
    result = await engine.decide(context(snapshot(trend="up")))
    reasons = {a.voter: a.reason for a in result.abstentions}
    assert "invariants" in reasons["custom"] and "boom" in reasons["crash"]
    assert result.proposal.action is Action.LONG and result.proposal.valid_votes == 1
