"""AI consensus: voters (rules analyst + language models), parsing, retries, cache, cost,
calibration and the consensus engine.

Composition (what the engine calls; `quorum.bootstrap` wires it: `open_cache`, `build_consensus`)::

    cache = open_cache(settings)
    consensus = await build_consensus(settings, cache=cache, pool=pool)   # pool may be None
    consensus.mode = "paper"                      # decisions.mode (default: TRADING_MODE)
    result = await consensus.decide(VoteContext(snapshot, account, positions))
    result.proposal          # → risk manager (decision_id set; HOLD carries the reason)
    result.votes, result.abstentions, result.records   # per-voter detail / audit rows
    await consensus.close()  # at shutdown

With a pool, `decide()` writes the snapshot, the decision, one `model_votes` row per voter
and the proposal in one transaction (`persist=False` skips it, e.g. in backtests).

`build_analysts(settings, ...)` alone gives the configured voters: one per MODELS entry that
has a key (a model without a key is skipped with one warning), one per ANALYSTS entry (your own
analyst, `PATH.py:ClassName`: `quorum.ai.user_analysts`), and the rules analyst when no model
or own analyst is usable (or always with RULES_VOTER=always). Every model of one provider shares one
concurrency cap (`<PROVIDER>_MAX_CONCURRENCY`, default MODEL_MAX_CONCURRENCY HTTP calls in flight).
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import structlog

from quorum.ai.analysts import Analyst, BudgetSink, ModelAnalyst, RulesAnalyst
from quorum.ai.consensus import ConsensusEngine, ConsensusResult
from quorum.ai.context import AccountView, PositionView, VoteContext
from quorum.ai.cost import CostTracker, load_prices, utc_day
from quorum.ai.parsing import Limits
from quorum.ai.prompts import PromptLimits, PromptSet
from quorum.ai.retry import RetryPolicy
from quorum.cache import Cache
from quorum.config import KEYLESS_PROVIDERS

log = structlog.get_logger(__name__)

__all__ = [
    "AccountView", "Analyst", "ConsensusEngine", "ConsensusResult", "CostTracker", "ModelAnalyst",
    "PositionView", "RulesAnalyst", "VoteContext", "build_analysts", "build_consensus", "retry_policy",
]


def retry_policy(settings: Any) -> RetryPolicy:
    return RetryPolicy(attempts=settings.model_retry_attempts, initial_wait=settings.model_retry_initial_seconds,
                       max_wait=settings.model_retry_max_seconds)


def validation_limits(settings: Any) -> Limits:
    return Limits(max_leverage=float(settings.max_leverage), max_stop_pct=max(25.0, settings.max_stop_loss_pct))


def build_analysts(
    settings: Any,
    *,
    cache: Cache | None = None,
    cost: CostTracker | None = None,
    budget_sink: BudgetSink | None = None,
    retry: RetryPolicy | None = None,
    prompts: PromptSet | None = None,
) -> list[Analyst]:
    """The configured voters (see module docstring). Never empty."""
    analysts: list[Analyst] = []
    if settings.models:
        prompts = prompts or PromptSet(settings.prompts_dir)
        cost = cost or CostTracker(load_prices(settings.model_prices_file), settings.daily_ai_budget_usd)
        retry = retry or retry_policy(settings)
        plimits = PromptLimits.from_settings(settings)
        limits = validation_limits(settings)
    if settings.models:  # the providers' SDKs only when a model votes (about a second of imports)
        from quorum.ai.anthropic_provider import AnthropicClient
        from quorum.ai.openai_provider import OpenAIChatClient
    seen: set[str] = set()
    limiters: dict[str, asyncio.Semaphore] = {}  # one per provider, shared by its models
    for entry in settings.models:
        provider, _, model = entry.partition(":")
        provider = provider.strip().lower()
        model = model.strip()
        if entry in seen:
            log.warning("ai.model_duplicate_skipped", model=entry)
            continue
        seen.add(entry)
        cfg = settings.provider(provider)
        key = cfg.api_key.get_secret_value() if cfg.api_key else None
        if not key and provider not in KEYLESS_PROVIDERS:
            log.warning("ai.model_skipped_no_key", model=entry, variable=f"{provider.upper()}_API_KEY")
            continue
        client: Any
        if provider == "anthropic":
            client = AnthropicClient(model, api_key=key or "none", base_url=cfg.base_url,
                                     timeout_seconds=cfg.timeout_seconds, temperature=cfg.temperature,
                                     max_tokens=settings.model_max_tokens)
        elif cfg.base_url:
            client = OpenAIChatClient(provider, model, api_key=key or "not-needed", base_url=cfg.base_url,
                                      timeout_seconds=cfg.timeout_seconds, temperature=cfg.temperature,
                                      max_tokens=settings.model_max_tokens)
        else:
            log.warning("ai.model_skipped_no_base_url", model=entry, variable=f"{provider.upper()}_BASE_URL")
            continue
        assert prompts is not None and retry is not None
        limiter = limiters.setdefault(provider, asyncio.Semaphore(cfg.max_concurrency))
        analysts.append(ModelAnalyst(client, prompts, prompt_limits=plimits, limits=limits, retry=retry,
                                     cache=cache, cache_ttl_seconds=settings.cache_ttl_seconds, cost=cost,
                                     budget_sink=budget_sink, limiter=limiter))
    if settings.analysts:  # the user's own (`quorum.ai.user_analysts`): a broken file stops start-up in one line
        from quorum.ai.user_analysts import load_user_analysts

        analysts.extend(load_user_analysts(settings.analysts))
    if not analysts or settings.rules_voter == "always":
        analysts.insert(0, RulesAnalyst(settings.decision_timeframe))
    log.info("ai.voters", voters=[a.name for a in analysts])
    return analysts


async def build_consensus(
    settings: Any,
    *,
    cache: Cache | None = None,
    pool: Any = None,
    analysts: Sequence[Analyst] | None = None,
    now_ms: int | None = None,
) -> ConsensusEngine:
    """The consensus engine from settings: voters, cost tracker seeded with today's recorded
    spend, calibration weights and decision persistence when a Postgres pool is given."""
    import time

    from quorum.ai.calibration import Calibrator

    store = None
    cost = CostTracker(load_prices(settings.model_prices_file), settings.daily_ai_budget_usd)
    budget_sink: BudgetSink | None = None
    if pool is not None:
        from quorum.store.decisions import DecisionRepository

        store = DecisionRepository(pool)
        # Spend is accounted on the wall-clock day (see quorum.ai.cost); `now_ms` may add a
        # simulated clock's day, which is harmless.
        days = {utc_day(int(time.time() * 1000))} | ({utc_day(now_ms)} if now_ms is not None else set())
        for day in days:
            cost.seed(day, await store.spent_on(day))
        budget_sink = store.record_budget_event
    voters = list(analysts) if analysts is not None else build_analysts(
        settings, cache=cache, cost=cost, budget_sink=budget_sink)
    mode = str(getattr(settings.trading_mode, "value", settings.trading_mode))
    weights = Calibrator(store, mode=mode) if store is not None else None
    return ConsensusEngine.from_settings(settings, voters, weights=weights, store=store)
