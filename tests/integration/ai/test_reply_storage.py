"""No model reply can break a decision at the Postgres write: text Postgres cannot store (NUL,
lone surrogates, control characters) and token counts beyond 32 bits arrive over the wire from
the fake providers, go through the real consensus path and are written to the real Postgres."""

from __future__ import annotations

import json

import asyncpg

from quorum.ai.analysts import CallRecord
from quorum.ai.consensus import ConsensusEngine
from quorum.ai.retry import RetryPolicy
from quorum.domain.consensus import ConsensusRules
from quorum.domain.models import Action
from quorum.store.decisions import DecisionRepository
from tests.fakes.anthropic_server import FakeAnthropicServer
from tests.fakes.openai_server import FakeOpenAIServer, Reply
from tests.integration.ai.conftest import anthropic_analyst, openai_analyst
from tests.unit.ai.factory import context, snapshot, vote_json

HOSTILE = "up\x00trend \ud800 bell\x07 esc\x1b[31m del\x7f c1\x85 tab\tnewline\n end"
STORED = "uptrend \ufffd bell esc[31m del c1 tab\tnewline\n end"
BIGINT_MAX = 2**63 - 1


def _clean(s: str) -> bool:
    return not any(c == "\x00" or "\ud800" <= c <= "\udfff" or (ord(c) < 32 and c not in "\t\n")
                   or 0x7F <= ord(c) <= 0x9F for c in s)


async def test_unstorable_reply_text_is_written_and_the_other_votes_kept(
        pool: asyncpg.Pool, oai: FakeOpenAIServer, ant: FakeAnthropicServer, fast_retry: RetryPolicy) -> None:
    # the OpenAI-compatible voter's reply: NUL, a lone surrogate and control characters in the prose
    # around the vote, in its reasoning and horizon, and as JSON escapes inside the vote
    body = json.loads(vote_json("LONG", 0.8, reasoning=HOSTILE, horizon="4h\x00\ud800"))
    oai.default = Reply(text="Here\x00 it is \udc00: " + json.dumps(body, ensure_ascii=False)
                        + " \\ud800 \x00", tokens_in=3_000, tokens_out=120)
    # the Anthropic voter's tool call: NUL and a lone surrogate inside the vote (jsonb refuses both)
    ant.default = Reply(tool_input=json.loads(vote_json("LONG", 0.7, reasoning="tool\x00 call \ud83d")))
    store = DecisionRepository(pool)
    engine = ConsensusEngine([openai_analyst(oai, fast_retry), anthropic_analyst(ant, fast_retry)],
                             ConsensusRules(2, 0.66, 0.6), deadline_seconds=10, store=store, mode="paper")
    result = await engine.decide(context(snapshot(trend="up")))

    assert result.proposal.action is Action.LONG and len(result.votes) == 2
    assert await pool.fetchval("SELECT count(*) FROM decisions WHERE id = $1", result.decision_id) == 1
    assert await pool.fetchval("SELECT count(*) FROM proposals WHERE decision_id = $1", result.decision_id) == 1
    rows = {r["voter"]: r for r in await store.votes_for(result.decision_id)}
    assert set(rows) == {"openai:gpt-4.1-mini", "anthropic:claude-haiku-4-5"}
    hostile = rows["openai:gpt-4.1-mini"]
    assert hostile["action"] == "LONG" and hostile["abstain_reason"] is None
    assert _clean(hostile["raw_reply"]) and hostile["raw_reply"].startswith("Here it is \ufffd: {")
    assert hostile["parsed_vote"]["reasoning"] == STORED
    assert hostile["parsed_vote"]["horizon"] == "4h\ufffd"
    assert hostile["tokens_in"] == 3_000 and hostile["tokens_out"] == 120
    assert rows["anthropic:claude-haiku-4-5"]["parsed_vote"]["reasoning"] == "tool call \ufffd"
    vote = next(v for v in result.votes if v.voter == "openai:gpt-4.1-mini")
    assert _clean(vote.reasoning)  # the vote handed on (engine, /status, `quorum decide`) is clean too


async def test_token_counts_beyond_32_bits_are_stored_wide_and_clamped(pool: asyncpg.Pool) -> None:
    snap = snapshot()
    store = DecisionRepository(pool)
    engine = ConsensusEngine([_Fixed()], ConsensusRules(1, 0.5, 0.5), store=store)
    result = await engine.decide(context(snap))
    row = (await store.votes_for(result.decision_id))[0]
    assert row["tokens_in"] == 3_000_000_000 and row["tokens_out"] == BIGINT_MAX
    assert await pool.fetchval("SELECT sum(tokens_in) FROM ai_cost_by_day") == 3_000_000_000


class _Fixed:
    """An analyst whose audit record carries counts beyond int32 (and beyond bigint)."""

    name = "big:counter"

    async def vote_with_record(self, ctx, snapshot_hash=None):  # type: ignore[no-untyped-def]
        from quorum.domain.models import Abstention

        a = Abstention(self.name, ctx.snapshot.symbol, "nothing to say")
        return a, CallRecord(voter=self.name, provider="big", model="counter", symbol=ctx.snapshot.symbol,
                             snapshot_hash=snapshot_hash or "", prompt_version="v", abstain_reason=a.reason,
                             tokens_in=3_000_000_000, tokens_out=10**30)

    async def vote(self, ctx):  # type: ignore[no-untyped-def]
        return (await self.vote_with_record(ctx))[0]
