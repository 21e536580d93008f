"""The rows of one decision's audit record, and what happens when they cannot be written.

`DecisionRows` turns a decision (snapshot, proposal, every voter's `CallRecord`) into storable
row values (`quorum.store.text`). `DecisionRepository.record_decision` writes them in one
transaction and retries; when every attempt failed, `salvage` saves what it can row by row —
the snapshot, the decision, each vote (in full, else in a minimal form without the reply text
and parsed vote), the proposal — then records the failure in `audit_errors` (with the whole
decision as JSON, so no vote is lost even when its row could not be kept) and raises a warning
alert. It raises only when nothing could be written at all (the database is gone).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg
import structlog

from quorum.domain.models import Proposal, Snapshot, canonical
from quorum.domain.votes import CallRecord
from quorum.store.positions import ms_to_dt
from quorum.store.text import storable_count, storable_json, storable_text

log = structlog.get_logger(__name__)

AUDIT_ATTEMPTS = 3  # one write and two retries
AUDIT_RETRY_WAIT_S = 0.2  # doubled before each retry

SNAPSHOT_COLUMNS = ("hash", "symbol", "at", "price", "regime", "flags", "payload")
DECISION_COLUMNS = ("id", "mode", "symbol", "at", "snapshot_hash", "analyst", "action", "confidence", "reason")
VOTE_COLUMNS = ("decision_id", "snapshot_hash", "symbol", "voter", "provider", "model", "prompt_version",
                "raw_reply", "parsed_vote", "action", "confidence", "abstain_reason", "latency_ms", "tokens_in",
                "tokens_out", "cost_usd", "cached", "error", "attempts", "usage_anomaly", "contaminated")
PROPOSAL_COLUMNS = ("decision_id", "symbol", "action", "confidence", "reference_price", "stop_loss",
                    "take_profits", "leverage", "valid_votes", "abstentions", "agreement", "reason",
                    "snapshot_hash", "at")


def _insert(table: str, columns: tuple[str, ...]) -> str:
    return (f"INSERT INTO {table} ({', '.join(columns)}) "
            f"VALUES ({', '.join(f'${i}' for i in range(1, len(columns) + 1))})")


def _insert_rows(table: str, columns: tuple[str, ...], param: int, tail: str = "") -> str:
    """INSERT of the rows of a jsonb array parameter (keys = columns, the table's own types)."""
    cols = ", ".join(columns)
    return (f"INSERT INTO {table} ({cols}) SELECT {cols} "
            f"FROM jsonb_populate_recordset(NULL::{table}, ${param}::jsonb){tail}")


DECISION_SQL = _insert("decisions", DECISION_COLUMNS)
VOTE_SQL = _insert("model_votes", VOTE_COLUMNS)
PROPOSAL_SQL = _insert("proposals", PROPOSAL_COLUMNS) + " RETURNING id"
SNAPSHOT_SQL = _insert("market_snapshots", SNAPSHOT_COLUMNS) + " ON CONFLICT (hash) DO NOTHING"
# a decision cycle's decisions in one statement (one round trip, all or nothing): $1 snapshots,
# $2 decisions, $3 votes, $4 proposals, each a jsonb array of rows
DECISIONS_BATCH_SQL = (
    f"WITH s AS ({_insert_rows('market_snapshots', SNAPSHOT_COLUMNS, 1, ' ON CONFLICT (hash) DO NOTHING')}), "
    f"d AS ({_insert_rows('decisions', DECISION_COLUMNS, 2)}), "
    f"v AS ({_insert_rows('model_votes', VOTE_COLUMNS, 3)}), "
    f"p AS ({_insert_rows('proposals', PROPOSAL_COLUMNS, 4)}) SELECT 1")


def json_row(columns: tuple[str, ...], values: tuple[Any, ...]) -> dict[str, Any]:
    """A row for `jsonb_populate_recordset`: times as ISO text."""
    return {c: v.isoformat() if isinstance(v, datetime) else v for c, v in zip(columns, values, strict=True)}


_t = storable_text


def snapshot_row(snap: Snapshot, snapshot_hash: str) -> tuple[Any, ...]:
    return (snapshot_hash, snap.symbol, ms_to_dt(snap.time_ms), snap.price, snap.regime.value, list(snap.flags),
            jsonb(snap.to_dict()))


def jsonb(obj: Any) -> Any:
    """JSON-safe, storable form (NaN/inf → null, no NUL or lone surrogate) for jsonb columns."""
    return storable_json(json.loads(json.dumps(canonical(obj)))) if obj is not None else None


def _finite(x: float | None) -> float | None:
    return None if x is None or x != x or x in (float("inf"), float("-inf")) else x


@dataclass(frozen=True, slots=True)
class DecisionRows:
    """One decision's audit rows, as storable values."""

    decision_id: str
    mode: str
    analyst: str
    snapshot: Snapshot
    proposal: Proposal
    records: tuple[CallRecord, ...]
    snapshot_hash: str

    def decision_row(self, *, snapshot_hash: str | bool | None = True) -> tuple[Any, ...]:
        p = self.proposal
        shash = self.snapshot_hash if snapshot_hash is True else snapshot_hash or None
        return (self.decision_id, self.mode, p.symbol, ms_to_dt(p.time_ms), shash, self.analyst, p.action.value,
                _finite(p.confidence), _t(p.reason) or "")

    def vote_row(self, r: CallRecord) -> tuple[Any, ...]:
        return (self.decision_id, r.snapshot_hash, r.symbol, _t(r.voter), _t(r.provider), _t(r.model),
                _t(r.prompt_version), _t(r.raw_reply),
                jsonb({**r.parsed, "notes": list(r.notes)} if r.parsed else None),
                r.action, _finite(r.confidence), _t(r.abstain_reason), storable_count(r.latency_ms),
                storable_count(r.tokens_in), storable_count(r.tokens_out), _finite(r.cost_usd) or 0.0, r.cached,
                _t(r.error), max(1, min(r.attempts, 2**31 - 1)), _t(r.usage_anomaly), _t(r.contaminated))

    def minimal_vote_row(self, r: CallRecord, why: str) -> tuple[Any, ...]:
        """The vote without its reply text and parsed form (kept in `audit_errors.payload`)."""
        row = list(self.vote_row(r))
        row[7], row[8] = None, None
        row[17] = _t(f"audit: full row not stored ({why})"[:300] + (f"; {r.error}" if r.error else ""))
        return tuple(row)

    def proposal_row(self, *, snapshot_hash: bool = True) -> tuple[Any, ...]:
        p = self.proposal
        return (self.decision_id, p.symbol, p.action.value, _finite(p.confidence) or 0.0, _finite(p.reference_price),
                _finite(p.stop_loss), [x for x in p.take_profits if _finite(x) is not None], _finite(p.leverage),
                p.valid_votes, p.abstentions, _finite(p.agreement) or 0.0, _t(p.reason) or "",
                self.snapshot_hash if snapshot_hash else None, ms_to_dt(p.time_ms))

    def payload(self) -> Any:
        """The whole decision as storable JSON (what `audit_errors.payload` keeps)."""
        from dataclasses import asdict

        return jsonb({"decision_id": self.decision_id, "mode": self.mode, "analyst": self.analyst,
                      "snapshot_hash": self.snapshot_hash, "proposal": asdict(self.proposal),
                      "votes": [asdict(r) for r in self.records]})


def _why(exc: BaseException) -> str:
    return _t(f"{type(exc).__name__}: {exc}")[:500] or type(exc).__name__


async def salvage(pool: asyncpg.Pool, d: DecisionRows, error: BaseException, attempts: int) -> int | None:
    """Save `d` row by row after its transaction failed `attempts` times; record the failure and
    alert. Returns the proposal id (None when the proposal row could not be written)."""
    written: dict[str, Any] = {"snapshot": False, "decision": False, "votes_full": [], "votes_minimal": [],
                               "votes_lost": [], "proposal": False}
    last: BaseException = error
    try:
        await pool.execute(SNAPSHOT_SQL, *snapshot_row(d.snapshot, d.snapshot_hash))
        written["snapshot"] = True
    except Exception as exc:  # the decision can be kept without it
        last = exc
    for row in (d.decision_row(snapshot_hash=written["snapshot"]), d.decision_row(snapshot_hash=None)):
        try:
            await pool.execute(DECISION_SQL + " ON CONFLICT (id) DO NOTHING", *row)
            written["decision"] = True
            break
        except Exception as exc:
            last = exc
    pid: int | None = None
    if written["decision"]:
        for r in d.records:
            try:
                await pool.execute(VOTE_SQL, *d.vote_row(r))
                written["votes_full"].append(r.voter)
                continue
            except Exception as exc:
                last = exc
            try:
                await pool.execute(VOTE_SQL, *d.minimal_vote_row(r, _why(last)))
                written["votes_minimal"].append(r.voter)
            except Exception as exc:
                last = exc
                written["votes_lost"].append(r.voter)
        try:
            pid = await pool.fetchval(PROPOSAL_SQL, *d.proposal_row(snapshot_hash=written["snapshot"]))
            written["proposal"] = True
        except Exception as exc:
            last = exc
    message = (f"decision {d.decision_id} ({d.snapshot.symbol}) could not be written in one transaction after "
               f"{attempts} attempts ({_why(error)}); saved row by row: decision "
               f"{'yes' if written['decision'] else 'no'}, {len(written['votes_full'])} votes in full, "
               f"{len(written['votes_minimal'])} minimal, {len(written['votes_lost'])} only in audit_errors")
    log.error("store.decision_audit_error", decision_id=d.decision_id, symbol=d.snapshot.symbol,
              error=_why(error), salvaged=written)
    recorded = False
    try:
        audit_id = await pool.fetchval(
            """INSERT INTO audit_errors (mode, decision_id, symbol, error, attempts, salvaged, payload)
               VALUES ($1,$2,$3,$4,$5,$6,$7) RETURNING id""",
            d.mode, d.decision_id, d.snapshot.symbol, _why(error), attempts, jsonb(written), d.payload())
        recorded = True
        await pool.execute(
            """INSERT INTO alerts (mode, severity, kind, symbol, message, details)
               VALUES ($1, 'warning', 'audit_write_failed', $2, $3, $4)""",
            d.mode, d.snapshot.symbol, message, jsonb({"decision_id": d.decision_id, "audit_error_id": audit_id}))
    except Exception as exc:
        last = exc
        log.error("store.audit_error_unrecorded", decision_id=d.decision_id, error=_why(exc), payload=d.payload())
    if not written["decision"] and not recorded:
        raise last  # nothing could be written: the database is not usable (the caller's outage handling)
    return pid
