"""Reported token usage is checked, never trusted: usage that is negative, or beyond what the
request allowed (its max_tokens; input beyond an upper bound of the prompt's size), is recorded as
an anomaly and charged at the request's maximum — never subtracted from the day's spend, never
able to exhaust the daily budget the voters share. Over the wire from the fake providers, through
the real consensus path and the real Postgres writes."""

from __future__ import annotations

import json

import asyncpg
import pytest

from quorum.ai.analysts import ModelAnalyst
from quorum.ai.client import Message
from quorum.ai.consensus import ConsensusEngine
from quorum.ai.cost import CostTracker, utc_day
from quorum.ai.retry import RetryPolicy
from quorum.domain.consensus import ConsensusRules
from quorum.domain.models import Vote
from quorum.store.decisions import DecisionRepository
from tests.fakes.anthropic_server import FakeAnthropicServer
from tests.fakes.openai_server import FakeOpenAIServer, Reply
from tests.integration.ai.conftest import PROMPTS, anthropic_analyst, openai_analyst
from tests.unit.ai.factory import context, snapshot, vote_json

NOW_S = 1_790_000_000.0
PRICES = {"gpt-4.1-mini": (0.4, 1.6), "claude-haiku-4-5": (1.0, 5.0)}


def _bound(analyst: ModelAnalyst) -> float:
    return analyst.upper_bound_usd([Message("user", PROMPTS.user(context()))])


async def test_negative_usage_is_charged_at_the_request_maximum_never_subtracted(
        pool: asyncpg.Pool, oai: FakeOpenAIServer, fast_retry: RetryPolicy) -> None:
    cost = CostTracker(dict(PRICES), daily_budget_usd=1.0)
    analyst = openai_analyst(oai, fast_retry, cost=cost, wall_clock=lambda: NOW_S)
    oai.default = Reply(text=vote_json("LONG", 0.8), tokens_in=-50_000_000, tokens_out=-5)
    store = DecisionRepository(pool)
    engine = ConsensusEngine([analyst], ConsensusRules(1, 0.5, 0.5), deadline_seconds=10, store=store)
    result = await engine.decide(context(snapshot(trend="up")))

    assert isinstance(result.votes[0], Vote)  # the vote itself stands
    row = (await store.votes_for(result.decision_id))[0]
    bound = _bound(analyst)
    assert float(row["cost_usd"]) == pytest.approx(bound, rel=0.02) and row["tokens_out"] == 800
    assert row["tokens_in"] > 0 and "below" in row["usage_anomaly"] and "-50000000" in row["usage_anomaly"]
    day = utc_day(int(NOW_S * 1000))
    assert cost.day_total(day) == pytest.approx(float(row["cost_usd"])) and cost.day_total(day) > 0


async def test_absurd_usage_from_one_endpoint_cannot_exhaust_the_shared_budget(
        pool: asyncpg.Pool, oai: FakeOpenAIServer, ant: FakeAnthropicServer, fast_retry: RetryPolicy) -> None:
    cost = CostTracker(dict(PRICES), daily_budget_usd=1.0)
    gpt = openai_analyst(oai, fast_retry, cost=cost, wall_clock=lambda: NOW_S)
    claude = anthropic_analyst(ant, fast_retry, cost=cost, wall_clock=lambda: NOW_S)
    # room for three rounds of both voters at their upper bound
    cost.daily_budget_usd = budget = 3 * (_bound(gpt) + _bound(claude)) * 1.05
    # the OpenAI-compatible endpoint reports a trillion output tokens (and input far beyond the prompt)
    oai.default = Reply(text=vote_json("LONG", 0.8), tokens_in=40_000_000, tokens_out=10**12)
    ant.default = Reply(tool_input=json.loads(vote_json("LONG", 0.7)))
    store = DecisionRepository(pool)
    engine = ConsensusEngine([gpt, claude], ConsensusRules(2, 0.66, 0.6), deadline_seconds=10, store=store)
    results = [await engine.decide(context(snapshot(trend="up", time_ms=snapshot().time_ms + i * 900_000)))
               for i in range(3)]

    # every round both voters were asked and voted: the budget was never exhausted by the claim
    assert all(len(r.votes) == 2 and not r.abstentions for r in results)
    assert len(oai.requests) == 3 and len(ant.requests) == 3
    day = utc_day(int(NOW_S * 1000))
    assert cost.day_total(day) <= budget and cost.reserved_total(day) == 0.0
    rows = await pool.fetch("SELECT * FROM model_votes WHERE voter = 'openai:gpt-4.1-mini' ORDER BY id")
    assert len(rows) == 3
    for row in rows:
        assert row["tokens_out"] == 800 and float(row["cost_usd"]) == pytest.approx(_bound(gpt), rel=0.02)
        assert "output tokens 1000000000000 above the request's maximum 800" in row["usage_anomaly"]
        assert "input tokens 40000000 above the request's maximum" in row["usage_anomaly"]
    assert await pool.fetchval("SELECT count(*) FROM model_votes WHERE usage_anomaly IS NOT NULL") == 3
    assert await pool.fetchval("SELECT count(*) FROM ai_budget_events") == 0
    # after a restart the seeded spend is what was charged, so the budget is still not exhausted
    seeded = await store.spent_on(day)
    assert sum(seeded.values()) <= budget
