"""Many decisions at once against wire-level fakes: a provider's concurrency cap holds however
many models and decisions share it, and concurrent paid calls never spend more than the daily
budget — calls cancelled at the consensus deadline give their reservation back."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest

from quorum.ai import build_analysts
from quorum.ai.client import Message
from quorum.ai.consensus import ConsensusEngine
from quorum.ai.cost import CostTracker, utc_day
from quorum.ai.retry import RetryPolicy
from quorum.config import load_settings
from quorum.domain.consensus import ConsensusRules
from quorum.domain.models import Vote
from tests.fakes.openai_server import FakeOpenAIServer, Reply
from tests.integration.ai.conftest import PROMPTS, openai_analyst
from tests.unit.ai.factory import context, snapshot, vote_json

NOW_S = 1_760_000_000.0  # a fixed wall clock: the budget day cannot roll over mid-test


def asked_symbol(body: dict[str, Any]) -> str:
    user = body["messages"][-1]["content"]
    return str(user.split("Symbol: ", 1)[1].split("\n", 1)[0])


def valid_vote(body: dict[str, Any], **kw: Any) -> Reply:
    return Reply(text=vote_json("LONG", 0.8, symbol=asked_symbol(body)), **kw)


def contexts(n: int, prefix: str = "S") -> list[Any]:
    return [context(snapshot(symbol=f"{prefix}{i:03d}USDT", trend="up")) for i in range(n)]


async def test_a_provider_cap_of_two_is_never_exceeded(tmp_cwd: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    async with FakeOpenAIServer() as oai, FakeOpenAIServer() as ds:
        for srv in (oai, ds):
            srv.default = lambda body: valid_vote(body, delay=0.2)  # type: ignore[attr-defined]
        monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
        monkeypatch.setenv("OPENAI_BASE_URL", oai.base_url)  # type: ignore[attr-defined]
        monkeypatch.setenv("OPENAI_MAX_CONCURRENCY", "2")
        monkeypatch.setenv("DEEPSEEK_API_KEY", "sk-ds")
        monkeypatch.setenv("DEEPSEEK_BASE_URL", ds.base_url)  # type: ignore[attr-defined]
        # two OpenAI models share OpenAI's cap; DeepSeek keeps the default (64)
        settings = load_settings(models="openai:gpt-4.1-mini,openai:gpt-4.1-nano,deepseek:deepseek-chat",
                                 min_voters=1, consensus_deadline_seconds=60)
        engine = ConsensusEngine.from_settings(settings, build_analysts(settings))
        results = await asyncio.gather(*(engine.decide(c) for c in contexts(8)))
        await engine.close()
    assert all(r.proposal.valid_votes == 3 and not r.abstentions for r in results)
    assert len(oai.requests) == 16 and len(ds.requests) == 8  # type: ignore[attr-defined]
    assert oai.peak_in_flight == 2  # type: ignore[attr-defined]
    assert ds.peak_in_flight > 2  # type: ignore[attr-defined]  # the cap is per provider


async def test_concurrent_paid_calls_never_overshoot_the_daily_budget(oai: FakeOpenAIServer) -> None:
    cost = CostTracker({"gpt-4.1-mini": (0.4, 1.6)}, daily_budget_usd=1.0)
    events: list[tuple[object, float, float]] = []

    async def sink(day: object, spent: float, limit: float) -> None:
        events.append((day, spent, limit))

    analyst = openai_analyst(oai, RetryPolicy(attempts=1), cost=cost, budget_sink=sink, wall_clock=lambda: NOW_S)
    day = utc_day(int(NOW_S * 1000))
    batch = contexts(40)
    bound = analyst.upper_bound_usd([Message("user", PROMPTS.user(batch[0]))])
    cost.daily_budget_usd = budget = 4.5 * bound  # room for four calls in flight at their upper bound
    committed_at_arrival: list[float] = []
    arrivals = 0

    def answer(body: dict[str, Any]) -> Reply:
        nonlocal arrivals
        arrivals += 1
        committed_at_arrival.append(cost.day_total(day) + cost.reserved_total(day))
        # the first two never answer in time (cancelled at the deadline); the others reply at
        # once, billing a realistic prompt and the full reply limit
        return valid_vote(body, delay=60 if arrivals <= 2 else 0, tokens_out=analyst.max_output_tokens)

    oai.default = answer
    engine = ConsensusEngine([analyst], ConsensusRules(1, 0.5, 0.5), deadline_seconds=2)
    results = await asyncio.gather(*(engine.decide(c) for c in batch))

    records = [rec for r in results for rec in r.records]
    spent = sum(rec.cost_usd for rec in records)
    paid = [rec for rec in records if rec.cost_usd > 0]
    late = [rec for rec in records if rec.error == "deadline exceeded"]
    refused = [rec for rec in records if rec.abstain_reason and "budget" in rec.abstain_reason]
    # without reservations all 40 would have been sent (nothing was spent when they started)
    assert len(oai.requests) == 4 and len(paid) == 2 and len(late) == 2 and len(refused) == 36
    assert all(rec.cost_usd <= bound for rec in paid)
    assert spent <= budget and cost.day_total(day) == pytest.approx(spent)
    assert all(c <= budget for c in committed_at_arrival)  # at every send, spent + in flight ≤ budget
    # the calls cancelled at the deadline released what they held
    assert cost.reserved_total(day) == 0.0
    assert len(events) == 1 and events[0][2] == budget

    # so the budget that is left can be used: as many calls as it covers at their upper bound
    room = int((budget - cost.day_total(day)) // bound)
    assert room >= 3  # with the two cancelled reservations leaked, two of these would be refused
    more = await asyncio.gather(*(engine.decide(c) for c in contexts(room, prefix="T")))
    assert all(isinstance(v, Vote) for r in more for v in r.votes) and all(not r.abstentions for r in more)
    total = spent + sum(rec.cost_usd for r in more for rec in r.records)
    assert total <= budget and cost.day_total(day) == pytest.approx(total) and cost.reserved_total(day) == 0.0


async def test_a_refused_repair_call_keeps_the_first_calls_cost(oai: FakeOpenAIServer) -> None:
    """The repair call reserves too; when the budget cannot cover it the voter abstains for the
    budget, and the first call's tokens and cost stay on the record."""
    cost = CostTracker({"gpt-4.1-mini": (0.4, 1.6)}, daily_budget_usd=1.0)
    analyst = openai_analyst(oai, RetryPolicy(attempts=1), cost=cost, wall_clock=lambda: NOW_S)
    ctx = context()
    cost.daily_budget_usd = 1.05 * analyst.upper_bound_usd([Message("user", PROMPTS.user(ctx))])
    oai.default = Reply(text=json.dumps({"action": "LONG"}), tokens_in=2000, tokens_out=400)  # invalid: repair
    result, rec = await analyst.vote_with_record(ctx)
    assert len(oai.requests) == 1  # the repair call was never sent
    assert not isinstance(result, Vote) and "budget" in result.reason
    assert rec.attempts == 1 and rec.tokens_in == 2000 and rec.cost_usd == pytest.approx((2000 * 0.4 + 400 * 1.6) / 1e6)
    assert cost.day_total(utc_day(int(NOW_S * 1000))) == pytest.approx(rec.cost_usd)
