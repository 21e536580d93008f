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

import asyncpg
import numpy as np

from quorum.backtest.inputs import SymbolInput
from quorum.backtest.request import BacktestInputError
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
                       progress: Callable[[int], None] | None = None) -> tuple[ProposalTable, dict[str, Any]]:
    """Proposals from recorded votes; returns (table, counts of hits / misses, and under
    `contaminated` the labels the replayed votes were recorded with)."""
    from quorum.store.decisions import DecisionRepository

    repo = DecisionRepository(pool)
    try:
        known = await repo.recorded_snapshot_hashes()
    except asyncpg.UndefinedTableError:  # a database never migrated holds no votes either
        known = set()
    table: ProposalTable = {si.symbol: {} for si in inputs}
    counts: dict[str, Any] = {"decisions": 0, "replayed": 0, "missing": 0}
    labels: set[str] = set()
    async for t, si, row, snap in _each_decision(inputs, progress):
        counts["decisions"] += 1
        h = snap.hash
        if h not in known:
            counts["missing"] += 1
            continue
        recorded, voter_labels = await repo.recorded_votes_labelled(h)
        labels.update(voter_labels.values())
        votes = [v for v in recorded if isinstance(v, Vote)]
        counts["replayed"] += 1
        p = merge_votes(si.symbol, votes, len(recorded) - len(votes), rules, reference_price=snap.price,
                        snapshot_hash=h, time_ms=t)
        if p.action is not Action.HOLD:
            table[si.symbol][row] = (p, tuple(v.voter for v in votes if v.action is p.action))
    if labels:
        counts["contaminated"] = sorted(labels)
    if counts["decisions"] and not counts["replayed"]:
        raise NoRecordedVotes(_no_votes_message(inputs, len(known)))
    return table, counts


class NoRecordedVotes(BacktestInputError):
    """`--analyst replay` found no recorded vote for any decision of the backtest (bad input: exit 2)."""


def _no_votes_message(inputs: list[SymbolInput], recorded: int) -> str:
    from datetime import UTC, datetime

    def utc(ms: int) -> str:
        return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%d %H:%M")

    times = [int(t) for si in inputs for t in si.dec_time.tolist()]
    return (f"--analyst replay: no recorded votes for {','.join(si.symbol for si in inputs)} between "
            f"{utc(min(times))} and {utc(max(times))} UTC in the database of DATABASE_URL ({recorded} snapshots "
            "hold votes, none of this backtest's); record them first with `quorum run` or `quorum demo` (or "
            "`quorum decide SYMBOL --record`) on the same data, symbols and timeframes, or use --analyst rules")


async def model_table(inputs: list[SymbolInput], consensus: Any, initial_equity: float,
                      progress: Callable[[int], None] | None = None, *, content_hash: bool = True) -> ProposalTable:
    """Proposals from the configured voters (for models every decision time is a real call).
    `content_hash=False`: voters that keep no cache (the user's own analysts, the rules analyst)
    are not worth hashing every snapshot for (it costs more than their vote): the decision is
    keyed by symbol and time instead."""
    from quorum.ai.context import AccountView, VoteContext

    table: ProposalTable = {si.symbol: {} for si in inputs}
    account = AccountView(initial_equity, initial_equity, 0.0, 0)
    async for t, si, row, snap in _each_decision(inputs, progress):
        key = None if content_hash else f"backtest:{si.symbol}:{t}"
        result = await consensus.decide(VoteContext(snap, account, ()), persist=False, snapshot_hash=key)
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
