"""Audit rows in Postgres: decisions, every call in model_votes, proposals, budget events,
replay lookups and calibration from closed trades."""

from __future__ import annotations

from datetime import date

import asyncpg
import pytest

from quorum.ai import build_consensus
from quorum.ai.analysts import ModelAnalyst, RulesAnalyst
from quorum.ai.calibration import Calibrator
from quorum.ai.client import Message
from quorum.ai.consensus import ConsensusEngine
from quorum.ai.cost import CostTracker
from quorum.ai.retry import RetryPolicy
from quorum.config import load_settings
from quorum.domain.consensus import ConsensusRules
from quorum.domain.models import Abstention, Action, PositionState, Side, Vote
from quorum.store.decisions import DecisionRepository
from quorum.store.positions import PositionRepository
from tests.fakes.openai_server import FakeOpenAIServer, Reply
from tests.integration.ai.conftest import openai_analyst
from tests.unit.ai.factory import context, snapshot, vote_json


async def test_decision_votes_and_proposal_are_recorded_and_linked(pool: asyncpg.Pool, oai: FakeOpenAIServer,
                                                                   fast_retry: RetryPolicy) -> None:
    bad = FakeOpenAIServer(Reply(status=401, error_message="bad key"))
    await bad.start()
    try:
        oai.default = Reply(text=vote_json("LONG", 0.8), tokens_in=1000, tokens_out=100)
        store = DecisionRepository(pool)
        cost = CostTracker({"gpt-4.1-mini": (0.4, 1.6)}, daily_budget_usd=5)
        engine = ConsensusEngine(
            [RulesAnalyst(), openai_analyst(oai, fast_retry, cost=cost),
             openai_analyst(bad, fast_retry, model="gpt-4o", provider="deepseek")],
            ConsensusRules(2, 0.66, 0.6), deadline_seconds=10, store=store, mode="paper")
        snap = snapshot(trend="up")
        result = await engine.decide(context(snap))
    finally:
        await bad.stop()
    assert result.proposal.action is Action.LONG
    d = await store.decision(result.decision_id)
    assert d is not None and d["snapshot_hash"] == snap.hash and d["analyst"] == "models" and d["action"] == "LONG"
    assert await pool.fetchval("SELECT count(*) FROM market_snapshots WHERE hash = $1", snap.hash) == 1
    rows = {r["voter"]: r for r in await store.votes_for(result.decision_id)}
    assert set(rows) == {"rules", "openai:gpt-4.1-mini", "deepseek:gpt-4o"}
    ok = rows["openai:gpt-4.1-mini"]
    assert ok["snapshot_hash"] == snap.hash and ok["prompt_version"] == engine.analysts[1].prompts.version
    assert ok["raw_reply"] == vote_json("LONG", 0.8) and ok["parsed_vote"]["action"] == "LONG"
    assert ok["abstain_reason"] is None and ok["tokens_in"] == 1000 and ok["tokens_out"] == 100
    assert float(ok["cost_usd"]) == pytest.approx(0.00056) and ok["latency_ms"] >= 0 and not ok["cached"]
    failed = rows["deepseek:gpt-4o"]
    assert failed["abstain_reason"].startswith("auth") and "401" in failed["error"] and failed["action"] is None
    assert rows["rules"]["prompt_version"].startswith("rules")
    prop = await store.proposal_for(result.decision_id)
    assert prop is not None and prop["action"] == "LONG" and prop["valid_votes"] == 2 and prop["abstentions"] == 1
    assert float(prop["stop_loss"]) == pytest.approx(result.proposal.stop_loss)
    # the backtester's replay lookup
    replay = await store.recorded_votes(snap.hash)
    by = {r.voter: r for r in replay}
    assert isinstance(by["openai:gpt-4.1-mini"], Vote) and by["openai:gpt-4.1-mini"].action is Action.LONG
    assert isinstance(by["deepseek:gpt-4o"], Abstention)
    # the cost view
    cost_rows = await pool.fetch("SELECT * FROM ai_cost_by_day WHERE voter = 'openai:gpt-4.1-mini'")
    assert len(cost_rows) == 1 and cost_rows[0]["calls"] == 1
    assert (await store.spent_on(cost_rows[0]["day"]))["openai:gpt-4.1-mini"] == pytest.approx(0.00056)


