"""`--analyst replay`: recorded votes are found by snapshot hash and replayed; snapshots without a
recorded vote abstain (HOLD)."""

from __future__ import annotations

from pathlib import Path

import asyncpg

from quorum.ai.consensus import ConsensusEngine
from quorum.ai.context import VoteContext
from quorum.backtest.analysts import replay_table, snapshots_at
from quorum.backtest.request import BacktestRequest, load_market, parse_time
from quorum.backtest.runner import prepare_inputs, run_backtest
from quorum.config import load_settings
from quorum.domain.consensus import ConsensusRules
from quorum.domain.models import Abstention, Action, Vote
from quorum.store.decisions import DecisionRepository


class ScriptedModel:
    """A voter that goes LONG with an ATR stop on every snapshot it is shown (recorded by the
    consensus engine like a real model's answer)."""

    name = "scripted:long"
    kind = "model"

    async def vote(self, ctx: VoteContext) -> Vote | Abstention:
        s = ctx.snapshot
        view = s.timeframes[0]
        atr = view.atr or s.price * 0.01
        return Vote(self.name, s.symbol, Action.LONG, 0.8, stop_loss=s.price - 2 * atr,
                    take_profits=(s.price + 4 * atr,))


async def test_replay_uses_recorded_votes_and_abstains_when_missing(pool: asyncpg.Pool, shared_data: Path) -> None:
    settings = load_settings()
    start = parse_time("2025-09-01", "s")
    assert start is not None
    m = load_market(BacktestRequest(shared_data, ("BTCUSDT", "ETHUSDT"), start, start + 3 * 86_400_000,
                                    analyst="replay"))
    inputs = prepare_inputs(m, settings, keep_builders=True)
    engine = ConsensusEngine([ScriptedModel()], ConsensusRules(), store=DecisionRepository(pool), mode="paper")
    btc = next(si for si in inputs if si.symbol == "BTCUSDT")
    recorded_rows = [10, 40, 90]  # a paper session voted at these BTC decision times only
    for row in recorded_rows:
        t = int(btc.dec_time[row])
        snap = snapshots_at(inputs, t)["BTCUSDT"]
        await engine.decide(VoteContext(snap))

    table, counts = await replay_table(inputs, pool, ConsensusRules())
    assert sorted(table["BTCUSDT"]) == recorded_rows
    assert table["ETHUSDT"] == {}
    assert counts["replayed"] == 3 and counts["missing"] == counts["decisions"] - 3
    for row in recorded_rows:
        p, backers = table["BTCUSDT"][row]
        assert p.action is Action.LONG and p.valid_votes == 1 and backers == ("scripted:long",)

    res = run_backtest(m, settings, inputs=inputs, proposals=table, analyst="replay",
                       analyst_info={"kind": "replay", **counts})
    assert res.summary["analyst"] == "replay"
    opened = [d for d in res.run.decisions if d.get("outcome") == "opened"]
    assert 1 <= len(opened) <= 3
    assert res.run.trades and all(t.voters == ("scripted:long",) for t in res.run.trades)
    assert all(d["symbol"] == "BTCUSDT" and d["time_ms"] in {int(btc.dec_time[r]) for r in recorded_rows}
               for d in opened)
