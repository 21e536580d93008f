"""The consensus engine: ask every voter at once, wait until the deadline, merge, record.

Voters run concurrently, so a decision takes as long as the slowest voter, never the sum.
A voter still running at the per-cycle deadline is cancelled and abstains ("deadline").
Weights come from a calibrator (track record in Postgres); without one every voter weighs 1.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

import structlog

from quorum import metrics
from quorum.ai.analysts import Analyst, CallRecord, record_for
from quorum.ai.context import VoteContext
from quorum.ai.context import snapshot_hash as memo_hash
from quorum.ai.parsing import Limits, vote_is_valid
from quorum.domain.consensus import ConsensusRules, merge_votes
from quorum.domain.models import Abstention, Proposal, Vote

log = structlog.get_logger(__name__)


class WeightSource(Protocol):
    async def weights(self) -> dict[str, float]: ...


class DecisionSink(Protocol):
    async def record_decision(self, *, decision_id: str, mode: str, analyst: str, ctx: VoteContext,
                              proposal: Proposal, records: Sequence[CallRecord], snapshot_hash: str) -> object: ...


@dataclass(frozen=True, slots=True)
class ConsensusResult:
    proposal: Proposal
    votes: tuple[Vote, ...]
    abstentions: tuple[Abstention, ...]
    records: tuple[CallRecord, ...]
    decision_id: str
    analyst: str
    weights: dict[str, float] = field(default_factory=dict)
    wall_ms: float = 0.0


def new_decision_id(symbol: str, time_ms: int) -> str:
    return f"d-{symbol}-{time_ms}-{uuid.uuid4().hex[:8]}"


def analyst_kind(analysts: Sequence[Any]) -> str:
    """decisions.analyst: 'models' when any model votes, else 'custom' (a user's analyst), 'replay'
    or 'rules'."""
    kinds = {getattr(a, "kind", "model") for a in analysts}
    if "model" in kinds:
        return "models"
    if "user" in kinds:
        return "custom"
    if "replay" in kinds:
        return "replay"
    return "rules"


_LOOSE = Limits(max_leverage=125.0, min_stop_pct=0.0, max_stop_pct=100.0, max_tp_pct=1e9)


def _guard(result: Vote | Abstention, name: str, ctx: VoteContext) -> Vote | Abstention:
    """Last line of defence for any analyst: a vote must be its own, for this symbol, with
    protective levels on the right side of the price; otherwise it becomes an abstention."""
    if not isinstance(result, Vote):
        return result
    snap = ctx.snapshot
    if result.voter != name or result.symbol != snap.symbol:
        return Abstention(name, snap.symbol, f"vote from {result.voter} for {result.symbol} rejected")
    if not vote_is_valid(result, snap, _LOOSE):
        return Abstention(name, snap.symbol, "vote violates basic invariants (confidence, stop or take-profit side)")
    return result


class ConsensusEngine:
    """`decide(ctx)` → `ConsensusResult`; persists through `store` when one is given."""

    def __init__(
        self,
        analysts: Sequence[Analyst],
        rules: ConsensusRules = ConsensusRules(),
        *,
        deadline_seconds: float = 120.0,
        weights: WeightSource | None = None,
        store: DecisionSink | None = None,
        mode: str = "paper",
    ) -> None:
        if not analysts:
            raise ValueError("ConsensusEngine needs at least one analyst")
        names = [a.name for a in analysts]
        if len(set(names)) != len(names):
            raise ValueError(f"duplicate voter names: {names}")
        self.analysts = list(analysts)
        self.rules = rules
        self.deadline_seconds = deadline_seconds
        self.weight_source = weights
        self.store = store
        self.mode = mode
        self.analyst = analyst_kind(self.analysts)
        # Expected latency per voter (EWMA of observed seconds). Voters are started slowest
        # first: starting a request costs CPU in the SDK, and a fast voter's set-up should
        # overlap the slow voter's wait instead of delaying the slow voter's request.
        self._latency: dict[str, float] = {}
        self._batch: list[dict[str, Any]] | None = None  # decisions waiting for `batched()`'s end
        # voter → "contaminated: …" label (`quorum.ai.cutoffs`), set when a past period is decided
        # under --allow-contaminated: every record of that voter carries it (and so its stored vote)
        self.contamination: dict[str, str] = {}

    @classmethod
    def from_settings(cls, settings: Any, analysts: Sequence[Analyst], *, weights: WeightSource | None = None,
                      store: DecisionSink | None = None) -> ConsensusEngine:
        return cls(
            analysts,
            ConsensusRules(settings.min_voters, settings.min_agreement, settings.min_ai_confidence),
            deadline_seconds=settings.consensus_deadline_seconds,
            weights=weights,
            store=store,
            mode=str(getattr(settings.trading_mode, "value", settings.trading_mode)),
        )

    async def close(self) -> None:
        """Close the voters' HTTP clients (at shutdown)."""
        for a in self.analysts:
            closer = getattr(a, "close", None)
            if closer is not None:
                try:
                    await closer()
                except Exception as exc:  # shutting down: log and go on
                    log.warning("ai.close_failed", voter=a.name, error=str(exc))

    async def _ask(self, a: Analyst, ctx: VoteContext, shash: str) -> tuple[Vote | Abstention, CallRecord]:
        t0 = time.perf_counter()
        try:
            if hasattr(a, "vote_with_record"):
                result, rec = await a.vote_with_record(ctx, shash)
                guarded = _guard(result, a.name, ctx)
                if guarded is not result:
                    rec = replace(rec, action=None, confidence=None, abstain_reason=guarded.reason)  # type: ignore[union-attr]
                return guarded, rec
            result = _guard(await a.vote(ctx), a.name, ctx)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # a broken analyst abstains; the others still decide
            log.warning("ai.analyst_failed", voter=a.name, error=str(exc))
            result = Abstention(a.name, ctx.snapshot.symbol, f"analyst error: {type(exc).__name__}: {exc}"[:300])
        ms = int((time.perf_counter() - t0) * 1000)
        kind = getattr(a, "kind", "model")
        return result, record_for(result, provider=kind, model=a.name, snapshot_hash=shash,
                                  prompt_version=kind, latency_ms=ms, attempts=1)

    async def decide(self, ctx: VoteContext, *, persist: bool = True, decision_id: str | None = None,
                     snapshot_hash: str | None = None) -> ConsensusResult:
        """Ask every voter concurrently, merge at the deadline, persist (when a store is set and
        `persist`). Never raises for voter failures: they are abstentions."""
        t0 = time.perf_counter()
        snap = ctx.snapshot
        shash = snapshot_hash or memo_hash(snap)
        did = decision_id or new_decision_id(snap.symbol, snap.time_ms)
        order = sorted(self.analysts, key=lambda a: -self._latency.get(a.name, float("inf")))
        tasks = {asyncio.ensure_future(self._ask(a, ctx, shash)): a for a in order}
        weights_task = asyncio.ensure_future(self.weight_source.weights()) if self.weight_source else None
        try:
            done, pending = await asyncio.wait(tasks, timeout=self.deadline_seconds)
        except asyncio.CancelledError:  # the decision itself was cancelled (shutdown): no orphan calls
            for t in [*tasks, *([weights_task] if weights_task is not None else [])]:
                t.cancel()
            await asyncio.gather(*tasks, *([weights_task] if weights_task is not None else []),
                                 return_exceptions=True)
            raise
        for t in pending:
            t.cancel()
        if pending:
            await asyncio.gather(*pending, return_exceptions=True)
        votes: list[Vote] = []
        abstentions: list[Abstention] = []
        records: list[CallRecord] = []
        task_of = {a.name: t for t, a in tasks.items()}
        for a in self.analysts:  # results in configured order, whatever the start order
            task = task_of[a.name]
            if task in done and not task.cancelled() and task.exception() is None:
                result, rec = task.result()
            else:
                metrics.MODEL_ERRORS.labels(a.name, "deadline").inc()
                result = Abstention(a.name, snap.symbol, f"deadline: no answer within {self.deadline_seconds:g} s")
                prov, _, model = a.name.partition(":")
                rec = record_for(result, provider=prov or a.name, model=model or a.name, snapshot_hash=shash,
                                 prompt_version=getattr(getattr(a, "prompts", None), "version", "n/a"),
                                 latency_ms=int(self.deadline_seconds * 1000), error="deadline exceeded")
            if a.name in self.contamination:
                rec = replace(rec, contaminated=self.contamination[a.name])
            records.append(rec)
            if not rec.cached:
                seen = rec.latency_ms / 1000
                old = self._latency.get(a.name)
                self._latency[a.name] = seen if old is None else 0.7 * old + 0.3 * seen
            (votes if isinstance(result, Vote) else abstentions).append(result)  # type: ignore[arg-type]
        weights: dict[str, float] = {}
        if weights_task is not None:
            try:
                weights = await weights_task
            except Exception as exc:  # no weights is neutral weights, never a failed decision
                log.warning("ai.weights_unavailable", error=str(exc))
        proposal = merge_votes(snap.symbol, votes, len(abstentions), self.rules, reference_price=snap.price,
                               snapshot_hash=shash, time_ms=snap.time_ms, weights=weights)
        proposal = replace(proposal, decision_id=did)
        outcome = ConsensusResult(proposal=proposal, votes=tuple(votes), abstentions=tuple(abstentions),
                                 records=tuple(records), decision_id=did, analyst=self.analyst, weights=weights,
                                 wall_ms=(time.perf_counter() - t0) * 1000)
        if persist and self.store is not None:
            record: dict[str, Any] = {"decision_id": did, "mode": self.mode, "analyst": self.analyst, "ctx": ctx,
                      "proposal": proposal, "records": outcome.records, "snapshot_hash": shash}
            if self._batch is not None:
                self._batch.append(record)
            else:
                await self.store.record_decision(**record)
        return outcome

    @contextlib.asynccontextmanager
    async def batched(self) -> AsyncIterator[None]:
        """Decisions taken inside the block are stored together when it ends (a decision
        cycle's in one transaction) — before anything acts on them. A store that cannot write
        many at once stores each as it is taken."""
        if self.store is None or not hasattr(self.store, "record_decisions") or self._batch is not None:
            yield
            return
        self._batch = []
        try:
            yield
        except Exception:
            await self._store_batch()
            raise
        await self._store_batch()

    async def _store_batch(self) -> None:
        batch, self._batch = self._batch or [], None
        if batch:
            await self.store.record_decisions(batch)  # type: ignore[union-attr]
