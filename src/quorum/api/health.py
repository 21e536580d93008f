"""Component checks behind GET /health.

Each check returns a `Component(ok, detail, extra, degraded)`. /health is 200 only when every
component is ok, i.e. when trading can proceed: the database and cache answer, market data and
the exchange are current, enough model voters have succeeded recently, the last decision cycle
is not stale, no breaker blocks entries and the operator has not paused or killed the engine.
A component can be ok but DEGRADED (the cache serving from process memory while Redis is
unreachable): trading proceeds, /health stays 200 with status "degraded" and names it.
Details are short fixed texts or exception class names: never a URL, key or message that could
carry a secret.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Any

import asyncpg

from quorum.cache import Cache, FallbackCache
from quorum.config import Settings
from quorum.engine.runtime import RuntimeState, wall_ms
from quorum.store.db import select_one

CHECK_TIMEOUT_S = 1.0
STALE_FACTOR = 2.0  # a scan is stale after this many scan intervals ...
STALE_GRACE_S = 30.0  # ... plus this grace
PROVIDER_STALE_FACTOR = 3.0


@dataclass
class Component:
    ok: bool
    detail: str
    extra: dict[str, Any] = field(default_factory=dict)
    degraded: bool = False  # ok, but running on a fallback (shown; does not fail /health)

    def as_dict(self) -> dict[str, Any]:
        flag = {"degraded": True} if self.degraded else {}
        return {"ok": self.ok, **flag, "detail": self.detail, **self.extra}


async def check_database(pool: asyncpg.Pool | None) -> Component:
    if pool is None:
        return Component(False, "no database pool")
    started = wall_ms()
    try:
        value = await asyncio.wait_for(select_one(pool), CHECK_TIMEOUT_S)
    except TimeoutError:
        return Component(False, f"no answer within {CHECK_TIMEOUT_S:g}s", {"error": "TimeoutError"})
    except Exception as exc:  # closed pool, dropped database, server down: all mean "down"
        return Component(False, f"unreachable ({type(exc).__name__})", {"error": type(exc).__name__})
    if value != 1:
        return Component(False, "unexpected answer")
    return Component(True, "ok", {"latency_ms": wall_ms() - started})


async def check_cache(cache: Cache | None) -> Component:
    if cache is None:
        return Component(True, "not configured")
    try:
        ok = await asyncio.wait_for(cache.ping(), CHECK_TIMEOUT_S)
    except Exception as exc:
        return Component(False, f"unreachable ({type(exc).__name__})")
    extra: dict[str, Any] = {"kind": type(cache).__name__}
    if isinstance(cache, FallbackCache):
        extra["backend"] = "memory" if cache.degraded else "redis"
        if cache.degraded:
            extra["since_ms"] = cache.since_ms
            return Component(True, cache.detail, extra, degraded=True)
    return Component(bool(ok), "ok" if ok else "ping failed", extra)


def engine_views(runtime: RuntimeState, db: Component, cc: Component) -> tuple[Component, Component]:
    """Fold in what the ENGINE process reports about its own database and cache clients (the
    API process probes with clients of its own): the engine waiting for Postgres fails
    `database` even when this process's probe already answers; the engine's cache on its
    fallback degrades `cache`."""
    if db.ok and not runtime.database_ok:
        db = Component(False, f"engine: {runtime.database_error or 'database unavailable'}",
                       {"error": runtime.database_error or "unavailable"})
    if cc.ok and not cc.degraded and runtime.cache_degraded:
        cc = Component(True, f"engine: {runtime.cache_degraded}; in-process cache in use",
                       {**cc.extra, "backend": "memory"}, degraded=True)
    return db, cc


def _stale_after_s(runtime: RuntimeState) -> float:
    return runtime.scan_interval_s * STALE_FACTOR + STALE_GRACE_S


def check_scan(runtime: RuntimeState, now_ms: int) -> Component:
    limit = _stale_after_s(runtime)
    if runtime.last_scan_ms is None:
        up = runtime.uptime_s(now_ms)
        if up <= limit:
            return Component(True, "waiting for the first scan", {"uptime_s": round(up, 1), "stale_after_s": limit})
        return Component(False, f"no scan completed in {up:.0f}s", {"stale_after_s": limit})
    age = max(0.0, (now_ms - runtime.last_scan_ms) / 1000)
    extra = {"age_s": round(age, 1), "interval_s": runtime.scan_interval_s, "stale_after_s": limit}
    if age > limit:
        return Component(False, f"last scan {age:.0f}s ago (interval {runtime.scan_interval_s:g}s)", extra)
    return Component(True, "ok", extra)


def check_market(runtime: RuntimeState, now_ms: int) -> Component:
    if not runtime.exchange_ok:
        return Component(False, f"exchange error: {runtime.exchange_error or 'unknown'}")
    limit = _stale_after_s(runtime)
    if runtime.last_market_data_ms is None:
        up = runtime.uptime_s(now_ms)
        if up <= limit:
            return Component(True, "waiting for market data")
        return Component(False, f"no market data in {up:.0f}s")
    age = max(0.0, (now_ms - runtime.last_market_data_ms) / 1000)
    extra = {"age_s": round(age, 1), "stale_after_s": limit}
    if age > limit:
        return Component(False, f"market data {age:.0f}s old", extra)
    return Component(True, "ok", extra)


def check_providers(runtime: RuntimeState, settings: Settings, now_ms: int) -> Component:
    """Every configured voter's last success age. Fails only when fewer than MIN_VOTERS voters
    have succeeded recently (consensus could not reach its quorum)."""
    voters = list(dict.fromkeys(runtime.providers or [m for m in settings.models] or ["rules"]))
    limit_s = runtime.scan_interval_s * PROVIDER_STALE_FACTOR + STALE_GRACE_S
    per: dict[str, Any] = {}
    healthy = 0
    for voter in voters:
        last = runtime.provider_last_success.get(voter)
        err = runtime.provider_last_error.get(voter)
        if voter == "rules":
            fresh = True  # local, deterministic: cannot be unavailable
        elif last is None:
            fresh = err is None and runtime.uptime_s(now_ms) <= limit_s
        else:
            fresh = (now_ms - last) / 1000 <= limit_s
        healthy += fresh
        per[voter] = {
            "ok": fresh,
            "last_success_age_s": None if last is None else round((now_ms - last) / 1000, 1),
            "last_error": err,
        }
    need = min(settings.min_voters, len(voters))
    ok = healthy >= need
    detail = "ok" if ok else f"only {healthy} of {len(voters)} voters answered recently (need {need})"
    return Component(ok, detail, {"voters": per, "healthy": healthy, "required": need})


def _global(name: str) -> bool:
    """Account-wide breakers block all entries; per-symbol cool-downs ("name:SYMBOL") do not."""
    return ":" not in name and not name.startswith("symbol_cooldown")


def check_breakers(runtime: RuntimeState) -> Component:
    tripped = dict(runtime.breakers)
    if runtime.kill_requested:
        return Component(False, "kill switch engaged", {"tripped": tripped})
    if runtime.paused:
        return Component(False, "paused by operator", {"tripped": tripped})
    blocking = sorted(n for n in tripped if _global(n))
    if blocking:
        return Component(False, f"tripped: {', '.join(blocking)}", {"tripped": tripped})
    detail = "ok" if not tripped else f"ok (per-symbol cool-down: {', '.join(sorted(tripped))})"
    return Component(True, detail, {"tripped": tripped})


ENGINE_SILENT_S = 10.0


def check_engine(runtime: RuntimeState, now_ms: int) -> Component:
    """API process only: the engine process must keep publishing its state."""
    age = max(0.0, (now_ms - (runtime.heartbeat_ms or 0)) / 1000)
    if age > ENGINE_SILENT_S:
        return Component(False, f"engine silent for {age:.0f}s", {"age_s": round(age, 1)})
    return Component(True, "ok", {"age_s": round(age, 2)})


class IoChecks:
    """The database and cache checks, reused for `ttl_s` seconds: /health can be polled hundreds
    of times a second without putting that load on Postgres (0 = check on every request).

    Past `ttl_s` the last answer is still served while ONE background probe refreshes it, so no
    request waits on a database round trip (under load that wait was /health's latency tail);
    past `stale_factor × ttl_s` requests wait for a fresh probe again, so a failure is never
    hidden for long."""

    def __init__(self, ttl_s: float = 1.0, stale_factor: float = 5.0) -> None:
        self.ttl_s = ttl_s
        self.max_stale_s = ttl_s * stale_factor
        self._at = -1e18
        self._result: tuple[Component, Component] | None = None
        self._lock = asyncio.Lock()
        self._refresh: asyncio.Task[tuple[Component, Component]] | None = None

    async def _probe(self, pool: asyncpg.Pool | None, cache: Cache | None) -> tuple[Component, Component]:
        async with self._lock:  # one probe at a time; waiters reuse its answer
            if self._result is None or time.monotonic() - self._at >= self.ttl_s:
                db, cc = await asyncio.gather(check_database(pool), check_cache(cache))
                self._result, self._at = (db, cc), time.monotonic()
            return self._result

    async def get(self, pool: asyncpg.Pool | None, cache: Cache | None) -> tuple[Component, Component]:
        age = time.monotonic() - self._at
        if self._result is not None and age < self.ttl_s:
            return self._result
        if self._result is not None and age < self.max_stale_s:
            if self._refresh is None or self._refresh.done():
                self._refresh = asyncio.ensure_future(self._probe(pool, cache))
            return self._result
        return await self._probe(pool, cache)


async def run_checks(settings: Settings, runtime: RuntimeState, pool: asyncpg.Pool | None,
                     cache: Cache | None, io: IoChecks | None = None) -> dict[str, Component]:
    now = wall_ms()
    db, cc = engine_views(runtime, *await (io or IoChecks(0.0)).get(pool, cache))
    checks = {
        "database": db,
        "cache": cc,
        "market_data": check_market(runtime, now),
        "models": check_providers(runtime, settings, now),
        "scan": check_scan(runtime, now),
        "breakers": check_breakers(runtime),
    }
    if runtime.heartbeat_ms is not None:
        checks["engine"] = check_engine(runtime, now)
    return checks
