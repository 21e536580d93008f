"""`--analyst models`: every decision time is a real model call (here the fake OpenAI server);
the report says the models produced it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from quorum.ai import build_consensus
from quorum.backtest.analysts import model_table
from quorum.backtest.request import BacktestRequest, load_market, parse_time
from quorum.backtest.runner import prepare_inputs, run_backtest
from quorum.config import load_settings
from tests.fakes.openai_server import FakeOpenAIServer, Reply
from tests.unit.ai.factory import vote_json


async def test_models_analyst_calls_the_model_at_every_decision(shared_data: Path, tmp_cwd: Path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    start = parse_time("2025-09-03", "s")
    assert start is not None
    m = load_market(BacktestRequest(shared_data, ("BTCUSDT",), start, start + 12 * 3_600_000, analyst="models",
                                    allow_model_calls=True))
    async with FakeOpenAIServer() as oai:
        monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
        monkeypatch.setenv("OPENAI_BASE_URL", oai.base_url)  # type: ignore[attr-defined]
        settings = load_settings(models="openai:gpt-4.1-mini", min_voters=1)

        def answer(body: dict[str, object]) -> Reply:
            text = json.dumps(body["messages"])
            price = float(text.split("Current price: ")[1].split("\\n")[0])
            return Reply(text=vote_json("LONG", 0.8, price=price))

        oai.default = answer  # type: ignore[attr-defined]
        inputs = prepare_inputs(m, settings, keep_builders=True)
        consensus = await build_consensus(settings)
        assert [a.name for a in consensus.analysts] == ["openai:gpt-4.1-mini"]
        table = await model_table(inputs, consensus, 1000.0)
        calls = len(oai.requests)  # type: ignore[attr-defined]
    decisions = len(inputs[0].dec_time)
    assert calls == decisions  # one model call per decision time, no more
    assert len(table["BTCUSDT"]) == decisions  # every answer was a LONG
    res = run_backtest(m, settings, inputs=inputs, proposals=table, analyst="models",
                       analyst_info={"kind": "models", "voters": ["openai:gpt-4.1-mini"]})
    assert res.summary["analyst"] == "models"
    assert res.summary["trades"] >= 1
    assert all(t.side.value == "long" and t.voters == ("openai:gpt-4.1-mini",) for t in res.run.trades)
