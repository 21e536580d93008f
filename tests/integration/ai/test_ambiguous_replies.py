"""A reply with more than one vote is an abstention on every provider — several Anthropic tool
calls, several OpenAI tool calls, choices, or JSON objects — never resolved to one of them and never
sent back for a repair; a reply stopped by a content filter is an abstention too. Over the wire from
the fake providers, through the real consensus path, recorded in the real Postgres."""

from __future__ import annotations

import json
from typing import Any

import asyncpg

from quorum.ai.analysts import RulesAnalyst
from quorum.ai.consensus import ConsensusEngine, ConsensusResult
from quorum.ai.retry import RetryPolicy
from quorum.domain.consensus import ConsensusRules
from quorum.domain.models import Abstention, Vote
from quorum.store.decisions import DecisionRepository
from tests.fakes.anthropic_server import FakeAnthropicServer
from tests.fakes.openai_server import FakeOpenAIServer, Reply
from tests.integration.ai.conftest import anthropic_analyst, openai_analyst
from tests.unit.ai.factory import context, snapshot, vote_json

GPT, CLAUDE = "openai:gpt-4.1-mini", "anthropic:claude-haiku-4-5"


def _vote(action: str, confidence: float = 0.8) -> dict[str, Any]:
    return dict(json.loads(vote_json(action, confidence)))


async def _decide(pool: asyncpg.Pool, oai: FakeOpenAIServer, ant: FakeAnthropicServer, retry: RetryPolicy
                  ) -> tuple[ConsensusResult, dict[str, asyncpg.Record]]:
    engine = ConsensusEngine([RulesAnalyst(), openai_analyst(oai, retry), anthropic_analyst(ant, retry)],
                             ConsensusRules(1, 0.5, 0.5), deadline_seconds=10, store=DecisionRepository(pool))
    result = await engine.decide(context(snapshot(trend="up")))
    rows = await pool.fetch("SELECT * FROM model_votes WHERE decision_id = $1", result.decision_id)
    return result, {r["voter"]: r for r in rows}


def _abstained(result: ConsensusResult, voter: str) -> str:
    found = next(x for x in (*result.votes, *result.abstentions) if x.voter == voter)
    assert isinstance(found, Abstention), f"{voter} voted {found}"
    return found.reason


async def test_two_contradictory_anthropic_tool_calls_are_an_abstention(
        pool: asyncpg.Pool, oai: FakeOpenAIServer, ant: FakeAnthropicServer, fast_retry: RetryPolicy) -> None:
    oai.default = Reply(text=vote_json("LONG", 0.8))
    ant.default = Reply(tool_input=_vote("LONG"), tool_calls=[_vote("SHORT", 0.9)])
    result, rows = await _decide(pool, oai, ant, fast_retry)
    assert _abstained(result, CLAUDE).startswith("ambiguous: 2 tool calls with 2 different votes")
    assert len(ant.requests) == 1  # no repair call: there is nothing to repair
    assert rows[CLAUDE]["action"] is None and rows[CLAUDE]["abstain_reason"].startswith("ambiguous")
    assert '"SHORT"' in rows[CLAUDE]["raw_reply"] and '"LONG"' in rows[CLAUDE]["raw_reply"]  # both kept
    assert rows[GPT]["action"] == "LONG"  # the other voters still decide
    # the same call sent twice is one vote
    ant.default = Reply(tool_input=_vote("SHORT", 0.9), tool_calls=[_vote("SHORT", 0.9)])
    result, _ = await _decide(pool, oai, ant, fast_retry)
    assert any(v.voter == CLAUDE and v.action.value == "SHORT" for v in result.votes)


async def test_several_openai_tool_calls_or_choices_are_an_abstention(
        pool: asyncpg.Pool, oai: FakeOpenAIServer, ant: FakeAnthropicServer, fast_retry: RetryPolicy) -> None:
    ant.default = Reply(tool_input=_vote("LONG"))
    oai.default = Reply(text=vote_json("LONG", 0.8))  # what a repair call would get
    oai.push(Reply(tool_calls=[_vote("LONG"), _vote("SHORT")]))
    result, rows = await _decide(pool, oai, ant, fast_retry)
    assert _abstained(result, GPT).startswith("ambiguous: 2 tool calls") and len(oai.requests) == 1
    assert rows[GPT]["abstain_reason"].startswith("ambiguous") and rows[CLAUDE]["action"] == "LONG"

    oai.push(Reply(text=vote_json("LONG", 0.8), extra_choices=[vote_json("SHORT", 0.9)]))
    result, rows = await _decide(pool, oai, ant, fast_retry)
    assert _abstained(result, GPT) == "ambiguous: 2 choices in one reply" and len(oai.requests) == 2

    # a single tool call is a vote: its arguments are read like a reply
    oai.default = Reply(tool_calls=[_vote("LONG", 0.75)])
    result, rows = await _decide(pool, oai, ant, fast_retry)
    assert any(isinstance(v, Vote) and v.voter == GPT and v.confidence == 0.75 for v in result.votes)
    assert len(oai.requests) == 3


async def test_several_json_votes_in_an_openai_reply_are_an_abstention_without_repair(
        pool: asyncpg.Pool, oai: FakeOpenAIServer, ant: FakeAnthropicServer, fast_retry: RetryPolicy) -> None:
    ant.default = Reply(tool_input=_vote("LONG"))
    oai.default = Reply(text=vote_json("LONG", 0.8))  # what a repair call would get
    oai.push(Reply(text="Either " + vote_json("LONG") + " or " + vote_json("SHORT")))
    result, rows = await _decide(pool, oai, ant, fast_retry)
    assert _abstained(result, GPT) == "ambiguous: more than one different vote object in reply"
    assert len(oai.requests) == 1 and rows[GPT]["attempts"] == 1

    # two fenced blocks, each a different vote (the first block alone used to be taken)
    oai.push(Reply(text=f"```json\n{vote_json('LONG')}\n```\nor\n```json\n{vote_json('SHORT')}\n```"))
    result, rows = await _decide(pool, oai, ant, fast_retry)
    assert _abstained(result, GPT).startswith("ambiguous") and len(oai.requests) == 2


async def test_a_reply_stopped_by_a_content_filter_is_an_abstention(
        pool: asyncpg.Pool, oai: FakeOpenAIServer, ant: FakeAnthropicServer, fast_retry: RetryPolicy) -> None:
    oai.default = Reply(text=vote_json("LONG", 0.8))  # what a repair call would get
    # a complete-looking vote, but the filter stopped the reply: it is not an answer
    oai.push(Reply(text=vote_json("SHORT", 0.9), finish_reason="content_filter"))
    ant.default = Reply(tool_input=_vote("SHORT", 0.9), stop_reason="refusal")
    result, rows = await _decide(pool, oai, ant, fast_retry)
    assert _abstained(result, GPT).startswith("refused: stopped by the content filter")
    assert _abstained(result, CLAUDE).startswith("refused: stopped by the content filter (stop_reason refusal)")
    assert len(oai.requests) == 1 and len(ant.requests) == 1
    assert rows[GPT]["action"] is None and rows[GPT]["abstain_reason"].startswith("refused")
    assert '"SHORT"' in rows[GPT]["raw_reply"]  # what came is kept for the audit

    # cut off mid-vote by the filter: no repair call either
    oai.push(Reply(text=vote_json("SHORT", 0.9)[:40], finish_reason="content_filter"))
    result, _ = await _decide(pool, oai, ant, fast_retry)
    assert _abstained(result, GPT).startswith("refused: stopped by the content filter") and len(oai.requests) == 2
