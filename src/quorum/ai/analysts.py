"""Voters behind one protocol: the rules analyst and model analysts (any provider).

`Analyst.vote(ctx)` returns a `Vote` or an `Abstention`. Analysts that can explain themselves
also offer `vote_with_record(ctx, snapshot_hash)` → (result, `CallRecord`), the audit row the
store writes to `model_votes`; the consensus engine uses it when present.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
from collections.abc import Awaitable, Callable
from dataclasses import replace
from datetime import date
from typing import Any, Protocol, runtime_checkable

import structlog

from quorum import metrics
from quorum.ai.client import VOTE_JSON_SCHEMA, Completion, Message, ModelClient
from quorum.ai.context import VoteContext
from quorum.ai.context import snapshot_hash as memo_hash
from quorum.ai.cost import CostTracker, checked_usage, upper_bound_tokens, utc_day
from quorum.ai.parsing import Limits, ParseResult, looks_like_refusal, parse_reply
from quorum.ai.prompts import PromptLimits, PromptSet
from quorum.ai.retry import RetryPolicy, error_kind
from quorum.cache import Cache
from quorum.domain.models import Abstention, Vote, canonical_json
from quorum.domain.rules import RULES_VERSION, RULES_VOTER, rules_vote
from quorum.domain.votes import CallRecord as CallRecord
from quorum.domain.votes import vote_from_dict as vote_from_dict
from quorum.domain.votes import vote_to_dict as vote_to_dict
from quorum.store.text import storable_text

log = structlog.get_logger(__name__)

MAX_STORED_REPLY = 50_000  # characters of a raw reply kept in the audit row

BudgetSink = Callable[[date, float, float], Awaitable[None]]
_SCHEMA_TEXT = json.dumps(VOTE_JSON_SCHEMA)  # sent with every call (response format / tool)
CONTENT_FILTER_STOPS = frozenset({"content_filter", "refusal"})  # finish/stop reasons of a filtered reply
DEFAULT_MAX_OUTPUT_TOKENS = 4096  # a client that does not say its reply limit is assumed this generous


class BudgetRefused(Exception):
    """The daily AI budget cannot cover the next call (spent + reserved + its upper bound)."""


@runtime_checkable
class Analyst(Protocol):
    name: str

    async def vote(self, ctx: VoteContext) -> Vote | Abstention: ...


def record_for(result: Vote | Abstention, *, provider: str, model: str, snapshot_hash: str, prompt_version: str,
               latency_ms: int = 0, **kw: Any) -> CallRecord:
    """A record for a result that needed no provider call (rules, replay, deadline)."""
    if isinstance(result, Vote):
        return CallRecord(voter=result.voter, provider=provider, model=model, symbol=result.symbol,
                          snapshot_hash=snapshot_hash, prompt_version=prompt_version, parsed=vote_to_dict(result),
                          action=result.action.value, confidence=result.confidence, latency_ms=latency_ms, **kw)
    return CallRecord(voter=result.voter, provider=provider, model=model, symbol=result.symbol,
                      snapshot_hash=snapshot_hash, prompt_version=prompt_version, abstain_reason=result.reason,
                      latency_ms=latency_ms, **kw)


class RulesAnalyst:
    """The deterministic technical analyst (`quorum.domain.rules`) on `timeframe` (the decision
    timeframe; None = the snapshot's first view)."""

    name = RULES_VOTER
    kind = "rules"

    def __init__(self, timeframe: str | None = None) -> None:
        self.timeframe = timeframe

    async def vote(self, ctx: VoteContext) -> Vote | Abstention:
        # Strictly the decision timeframe (as the backtester's `rules_signals` call); a snapshot
        # without that view gives HOLD with the reason.
        return rules_vote(ctx.snapshot, self.timeframe)

    async def vote_with_record(self, ctx: VoteContext, snapshot_hash: str | None = None
                               ) -> tuple[Vote | Abstention, CallRecord]:
        t0 = time.perf_counter()
        result = await self.vote(ctx)
        ms = int((time.perf_counter() - t0) * 1000)
        return result, record_for(result, provider="rules", model="rules",
                                  snapshot_hash=snapshot_hash or memo_hash(ctx.snapshot),
                                  prompt_version=RULES_VERSION, latency_ms=ms, attempts=1)


def cache_key(snapshot_hash: str, provider: str, model: str, prompt_version: str, system_prompt: str,
              ctx: VoteContext, *, system_digest: str | None = None) -> str:
    """hash(snapshot, provider, model, prompt version, rendered limits, relevant account state)."""
    digest = system_digest or hashlib.sha256(system_prompt.encode()).hexdigest()[:16]
    material = canonical_json([snapshot_hash, provider, model, prompt_version, digest, ctx.cache_state()])
    return "ai:vote:" + hashlib.sha256(material.encode()).hexdigest()


class ModelAnalyst:
    """A language-model voter: prompt → provider (with retries) → tolerant parse → validation →
    one repair retry → vote or abstention. Cached per snapshot; priced; budget-capped.

    Each provider call reserves its upper-bound cost from `cost` first and settles the actual
    cost after it (released on failure or cancellation), so concurrent voters never overshoot
    the daily budget. `limiter` (shared by every analyst of one provider) bounds that
    provider's HTTP attempts in flight; cached votes neither reserve nor wait for it."""

    kind = "model"

    def __init__(
        self,
        client: ModelClient,
        prompts: PromptSet,
        *,
        prompt_limits: PromptLimits = PromptLimits(),
        limits: Limits = Limits(),
        retry: RetryPolicy = RetryPolicy(),
        cache: Cache | None = None,
        cache_ttl_seconds: float = 900.0,
        cost: CostTracker | None = None,
        budget_sink: BudgetSink | None = None,
        wall_clock: Callable[[], float] = time.time,
        limiter: asyncio.Semaphore | None = None,
    ) -> None:
        self.client = client
        self.limiter = limiter
        self.max_output_tokens = int(getattr(client, "max_tokens", 0) or DEFAULT_MAX_OUTPUT_TOKENS)
        self.wall_clock = wall_clock
        self.name = f"{client.provider}:{client.model}"
        self.prompts = prompts
        self.prompt_limits = prompt_limits
        self.limits = limits
        self.retry = retry
        self.cache = cache
        self.cache_ttl_seconds = cache_ttl_seconds
        self.cost = cost
        self.budget_sink = budget_sink
        self._system = prompts.system(prompt_limits)
        self._system_digest = hashlib.sha256(self._system.encode()).hexdigest()[:16]

    async def vote(self, ctx: VoteContext) -> Vote | Abstention:
        return (await self.vote_with_record(ctx))[0]

    async def close(self) -> None:
        await self.client.close()

    def _abstain(self, ctx: VoteContext, base: CallRecord, reason: str, kind: str, **kw: Any
                 ) -> tuple[Abstention, CallRecord]:
        metrics.MODEL_ERRORS.labels(self.name, kind).inc()
        return (Abstention(self.name, ctx.snapshot.symbol, reason), replace(base, abstain_reason=reason, **kw))

    async def vote_with_record(self, ctx: VoteContext, snapshot_hash: str | None = None
                               ) -> tuple[Vote | Abstention, CallRecord]:
        t0 = time.perf_counter()
        shash = snapshot_hash or memo_hash(ctx.snapshot)
        base = CallRecord(voter=self.name, provider=self.client.provider, model=self.client.model,
                          symbol=ctx.snapshot.symbol, snapshot_hash=shash, prompt_version=self.prompts.version)
        key = cache_key(shash, self.client.provider, self.client.model, self.prompts.version, self._system, ctx,
                        system_digest=self._system_digest)
        if self.cache is not None:
            hit = await self._cache_get(key)
            if hit is not None:
                vote, cached_raw, parsed = hit
                ms = int((time.perf_counter() - t0) * 1000)
                return vote, replace(base, raw_reply=cached_raw, parsed=parsed, action=vote.action.value,
                                     confidence=vote.confidence, cached=True, latency_ms=ms)
        day = utc_day(int(self.wall_clock() * 1000))  # money is spent on the wall-clock day
        messages = [Message("user", self.prompts.user(ctx))]
        state: dict[str, Any] = {"attempts": 0, "tokens_in": 0, "tokens_out": 0, "anomalies": []}
        raw: str | None = None
        try:
            completion = await self._call(messages, state, day)
            raw = completion.text
            if completion.refusal or completion.finish_reason in CONTENT_FILTER_STOPS:
                why = completion.refusal or f"stopped by the content filter ({completion.finish_reason})"
                return self._finish(ctx, base, t0, state, raw, None, f"refused: {why[:200]}", "refusal")
            if completion.ambiguous:  # several votes in one reply: never pick one
                return self._finish(ctx, base, t0, state, raw, None, f"ambiguous: {completion.ambiguous}",
                                    "ambiguous")
            result = parse_reply(raw, self.name, ctx.snapshot, self.limits)
            if result.ambiguous:
                return self._finish(ctx, base, t0, state, raw, None, f"ambiguous: {result.error}", "ambiguous")
            if result.error is not None and looks_like_refusal(raw):
                return self._finish(ctx, base, t0, state, raw, None, f"refused: {raw.strip()[:200]}",
                                    "refusal")
            if result.error is not None:
                messages += [Message("assistant", raw[:4000] or "(empty)"),
                             Message("user", self.prompts.repair(result.error))]
                first_error = result.error
                completion = await self._call(messages, state, day)
                raw = raw + "\n--- repair reply ---\n" + completion.text
                if completion.refusal or completion.finish_reason in CONTENT_FILTER_STOPS:
                    why = completion.refusal or f"stopped by the content filter ({completion.finish_reason})"
                    return self._finish(ctx, base, t0, state, raw, None, f"refused: {why[:200]}", "refusal")
                if completion.ambiguous:
                    return self._finish(ctx, base, t0, state, raw, None, f"ambiguous: {completion.ambiguous}",
                                        "ambiguous")
                result = parse_reply(completion.text, self.name, ctx.snapshot, self.limits)
                if result.error is not None:
                    return self._finish(ctx, base, t0, state, raw, result,
                                        f"invalid reply after repair: {result.error} (first: {first_error})",
                                        "parse")
        except BudgetRefused:
            return await self._budget_abstain(ctx, base, t0, state, day, raw)
        except Exception as exc:  # every provider failure is an abstention, never a crash
            kind = error_kind(exc)
            msg = f"{type(exc).__name__}: {str(exc)[:300]}"
            return self._finish(ctx, base, t0, state, None, None, f"{kind}: {str(exc)[:200]}", kind, error=msg)
        assert result.vote is not None
        abst_or_vote, record = self._finish(ctx, base, t0, state, raw, result, None, None)
        if self.cache is not None and isinstance(abst_or_vote, Vote):
            payload = json.dumps({"vote": vote_to_dict(abst_or_vote), "raw": raw, "parsed": result.parsed})
            try:
                await self.cache.set(key, payload, self.cache_ttl_seconds)
            except Exception as exc:
                log.warning("ai.cache_set_failed", voter=self.name, error=str(exc))
        return abst_or_vote, record

    async def _cache_get(self, key: str) -> tuple[Vote, str, dict[str, Any] | None] | None:
        assert self.cache is not None
        try:
            data = await self.cache.get(key)
        except Exception as exc:  # a broken cache must not stop voting
            log.warning("ai.cache_get_failed", voter=self.name, error=str(exc))
            data = None
        if data is None:
            metrics.CACHE_MISSES.inc()
            return None
        try:
            obj = json.loads(data)
            vote = vote_from_dict(obj["vote"])
        except (ValueError, KeyError, TypeError):
            metrics.CACHE_MISSES.inc()
            return None
        metrics.CACHE_HITS.inc()
        return vote, obj.get("raw") or "", obj.get("parsed")

    async def _budget_abstain(self, ctx: VoteContext, base: CallRecord, t0: float, state: dict[str, Any], day: date,
                              raw: str | None) -> tuple[Abstention, CallRecord]:
        assert self.cost is not None
        if self.cost.first_exhaustion(day) and self.budget_sink is not None:
            await self.budget_sink(day, self.cost.day_total(day), self.cost.daily_budget_usd)
        reason = f"daily AI budget of {self.cost.daily_budget_usd:g} USD exhausted"
        if not state["attempts"]:  # refused before any call: nothing was spent or measured
            return self._abstain(ctx, base, reason, "budget")
        result, rec = self._finish(ctx, base, t0, state, raw, None, reason, "budget")  # refused the repair call
        assert isinstance(result, Abstention)
        return result, rec

    def upper_bound_usd(self, messages: list[Message]) -> float:
        """The most one completion of `messages` can cost (what `_call` reserves): every byte of the
        system prompt, schema and messages a token, plus the reply token limit. 0 when free."""
        if self.cost is None or self.cost.price_of(self.client.provider, self.client.model) == (0.0, 0.0):
            return 0.0
        return self.cost.estimate(self.client.provider, self.client.model,
                                  [self._system, _SCHEMA_TEXT, *(m.content for m in messages)], self.max_output_tokens)

    async def _call(self, messages: list[Message], state: dict[str, Any], day: date) -> Completion:
        """One completion (with retries): reserve its upper-bound cost, call, settle the actual cost.
        Raises `BudgetRefused` without calling when the budget cannot cover it."""
        hold = None
        bound = self.upper_bound_usd(messages)
        if bound and self.cost is not None:
            hold = self.cost.reserve(day, self.name, bound)
            if hold is None:
                raise BudgetRefused

        async def once() -> Completion:
            state["attempts"] += 1
            metrics.MODEL_CALLS.labels(self.name).inc()
            if self.limiter is None:
                return await self.client.complete(self._system, list(messages))
            async with self.limiter:  # the provider's cap holds each HTTP attempt, not the retry waits
                return await self.client.complete(self._system, list(messages))

        def on_retry(exc: BaseException, attempt: int) -> None:
            kind = error_kind(exc)
            metrics.MODEL_ERRORS.labels(self.name, kind).inc()
            log.info("ai.retry", voter=self.name, attempt=attempt, kind=kind)

        actual = 0.0
        try:
            completion = await self.retry.call(once, on_retry)
            # the reported usage is checked against what the request allowed before it is charged
            usage = checked_usage(completion.tokens_in, completion.tokens_out,
                                  upper_bound_tokens(self._system, _SCHEMA_TEXT, *(m.content for m in messages)),
                                  self.max_output_tokens, min_in=1 if bound else 0)
            if self.cost is not None:
                actual = self.cost.cost(self.client.provider, self.client.model, usage.tokens_in, usage.tokens_out)
        finally:  # also on failure and on cancellation at the consensus deadline: the hold is released
            if hold is not None and self.cost is not None:
                self.cost.settle(hold, actual)
        if usage.anomaly:
            metrics.MODEL_ERRORS.labels(self.name, "usage_anomaly").inc()
            log.warning("ai.usage_anomaly", voter=self.name, anomaly=usage.anomaly)
            state["anomalies"].append(usage.anomaly)
        state["tokens_in"] += usage.tokens_in
        state["tokens_out"] += usage.tokens_out
        # text Postgres (and a terminal) can hold: no NUL, control characters or lone surrogates
        return replace(completion, text=storable_text(completion.text) or "",
                       refusal=storable_text(completion.refusal))

    def _finish(self, ctx: VoteContext, base: CallRecord, t0: float, state: dict[str, Any],
                raw: str | None, result: ParseResult | None, reason: str | None, kind: str | None,
                error: str | None = None) -> tuple[Vote | Abstention, CallRecord]:
        elapsed = time.perf_counter() - t0
        tin, tout = state["tokens_in"], state["tokens_out"]
        # already added to the day's spend call by call (`_call` settles each reservation)
        usd = self.cost.cost(self.client.provider, self.client.model, tin, tout) if self.cost else 0.0
        metrics.MODEL_LATENCY.labels(self.name).observe(elapsed)
        metrics.MODEL_TOKENS.labels(self.name, "in").inc(tin)
        metrics.MODEL_TOKENS.labels(self.name, "out").inc(tout)
        if usd:
            metrics.MODEL_COST.labels(self.name).inc(usd)
        if raw is not None and len(raw) > MAX_STORED_REPLY:
            raw = raw[:MAX_STORED_REPLY] + f"... [{len(raw) - MAX_STORED_REPLY} more characters not stored]"
        rec = replace(base, raw_reply=raw, latency_ms=int(elapsed * 1000), tokens_in=tin, tokens_out=tout,
                      cost_usd=usd, attempts=state["attempts"], error=error,
                      usage_anomaly=" | ".join(state["anomalies"]) or None,
                      parsed=result.parsed if result else None, notes=result.notes if result else ())
        if reason is not None:
            return self._abstain(ctx, rec, reason, kind or "other")
        assert result is not None and result.vote is not None
        v = result.vote
        return v, replace(rec, action=v.action.value, confidence=v.confidence)
