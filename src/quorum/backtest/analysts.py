"""Non-rules analysts for the fast backtester: `replay` and `models`.

Both build the scanner's snapshot at every decision time (with market breadth over the
backtested symbols, as `ReplayMarketData` does) and turn it into a proposal BEFORE the event
loop runs, so the loop stays synchronous and fast:

- `replay`: the votes recorded in Postgres for that snapshot's hash (`model_votes`), merged with
  the same consensus rule; a snapshot with no recorded votes abstains (HOLD). Hashes match only
  for snapshots built from the same bars and universe as the recorded session (e.g. a paper
  session replayed from files).
- `models`: asks the configured consensus engine (real model calls — the CLI demands
  `--allow-model-calls`). The voters see the snapshot and a flat account at the initial equity.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import numpy as np

from quorum.backtest.inputs import SymbolInput
from quorum.domain.consensus import ConsensusRules, merge_votes
from quorum.domain.models import Action, Proposal, Snapshot, Vote
from quorum.market.snapshot import build_snapshots

ProposalTable = dict[str, dict[int, tuple[Proposal, tuple[str, ...]]]]  # symbol → row → (proposal, backers)


def _decision_times(inputs: list[SymbolInput]) -> dict[int, list[tuple[SymbolInput, int]]]:
    by_time: dict[int, list[tuple[SymbolInput, int]]] = {}
    for si in inputs:
        for row, t in enumerate(si.dec_time.tolist()):
            by_time.setdefault(int(t), []).append((si, row))
    return by_time


def snapshots_at(inputs: list[SymbolInput], t: int) -> dict[str, Snapshot]:
    builders = [si.builder for si in inputs if si.builder is not None]
    return build_snapshots(builders, t)


async def _each_decision(inputs: list[SymbolInput], progress: Callable[[int], None] | None
                         ) -> AsyncIterator[tuple[int, SymbolInput, int, Snapshot]]:
    """Every (time, symbol input, decision row, snapshot) in time order; `progress(t)` after
    each decision time. Symbols without a snapshot at a time are skipped."""
    for t, items in sorted(_decision_times(inputs).items()):
        snaps = snapshots_at(inputs, t)
        for si, row in items:
            snap = snaps.get(si.symbol)
            if snap is not None:
                yield t, si, row, snap
        if progress is not None:
            progress(t)


async def replay_table(inputs: list[SymbolInput], pool: Any, rules: ConsensusRules,
                       progress: Callable[[int], None] | None = None) -> tuple[ProposalTable, dict[str, int]]:
    """Proposals from recorded votes; returns (table, counts of hits / misses)."""
    from quorum.store.decisions import DecisionRepository

    repo = DecisionRepository(pool)
    known = await repo.recorded_snapshot_hashes()
    table: ProposalTable = {si.symbol: {} for si in inputs}
    counts = {"decisions": 0, "replayed": 0, "missing": 0}
    async for t, si, row, snap in _each_decision(inputs, progress):
        counts["decisions"] += 1
        h = snap.hash
        if h not in known:
            counts["missing"] += 1
            continue
        recorded = await repo.recorded_votes(h)
        votes = [v for v in recorded if isinstance(v, Vote)]
        counts["replayed"] += 1
        p = merge_votes(si.symbol, votes, len(recorded) - len(votes), rules, reference_price=snap.price,
                        snapshot_hash=h, time_ms=t)
        if p.action is not Action.HOLD:
            table[si.symbol][row] = (p, tuple(v.voter for v in votes if v.action is p.action))
    return table, counts


async def model_table(inputs: list[SymbolInput], consensus: Any, initial_equity: float,
                      progress: Callable[[int], None] | None = None) -> ProposalTable:
    """Proposals from the configured models (every decision time is a real call)."""
    from quorum.ai.context import AccountView, VoteContext

    table: ProposalTable = {si.symbol: {} for si in inputs}
    account = AccountView(initial_equity, initial_equity, 0.0, 0)
    async for _t, si, row, snap in _each_decision(inputs, progress):
        result = await consensus.decide(VoteContext(snap, account, ()), persist=False)
        p = result.proposal
        if p.action is not Action.HOLD:
            table[si.symbol][row] = (p, tuple(v.voter for v in result.votes if v.action is p.action))
    return table


def table_rows(table: ProposalTable) -> dict[str, np.ndarray]:
    return {sym: np.array(sorted(rows), dtype=np.int64) for sym, rows in table.items()}


def table_fn(table: ProposalTable) -> Callable[[SymbolInput, int, int], Proposal]:
    def fn(si: SymbolInput, row: int, t: int) -> Proposal:
        return table[si.symbol][row][0]

    return fn


def table_voters(table: ProposalTable) -> Callable[[str, int], tuple[str, ...]]:
    def fn(symbol: str, row: int) -> tuple[str, ...]:
        return table[symbol][row][1]

    return fn
