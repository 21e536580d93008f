"""`quorum decide` end to end on replay files: zero keys (rules only), and with a model voter
served by the fake OpenAI server, recording to Postgres."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from quorum.commands.decide import parse_time, run_decide
from quorum.config import load_settings
from tests.fakes.openai_server import FakeOpenAIServer, Reply
from tests.integration.ai.conftest import SMALL_ROWS as ROWS
from tests.unit.ai.factory import vote_json


def test_parse_time() -> None:
    assert parse_time("1735603200000") == 1735603200000
    assert parse_time("2024-12-31") == 1735603200000
    assert parse_time("2024-12-31T01:00+01:00") == 1735603200000


async def test_decide_with_zero_keys_uses_the_rules_analyst(small_data: Path, tmp_cwd: Path,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MODELS", raising=False)
    settings = load_settings()
    report = await run_decide(settings, "BTCUSDT", None, small_data, record=False)
    assert [v["voter"] for v in report["voters"]] == ["rules"]
    assert report["consensus"]["action"] in ("LONG", "SHORT", "HOLD")
    assert report["snapshot"]["time_ms"] % (15 * 60_000) == 0
    assert set(report["snapshot"]["timeframes"]) == {"15m", "1h", "4h"}
    json.dumps(report, default=str)


async def test_decide_with_a_model_voter_records_to_postgres(small_data: Path, tmp_cwd: Path, pool: object,
                                                             pg_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    async with FakeOpenAIServer() as oai:
        monkeypatch.setenv("OPENAI_API_KEY", "sk-cli")
        monkeypatch.setenv("OPENAI_BASE_URL", oai.base_url)  # type: ignore[attr-defined]
        settings = load_settings(models="openai:gpt-4.1-mini", database_url=pg_url, rules_voter="always",
                                 min_voters=1)
        at = 1735603200000 + (ROWS - 10) * 300_000
        # the model answers relative to the price it is shown
        price_holder: dict[str, float] = {}

        def answer(body: dict[str, object]) -> Reply:
            text = json.dumps(body["messages"])
            price = float(text.split("Current price: ")[1].split("\\n")[0])
            price_holder["p"] = price
            return Reply(text=vote_json("HOLD", 0.5, price=price))

        oai.default = answer  # type: ignore[attr-defined]
        report = await run_decide(settings, "BTCUSDT", at, small_data, record=True)
    voters = {v["voter"]: v for v in report["voters"]}
    assert set(voters) == {"rules", "openai:gpt-4.1-mini"}
    assert voters["openai:gpt-4.1-mini"]["vote"]["action"] == "HOLD"
    assert price_holder["p"] == pytest.approx(report["snapshot"]["price"])
    n = await pool.fetchval("SELECT count(*) FROM model_votes WHERE snapshot_hash = $1",  # type: ignore[attr-defined]
                            report["snapshot"]["hash"])
    assert n == 2
    assert await pool.fetchval("SELECT count(*) FROM decisions") == 1  # type: ignore[attr-defined]


async def test_the_decide_process_records_every_vote_whatever_the_replies(
        small_data: Path, tmp_path: Path, pool: object, pg_url: str) -> None:
    """`quorum decide --record --json` as the real process, against three fake providers that
    send what used to break a decision: unstorable text and a trillion-token usage (OpenAI),
    two contradictory tool calls (Anthropic), a reply stopped by the content filter (DeepSeek)."""
    import asyncio
    import os
    import subprocess
    import sys

    from tests.fakes.anthropic_server import FakeAnthropicServer

    def priced(body: dict[str, object]) -> float:
        return float(json.dumps(body["messages"]).split("Current price: ")[1].split("\\n")[0])

    def gpt(body: dict[str, object]) -> Reply:
        return Reply(text="\x00\ud800" + vote_json("HOLD", 0.6, price=priced(body), reasoning="flat\x00 \udfff\x07"),
                     tokens_out=10**12)

    def claude(body: dict[str, object]) -> Reply:
        p = priced(body)
        return Reply(tool_input=json.loads(vote_json("LONG", 0.9, price=p)),
                     tool_calls=[json.loads(vote_json("SHORT", 0.9, price=p))])

    async with FakeOpenAIServer(gpt) as oai, FakeAnthropicServer(claude) as ant, \
            FakeOpenAIServer(Reply(text=vote_json("HOLD", 0.5), finish_reason="content_filter")) as ds:
        env = {**os.environ, "DATABASE_URL": pg_url, "MODELS": "openai:gpt-4.1-mini,anthropic:claude-haiku-4-5,"
               "deepseek:deepseek-chat", "OPENAI_API_KEY": "sk-cli", "OPENAI_BASE_URL": oai.base_url,
               "ANTHROPIC_API_KEY": "sk-ant-cli", "ANTHROPIC_BASE_URL": ant.base_url,  # type: ignore[attr-defined]
               "DEEPSEEK_API_KEY": "sk-ds-cli", "DEEPSEEK_BASE_URL": ds.base_url,  # type: ignore[attr-defined]
               "RULES_VOTER": "always", "MIN_VOTERS": "1", "LOG_FORMAT": "json", "VAR_DIR": str(tmp_path / "var")}
        env.pop("REDIS_URL", None)
        at = str(1735603200000 + (ROWS - 10) * 300_000)
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "quorum", "decide", "BTCUSDT", "--data", str(small_data), "--at", at,
            "--record", "--json", "--allow-contaminated", cwd=tmp_path, env=env, stdout=subprocess.PIPE,
            stderr=subprocess.PIPE)
        out, err = await asyncio.wait_for(proc.communicate(), 120)
    assert proc.returncode == 0, err.decode(errors="replace")[-3000:]
    assert b"Traceback" not in err
    report = json.loads(out)
    voters = {v["voter"]: v for v in report["voters"]}
    assert voters["openai:gpt-4.1-mini"]["vote"]["action"] == "HOLD"
    assert voters["openai:gpt-4.1-mini"]["vote"]["reasoning"] == "flat \ufffd"
    assert voters["openai:gpt-4.1-mini"]["tokens_out"] == 800 and voters["openai:gpt-4.1-mini"]["usage_anomaly"]
    assert voters["anthropic:claude-haiku-4-5"]["abstained"].startswith("ambiguous: 2 tool calls")
    assert voters["deepseek:deepseek-chat"]["abstained"].startswith("refused: stopped by the content filter")
    # everything is in Postgres: the decision, its proposal and one row per voter
    did = report["consensus"]["decision_id"]
    assert await pool.fetchval("SELECT count(*) FROM decisions WHERE id = $1", did) == 1  # type: ignore[attr-defined]
    rows = {r["voter"]: r for r in await pool.fetch(  # type: ignore[attr-defined]
        "SELECT * FROM model_votes WHERE decision_id = $1", did)}
    assert set(rows) == {"rules", "openai:gpt-4.1-mini", "anthropic:claude-haiku-4-5", "deepseek:deepseek-chat"}
    gpt_row = rows["openai:gpt-4.1-mini"]
    assert gpt_row["tokens_out"] == 800 and "1000000000000" in gpt_row["usage_anomaly"]
    assert "\x00" not in gpt_row["raw_reply"] and gpt_row["parsed_vote"]["reasoning"] == "flat \ufffd"
    assert await pool.fetchval("SELECT count(*) FROM audit_errors") == 0  # type: ignore[attr-defined]
    # 2025-01-13 is after gpt-4.1-mini's training data (2024-06-30), not claude-haiku-4-5's (2025-07-31);
    # deepseek-chat's cutoff is unknown: their votes carry the label (and the report says so first)
    labelled = {v: r["contaminated"] for v, r in rows.items() if r["contaminated"]}
    assert labelled == {
        "anthropic:claude-haiku-4-5": "contaminated: anthropic:claude-haiku-4-5 knew this period "
                                      "(training data to 2025-07-31)",
        "deepseek:deepseek-chat": "contaminated: deepseek:deepseek-chat knew this period (training cutoff unknown)"}
    assert sorted(report["contaminated"]) == sorted(labelled.values())
