"""A failed audit write never loses the votes or the decision. Faults are injected in the real
Postgres (triggers that raise, as a full disk or an unforeseen limit would); the voters answer over
the wire from the fake providers, through the real consensus path."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import asyncpg
import pytest

from quorum.ai.analysts import RulesAnalyst
from quorum.ai.consensus import ConsensusEngine
from quorum.ai.retry import RetryPolicy
from quorum.domain.consensus import ConsensusRules
from quorum.domain.models import Action
from quorum.store.decisions import DecisionRepository
from tests.fakes.anthropic_server import FakeAnthropicServer
from tests.fakes.openai_server import FakeOpenAIServer, Reply
from tests.integration.ai.conftest import anthropic_analyst, openai_analyst
from tests.unit.ai.factory import context, snapshot, vote_json


@pytest.fixture
async def fault(pool: asyncpg.Pool) -> AsyncIterator[object]:
    """`await fault(table, condition)`: every insert into `table` whose row matches `condition`
    (SQL over NEW and the sequence `fault_n`) raises; removed after the test."""
    made: list[str] = []

    async def inject(table: str, condition: str) -> None:
        name = f"inject_fault_{table}"
        await pool.execute(f"""
            CREATE SEQUENCE IF NOT EXISTS fault_n;
            CREATE OR REPLACE FUNCTION {name}() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN IF {condition} THEN RAISE EXCEPTION 'injected fault: could not extend file'; END IF;
                  RETURN NEW; END $$;
            CREATE TRIGGER {name} BEFORE INSERT ON {table} FOR EACH ROW EXECUTE FUNCTION {name}();""")
        made.append(table)

    yield inject
    for table in made:
        await pool.execute(f"DROP TRIGGER IF EXISTS inject_fault_{table} ON {table}; "
                           f"DROP FUNCTION IF EXISTS inject_fault_{table}()")
    await pool.execute("DROP SEQUENCE IF EXISTS fault_n")


def _engine(pool: asyncpg.Pool, oai: FakeOpenAIServer, ant: FakeAnthropicServer, retry: RetryPolicy
            ) -> ConsensusEngine:
    return ConsensusEngine([RulesAnalyst(), openai_analyst(oai, retry), anthropic_analyst(ant, retry)],
                           ConsensusRules(2, 0.66, 0.6), deadline_seconds=10, store=DecisionRepository(pool),
                           mode="paper")


async def test_a_transient_write_failure_is_retried(pool: asyncpg.Pool, oai: FakeOpenAIServer,
                                                    ant: FakeAnthropicServer, fast_retry: RetryPolicy,
                                                    fault: object) -> None:
    oai.default = Reply(text=vote_json("LONG", 0.8))
    ant.default = Reply(tool_input=json.loads(vote_json("LONG", 0.7)))
    await fault("model_votes", "nextval('fault_n') <= 2")  # type: ignore[operator]  # two attempts fail
    result = await _engine(pool, oai, ant, fast_retry).decide(context(snapshot(trend="up")))
    assert result.proposal.action is Action.LONG
    assert await pool.fetchval("SELECT count(*) FROM model_votes WHERE decision_id = $1", result.decision_id) == 3
    assert await pool.fetchval("SELECT count(*) FROM proposals WHERE decision_id = $1", result.decision_id) == 1
    assert await pool.fetchval("SELECT count(*) FROM model_votes WHERE raw_reply IS NULL AND provider <> 'rules'") == 0
    assert await pool.fetchval("SELECT count(*) FROM alerts") == 0


async def test_a_vote_row_that_cannot_be_written_is_salvaged_recorded_and_alerted(
        pool: asyncpg.Pool, oai: FakeOpenAIServer, ant: FakeAnthropicServer, fast_retry: RetryPolicy,
        fault: object) -> None:
    oai.default = Reply(text=vote_json("LONG", 0.8, reasoning="POISON breakout"))
    ant.default = Reply(tool_input=json.loads(vote_json("LONG", 0.7)))
    await fault("model_votes", "NEW.raw_reply LIKE '%POISON%'")  # type: ignore[operator]  # every attempt fails
    result = await _engine(pool, oai, ant, fast_retry).decide(context(snapshot(trend="up")))

    # the decision proceeds with every vote, the poisoned one included
    assert result.proposal.action is Action.LONG and len(result.votes) == 3
    did = result.decision_id
    assert await pool.fetchval("SELECT action FROM decisions WHERE id = $1", did) == "LONG"
    prop = await pool.fetchrow("SELECT * FROM proposals WHERE decision_id = $1", did)
    assert prop is not None and prop["valid_votes"] == 3
    rows = {r["voter"]: r for r in await pool.fetch("SELECT * FROM model_votes WHERE decision_id = $1", did)}
    assert set(rows) == {"rules", "openai:gpt-4.1-mini", "anthropic:claude-haiku-4-5"}
    assert rows["anthropic:claude-haiku-4-5"]["raw_reply"] is not None  # kept in full
    poisoned = rows["openai:gpt-4.1-mini"]  # kept in a minimal form: who, what, cost; not the text
    assert poisoned["action"] == "LONG" and float(poisoned["confidence"]) == 0.8 and poisoned["raw_reply"] is None
    assert poisoned["error"].startswith("audit: full row not stored") and "injected fault" in poisoned["error"]
    # the failure is recorded with the whole decision, and alerted
    audit = await pool.fetch("SELECT * FROM audit_errors")
    assert len(audit) == 1 and audit[0]["decision_id"] == did and audit[0]["attempts"] == 3
    assert "injected fault" in audit[0]["error"]
    assert audit[0]["salvaged"]["votes_minimal"] == ["openai:gpt-4.1-mini"]
    kept = {v["voter"]: v for v in audit[0]["payload"]["votes"]}
    assert "POISON breakout" in kept["openai:gpt-4.1-mini"]["raw_reply"]
    alerts = await pool.fetch("SELECT * FROM alerts")
    assert len(alerts) == 1 and alerts[0]["kind"] == "audit_write_failed" and alerts[0]["severity"] == "warning"
    assert alerts[0]["details"]["decision_id"] == did and did in alerts[0]["message"]


async def test_a_decision_row_that_cannot_be_written_keeps_every_vote_in_the_audit_error(
        pool: asyncpg.Pool, oai: FakeOpenAIServer, ant: FakeAnthropicServer, fast_retry: RetryPolicy,
        fault: object) -> None:
    oai.default = Reply(text=vote_json("LONG", 0.8))
    ant.default = Reply(tool_input=json.loads(vote_json("SHORT", 0.7)))
    await fault("decisions", "true")  # type: ignore[operator]
    result = await _engine(pool, oai, ant, fast_retry).decide(context(snapshot(trend="up")))
    assert len(result.votes) == 3  # returned all the same
    assert await pool.fetchval("SELECT count(*) FROM decisions") == 0
    audit = await pool.fetchrow("SELECT * FROM audit_errors")
    assert audit is not None and audit["decision_id"] == result.decision_id and audit["salvaged"]["decision"] is False
    kept = {v["voter"]: v["action"] for v in audit["payload"]["votes"]}
    assert kept == {"rules": result.votes[0].action.value, "openai:gpt-4.1-mini": "LONG",
                    "anthropic:claude-haiku-4-5": "SHORT"}
    assert await pool.fetchval("SELECT count(*) FROM alerts WHERE kind = 'audit_write_failed'") == 1
