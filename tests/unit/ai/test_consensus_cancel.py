"""A decision cancelled from outside (the service stopping mid-cycle) cancels its voters' calls:
no model request outlives the decision that asked for it."""

from __future__ import annotations

import asyncio

import pytest

from quorum.ai.consensus import ConsensusEngine
from quorum.ai.context import VoteContext
from quorum.domain.consensus import ConsensusRules
from quorum.domain.models import Abstention, Vote
from tests.unit.ai.factory import context


class Slow:
    """A voter that takes an hour and records how its call ended."""

    kind = "model"

    def __init__(self, name: str) -> None:
        self.name = name
        self.started = asyncio.Event()
        self.outcome: str | None = None

    async def vote(self, ctx: VoteContext) -> Vote | Abstention:
        self.started.set()
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            self.outcome = "cancelled"
            raise
        self.outcome = "finished"
        return Abstention(self.name, ctx.snapshot.symbol, "slow")


async def test_cancelling_a_decision_cancels_every_voter_call() -> None:
    voters = [Slow("a"), Slow("b")]
    engine = ConsensusEngine(voters, ConsensusRules(1, 0.5, 0.5), deadline_seconds=7200)
    decision = asyncio.create_task(engine.decide(context(), persist=False))
    await asyncio.wait_for(asyncio.gather(*(v.started.wait() for v in voters)), 5)
    decision.cancel()
    with pytest.raises(asyncio.CancelledError):
        await decision
    assert [v.outcome for v in voters] == ["cancelled", "cancelled"]