async def _trade(pool: asyncpg.Pool, n: int, decision_id: str, side: Side, net: float) -> None:
    repo = PositionRepository(pool, "paper")
    state = PositionState(symbol=f"S{n}USDT", side=side, entry_price=100, quantity=1, initial_quantity=1,
                          initial_stop=98, stop_price=98, take_profit=104, leverage=2, opened_ms=1_760_000_000_000,
                          peak_price=100, position_id=f"p{n}", decision_id=decision_id)
    await repo.open(state)
    await repo.close(f"p{n}", exit_price=100 + net, gross_pnl=net, exit_reason="test", closed_ms=1_760_000_900_000)


async def test_calibration_weights_come_from_closed_trades(pool: asyncpg.Pool) -> None:
    store = DecisionRepository(pool)

    class Fixed:
        def __init__(self, name: str, action: str) -> None:
            self.name, self.action = name, action

        async def vote(self, ctx):  # type: ignore[no-untyped-def]
            sign = 1 if self.action == "LONG" else -1
            return Vote(self.name, ctx.snapshot.symbol, Action(self.action), 0.8, None, 100 - 2 * sign,
                        (100 + 4 * sign,))

    engine = ConsensusEngine([Fixed("bull", "LONG"), Fixed("bear", "SHORT")], ConsensusRules(1, 0.5, 0.5),
                             store=store)
    for n in range(30):
        r = await engine.decide(context(snapshot(symbol=f"S{n}USDT", time_ms=1_760_000_000_000 + n)))
        await _trade(pool, n, r.decision_id, Side.LONG, net=5.0 if n % 5 else -5.0)  # longs won 24/30
    weights = await Calibrator(store, mode="paper").weights()
    assert weights["bull"] > 1.0 > weights["bear"]
    assert (await Calibrator(store, mode="live").weights()) == {}


async def test_budget_exhaustion_is_recorded(pool: asyncpg.Pool, oai: FakeOpenAIServer, tmp_cwd: object,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-x")
    monkeypatch.setenv("OPENAI_BASE_URL", oai.base_url)
    oai.default = Reply(text=vote_json(), tokens_in=4_000, tokens_out=800)  # within what the request allows
    settings = load_settings(models="openai:gpt-4.1-mini", rules_voter="always")
    model = (await build_consensus(settings, pool=pool)).analysts[1]
    assert isinstance(model, ModelAnalyst)
    # room for one call at its upper bound, not two
    budget = 1.5 * model.upper_bound_usd([Message("user", model.prompts.user(context()))])
    settings = load_settings(models="openai:gpt-4.1-mini", daily_ai_budget_usd=budget, rules_voter="always")
    snap = snapshot(trend="up")
    consensus = await build_consensus(settings, pool=pool)
    await consensus.decide(context(snap))  # spends 0.00288, the next call's bound does not fit
    # a restart seeds today's spend from Postgres: the budget stays exhausted
    consensus = await build_consensus(settings, pool=pool)
    r = await consensus.decide(context(snapshot(trend="up", time_ms=snap.time_ms + 900_000)))
    assert any("budget" in a.reason for a in r.abstentions) and len(oai.requests) == 1
    ev = await pool.fetch("SELECT * FROM ai_budget_events")
    assert len(ev) == 1 and float(ev[0]["limit_usd"]) == pytest.approx(budget)
    assert float(ev[0]["spent_usd"]) == pytest.approx(0.00288)
    assert isinstance(ev[0]["day"], date)
