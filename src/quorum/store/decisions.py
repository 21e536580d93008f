"""Decisions, every voter's call (model_votes), proposals and AI budget events.

One transaction per decision: the snapshot row (if not stored yet), the decision, one
`model_votes` row per voter (prompt version, raw reply, parsed vote or abstention reason,
latency, tokens, cost, error, cached) and the proposal; every value made storable first
(`quorum.store.text`), a failed write retried and then salvaged (`quorum.store.audit`).
`recorded_votes(snapshot_hash)` gives the backtester's replay analyst what the voters said
about exactly that snapshot.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from datetime import date
from typing import Any, Protocol

import asyncpg
import structlog

from quorum.domain.consensus import Outcome, outcome_of
from quorum.domain.models import Abstention, Proposal, Snapshot, Vote
from quorum.domain.votes import CallRecord, vote_from_dict
from quorum.store.audit import (
    AUDIT_ATTEMPTS,
    AUDIT_RETRY_WAIT_S,
    DECISION_COLUMNS,
    DECISION_SQL,
    DECISIONS_BATCH_SQL,
    PROPOSAL_COLUMNS,
    PROPOSAL_SQL,
    SNAPSHOT_COLUMNS,
    SNAPSHOT_SQL,
    VOTE_COLUMNS,
    VOTE_SQL,
    DecisionRows,
    json_row,
    salvage,
    snapshot_row,
)
from quorum.store.db import database_answers
from quorum.store.text import storable_text

log = structlog.get_logger(__name__)


class Question(Protocol):
    """What the store needs of the question put to the voters (`quorum.ai.context.VoteContext`)."""

    @property
    def snapshot(self) -> Snapshot: ...


class DecisionRepository:
    def __init__(self, pool: asyncpg.Pool, *, sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep) -> None:
        self._pool = pool
        self._sleep = sleep

    async def save_snapshot(self, snapshot: Snapshot, conn: asyncpg.Connection | None = None,
                            snapshot_hash: str | None = None) -> str:
        """Insert the snapshot row unless present; returns its hash."""
        h = snapshot_hash or snapshot.hash
        await (conn or self._pool).execute(SNAPSHOT_SQL, *snapshot_row(snapshot, h))
        return h

    async def record_decision(self, *, decision_id: str, mode: str, analyst: str, ctx: Question,
                              proposal: Proposal, records: Sequence[CallRecord], snapshot_hash: str) -> int | None:
        """Write decision + votes + proposal atomically; returns the proposal id.

        A failed write is retried (`AUDIT_ATTEMPTS` in all). When every attempt failed, the rows
        are saved one by one (a row that still fails is kept in a minimal form), the failure is
        recorded in `audit_errors` with the whole decision as JSON and a warning alert is raised;
        the proposal id (None if not written) is returned, so the decision goes on. Raises only
        when nothing at all can be written (the database is gone)."""
        decision = DecisionRows(decision_id, mode, analyst, ctx.snapshot, proposal, tuple(records), snapshot_hash)
        error: Exception | None = None
        for attempt in range(AUDIT_ATTEMPTS):
            if attempt:
                await self._sleep(AUDIT_RETRY_WAIT_S * 2 ** (attempt - 1))
                try:  # a lost reply to a COMMIT that did happen: the decision is already there
                    pid = await self._pool.fetchval("SELECT id FROM proposals WHERE decision_id = $1", decision_id)
                    if pid is not None:
                        return int(pid)
                except Exception:  # the write below reports the real problem
                    pass
            try:
                return await self._write(decision)
            except Exception as exc:  # any failure: retry, then salvage
                error = exc
                log.warning("store.decision_write_failed", decision_id=decision_id, attempt=attempt + 1,
                            error=f"{type(exc).__name__}: {storable_text(str(exc))}"[:500])
        assert error is not None
        if not await database_answers(self._pool):  # the database gone, not one bad row: the caller's
            raise error from None  # outage handling, nothing to salvage
        return await salvage(self._pool, decision, error, AUDIT_ATTEMPTS)

    async def record_decisions(self, items: Sequence[dict[str, Any]]) -> None:
        """Write many decisions (each `record_decision`'s keyword arguments) in one statement —
        a decision cycle's, one round trip whatever the number of symbols. When that fails, each
        is written on its own (`record_decision`: retried, then salvaged)."""
        rows = [DecisionRows(i["decision_id"], i["mode"], i["analyst"], i["ctx"].snapshot, i["proposal"],
                             tuple(i["records"]), i["snapshot_hash"]) for i in items]
        snaps = {d.snapshot_hash: d.snapshot for d in rows}
        try:
            await self._pool.execute(
                DECISIONS_BATCH_SQL,
                [json_row(SNAPSHOT_COLUMNS, snapshot_row(snap, h)) for h, snap in snaps.items()],
                [json_row(DECISION_COLUMNS, d.decision_row()) for d in rows],
                [json_row(VOTE_COLUMNS, d.vote_row(r)) for d in rows for r in d.records],
                [json_row(PROPOSAL_COLUMNS, d.proposal_row()) for d in rows])
            return
        except Exception as exc:
            log.warning("store.decision_batch_failed", decisions=len(rows),
                        error=f"{type(exc).__name__}: {storable_text(str(exc))}"[:500])
        for item in items:
            await self.record_decision(**item)

    async def _write(self, d: DecisionRows) -> int:
        async with self._pool.acquire() as conn, conn.transaction():
            await self.save_snapshot(d.snapshot, conn, d.snapshot_hash)
            await conn.execute(DECISION_SQL, *d.decision_row())
            await conn.executemany(VOTE_SQL, [d.vote_row(r) for r in d.records])
            pid: int = await conn.fetchval(PROPOSAL_SQL, *d.proposal_row())
        return pid

    async def recorded_votes(self, snapshot_hash: str) -> list[Vote | Abstention]:
        """The latest recorded answer of each voter for this snapshot (for replay)."""
        return (await self.recorded_votes_labelled(snapshot_hash))[0]

    async def recorded_votes_labelled(self, snapshot_hash: str
                                      ) -> tuple[list[Vote | Abstention], dict[str, str]]:
        """`recorded_votes`, and voter → the contamination label its answer was recorded with
        (`--allow-contaminated`): a replay carries the label on."""
        rows = await self._pool.fetch(
            """SELECT DISTINCT ON (voter) voter, symbol, parsed_vote, abstain_reason, contaminated
               FROM model_votes WHERE snapshot_hash = $1 ORDER BY voter, id DESC""",
            snapshot_hash,
        )
        out: list[Vote | Abstention] = []
        labels: dict[str, str] = {}
        for r in rows:
            parsed = r["parsed_vote"]
            if r["abstain_reason"] is None and isinstance(parsed, dict) and "action" in parsed:
                out.append(vote_from_dict({**parsed, "voter": r["voter"], "symbol": r["symbol"]}))
            else:
                out.append(Abstention(r["voter"], r["symbol"], r["abstain_reason"] or "no recorded vote"))
            if r["contaminated"]:
                labels[r["voter"]] = r["contaminated"]
        return out, labels

    async def recorded_snapshot_hashes(self) -> set[str]:
        """The hash of every snapshot some voter's answer was recorded for (for replay)."""
        return {r["snapshot_hash"] for r in await self._pool.fetch("SELECT DISTINCT snapshot_hash FROM model_votes")}

    async def decision(self, decision_id: str) -> dict[str, Any] | None:
        row = await self._pool.fetchrow("SELECT * FROM decisions WHERE id = $1", decision_id)
        return dict(row) if row else None

    async def votes_for(self, decision_id: str) -> list[dict[str, Any]]:
        rows = await self._pool.fetch("SELECT * FROM model_votes WHERE decision_id = $1 ORDER BY id", decision_id)
        return [dict(r) for r in rows]

    async def proposal_for(self, decision_id: str) -> dict[str, Any] | None:
        row = await self._pool.fetchrow("SELECT * FROM proposals WHERE decision_id = $1", decision_id)
        return dict(row) if row else None

    # --- cost and budget -------------------------------------------------------------------
    async def spent_on(self, day: date) -> dict[str, float]:
        """Recorded AI spend per voter on a UTC day (to seed the budget after a restart)."""
        rows = await self._pool.fetch(
            """SELECT voter, sum(cost_usd) AS usd FROM model_votes
               WHERE (at AT TIME ZONE 'UTC')::date = $1 GROUP BY voter""",
            day,
        )
        return {r["voter"]: float(r["usd"] or 0) for r in rows}

    async def record_budget_event(self, day: date, spent_usd: float, limit_usd: float) -> None:
        await self._pool.execute(
            "INSERT INTO ai_budget_events (day, spent_usd, limit_usd) VALUES ($1,$2,$3)", day, spent_usd, limit_usd
        )

    # --- calibration -----------------------------------------------------------------------
    async def vote_outcomes(self, mode: str | None = None) -> list[Outcome]:
        """Every valid directional vote on a decision whose trade has closed, as an outcome."""
        rows = await self._pool.fetch(
            """SELECT v.voter, v.action, v.confidence, ct.side, ct.is_win
               FROM closed_trades ct JOIN model_votes v ON v.decision_id = ct.decision_id
               WHERE v.abstain_reason IS NULL AND v.action IN ('LONG', 'SHORT')
                 AND ($1::text IS NULL OR ct.mode = $1)""",
            mode,
        )
        out: list[Outcome] = []
        for r in rows:
            o = outcome_of(r["voter"], r["action"], float(r["confidence"] or 0), r["side"], bool(r["is_win"]))
            if o is not None:
                out.append(o)
        return out
