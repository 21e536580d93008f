"""Decisions, every voter's call (model_votes), proposals and AI budget events.

One transaction per decision: the snapshot row (if not stored yet), the decision, one
`model_votes` row per voter (prompt version, raw reply, parsed vote or abstention reason,
latency, tokens, cost, error, cached) and the proposal. `recorded_votes(snapshot_hash)` gives
the backtester's replay analyst what the voters said about exactly that snapshot.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import date
from typing import Any

import asyncpg

from quorum.ai.analysts import CallRecord, vote_from_dict
from quorum.ai.context import VoteContext
from quorum.domain.consensus import Outcome, outcome_of
from quorum.domain.models import Abstention, Proposal, Snapshot, Vote, canonical
from quorum.store.positions import ms_to_dt


def _clean(obj: Any) -> Any:
    """JSON-safe form (NaN/inf → null) for jsonb columns."""
    return json.loads(json.dumps(canonical(obj))) if obj is not None else None


def _text(s: str | None) -> str | None:
    return None if s is None else s.replace("\x00", "")  # Postgres text cannot hold NUL


class DecisionRepository:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    async def save_snapshot(self, snapshot: Snapshot, conn: asyncpg.Connection | None = None,
                            snapshot_hash: str | None = None) -> str:
        """Insert the snapshot row unless present; returns its hash."""
        h = snapshot_hash or snapshot.hash
        await (conn or self._pool).execute(
            """INSERT INTO market_snapshots (hash, symbol, at, price, regime, flags, payload)
               VALUES ($1,$2,$3,$4,$5,$6,$7) ON CONFLICT (hash) DO NOTHING""",
            h, snapshot.symbol, ms_to_dt(snapshot.time_ms), snapshot.price, snapshot.regime.value,
            list(snapshot.flags), _clean(snapshot.to_dict()),
        )
        return h

    async def record_decision(self, *, decision_id: str, mode: str, analyst: str, ctx: VoteContext,
                              proposal: Proposal, records: Sequence[CallRecord], snapshot_hash: str) -> int:
        """Write decision + votes + proposal atomically; returns the proposal id."""
        async with self._pool.acquire() as conn, conn.transaction():
            await self.save_snapshot(ctx.snapshot, conn, snapshot_hash)
            await conn.execute(
                """INSERT INTO decisions (id, mode, symbol, at, snapshot_hash, analyst, action, confidence, reason)
                   VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9)""",
                decision_id, mode, proposal.symbol, ms_to_dt(proposal.time_ms), snapshot_hash, analyst,
                proposal.action.value, proposal.confidence, proposal.reason,
            )
            await conn.executemany(
                """INSERT INTO model_votes (decision_id, snapshot_hash, symbol, voter, provider, model,
                       prompt_version, raw_reply, parsed_vote, action, confidence, abstain_reason, latency_ms,
                       tokens_in, tokens_out, cost_usd, cached, error, attempts)
                   VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12,$13,$14,$15,$16,$17,$18,$19)""",
                [
                    (decision_id, r.snapshot_hash, r.symbol, r.voter, r.provider, r.model, r.prompt_version,
                     _text(r.raw_reply), _clean({**r.parsed, "notes": list(r.notes)} if r.parsed else None),
                     r.action, r.confidence, _text(r.abstain_reason), r.latency_ms, r.tokens_in, r.tokens_out,
                     r.cost_usd, r.cached, _text(r.error), max(1, r.attempts))
                    for r in records
                ],
            )
            pid: int = await conn.fetchval(
                """INSERT INTO proposals (decision_id, symbol, action, confidence, reference_price, stop_loss,
                       take_profits, leverage, valid_votes, abstentions, agreement, reason, snapshot_hash, at)
                   VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12,$13,$14) RETURNING id""",
                decision_id, proposal.symbol, proposal.action.value, proposal.confidence,
                proposal.reference_price, proposal.stop_loss, list(proposal.take_profits), proposal.leverage,
                proposal.valid_votes, proposal.abstentions, proposal.agreement, proposal.reason, snapshot_hash,
                ms_to_dt(proposal.time_ms),
            )
        return pid

    async def recorded_votes(self, snapshot_hash: str) -> list[Vote | Abstention]:
        """The latest recorded answer of each voter for this snapshot (for replay)."""
        rows = await self._pool.fetch(
            """SELECT DISTINCT ON (voter) voter, symbol, parsed_vote, abstain_reason
               FROM model_votes WHERE snapshot_hash = $1 ORDER BY voter, id DESC""",
            snapshot_hash,
        )
        out: list[Vote | Abstention] = []
        for r in rows:
            parsed = r["parsed_vote"]
            if r["abstain_reason"] is None and isinstance(parsed, dict) and "action" in parsed:
                out.append(vote_from_dict({**parsed, "voter": r["voter"], "symbol": r["symbol"]}))
            else:
                out.append(Abstention(r["voter"], r["symbol"], r["abstain_reason"] or "no recorded vote"))
        return out

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
