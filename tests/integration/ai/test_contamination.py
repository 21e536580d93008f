"""A model asked about a period its training data covers is refused, or — with
`--allow-contaminated` — every output says so: `decide --at`, `backtest --analyst models`, the
recorded votes, and a later `--analyst replay` of those votes. Through the real CLI."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path

import asyncpg

from quorum.ai.consensus import ConsensusEngine
from quorum.ai.context import VoteContext
from quorum.backtest.analysts import snapshots_at
from quorum.backtest.request import BacktestRequest, load_market, parse_time
from quorum.backtest.runner import prepare_inputs
from quorum.config import load_settings
from quorum.domain.consensus import ConsensusRules
from quorum.domain.models import Abstention, Action, Vote
from quorum.store.decisions import DecisionRepository
from tests.fakes.openai_server import FakeOpenAIServer, Reply
from tests.integration.ai.conftest import SMALL_ROWS as ROWS
from tests.unit.ai.factory import vote_json

LABEL = "contaminated: scripted:long knew this period (training cutoff unknown)"



def _env(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.endswith(("_API_KEY", "_KNOWLEDGE_CUTOFF"))
           and k not in ("MODELS", "REDIS_URL", "DATABASE_URL")}
    return {**env, "VAR_DIR": str(tmp_path / "var"), "LOG_FORMAT": "json", **extra}


async def _quorum(tmp_path: Path, env: dict[str, str], *args: str) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(sys.executable, "-m", "quorum", *args, cwd=tmp_path, env=env,
                                                stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), 240)
    assert proc.returncode is not None
    return proc.returncode, out.decode(errors="replace"), err.decode(errors="replace")


def _one_line_refusal(code: int, err: str, *names: str) -> None:
    assert code == 2, err[-2000:]
    assert "Traceback" not in err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1, lines
    for name in names:
        assert name in lines[0], (name, lines[0])


async def test_decide_at_a_time_a_model_knew_is_refused_in_one_line(small_data: Path, tmp_path: Path) -> None:
    at = str(1735603200000 + (ROWS - 10) * 300_000)  # 2025-01-13: claude-haiku-4-5's data runs to 2025-07-31
    env = _env(tmp_path, MODELS="anthropic:claude-haiku-4-5", ANTHROPIC_API_KEY="sk-ant-x")
    code, _, err = await _quorum(tmp_path, env, "decide", "BTCUSDT", "--data", str(small_data), "--at", at)
    _one_line_refusal(code, err, "anthropic:claude-haiku-4-5", "2025-07-31", "--allow-contaminated")
    # the provider's own cutoff setting is believed: then the time is clean and the model is asked
    # (here it cannot be reached: an abstention, not a refusal)
    env.update(ANTHROPIC_KNOWLEDGE_CUTOFF="2024-06", ANTHROPIC_BASE_URL="http://127.0.0.1:9", RULES_VOTER="always",
               ANTHROPIC_MAX_RETRIES="0")
    code, out, err = await _quorum(tmp_path, env, "decide", "BTCUSDT", "--data", str(small_data), "--at", at,
                                   "--json")
    assert code == 0, err[-2000:]
    report = json.loads(out)
    assert report["contaminated"] == []
    assert {v["voter"] for v in report["voters"]} == {"rules", "anthropic:claude-haiku-4-5"}


async def test_models_backtest_refused_then_labelled_everywhere(shared_data: Path, tmp_path: Path,
                                                                pg_url: str) -> None:
    args = ["backtest", "--data", str(shared_data), "--symbols", "BTCUSDT", "--start", "2025-09-03",
            "--end", "2025-09-03T12:00", "--analyst", "models", "--allow-model-calls", "--quiet",
            "--out", str(tmp_path / "out")]

    def answer(body: dict[str, object]) -> Reply:
        text = json.dumps(body["messages"])
        return Reply(text=vote_json("LONG", 0.8, price=float(text.split("Current price: ")[1].split("\\n")[0])))

    async with FakeOpenAIServer() as oai:
        oai.default = answer  # type: ignore[attr-defined]
        env = _env(tmp_path, MODELS="openai:house-model", OPENAI_API_KEY="sk-test", MIN_VOTERS="1",
                   OPENAI_BASE_URL=oai.base_url, DATABASE_URL=pg_url)  # type: ignore[attr-defined]
        code, _, err = await _quorum(tmp_path, env, *args)
        _one_line_refusal(code, err, "openai:house-model", "training cutoff is unknown", "OPENAI_KNOWLEDGE_CUTOFF",
                          "--allow-contaminated")
        assert oai.requests == []  # type: ignore[attr-defined]  # refused before any paid call
        code, out, err = await _quorum(tmp_path, env, *args, "--allow-contaminated")
        assert oai.requests  # type: ignore[attr-defined]
    assert code == 0, err[-2000:]
    label = "contaminated: openai:house-model knew this period (training cutoff unknown)"
    assert len(out.splitlines()) == 1, out  # logs go to stderr: stdout is the summary line
    assert out.startswith(label.replace("contaminated", "CONTAMINATED")), out
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert next(iter(summary)) == "contaminated" and summary["contaminated"] == [label]
    assert label in (tmp_path / "out" / "report.html").read_text()


class ScriptedModel:
    """A model voter that goes LONG with an ATR stop on every snapshot it is shown."""

    name = "scripted:long"
    kind = "model"

    async def vote(self, ctx: VoteContext) -> Vote | Abstention:
        s = ctx.snapshot
        atr = s.timeframes[0].atr or s.price * 0.01
        return Vote(self.name, s.symbol, Action.LONG, 0.8, stop_loss=s.price - 2 * atr,
                    take_profits=(s.price + 4 * atr,))


async def test_votes_recorded_as_contaminated_keep_the_label_in_a_replay(pool: asyncpg.Pool, pg_url: str,
                                                                         shared_data: Path, tmp_path: Path) -> None:
    settings = load_settings()
    start = parse_time("2025-09-01", "s")
    assert start is not None
    m = load_market(BacktestRequest(shared_data, ("BTCUSDT",), start, start + 2 * 86_400_000, analyst="replay"))
    inputs = prepare_inputs(m, settings, keep_builders=True)
    engine = ConsensusEngine([ScriptedModel()], ConsensusRules(), store=DecisionRepository(pool), mode="paper")
    engine.contamination = {"scripted:long": LABEL}  # what `decide --at … --allow-contaminated` sets
    for row in (10, 40):
        await engine.decide(VoteContext(snapshots_at(inputs, int(inputs[0].dec_time[row]))["BTCUSDT"]))
    stored = await pool.fetch("SELECT voter, contaminated FROM model_votes")
    assert {(r["voter"], r["contaminated"]) for r in stored} == {("scripted:long", LABEL)}

    code, out, err = await _quorum(tmp_path, _env(tmp_path, DATABASE_URL=pg_url), "backtest", "--data",
                                   str(shared_data), "--symbols", "BTCUSDT", "--start", "2025-09-01", "--end",
                                   "2025-09-03", "--analyst", "replay", "--quiet", "--out", str(tmp_path / "r"))
    assert code == 0, err[-2000:]
    summary = json.loads((tmp_path / "r" / "summary.json").read_text())
    assert summary["analyst_info"]["replayed"] == 2
    assert summary["contaminated"] == [LABEL]
    assert out.splitlines()[-1].startswith(LABEL.replace("contaminated", "CONTAMINATED"))


async def test_demo_with_a_model_that_knew_the_bundled_period_is_refused(shared_data: Path, tmp_path: Path) -> None:
    env = _env(tmp_path, MODELS="anthropic:claude-sonnet-4-5", ANTHROPIC_API_KEY="sk-ant-x")
    code, _, err = await _quorum(tmp_path, env, "demo", "--data", str(shared_data), "--days", "1")
    _one_line_refusal(code, err, "anthropic:claude-sonnet-4-5", "2025-07-31", "--allow-contaminated")
