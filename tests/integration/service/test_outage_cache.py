"""Redis outages: the cache falls back to process memory at once and goes back to Redis by itself.
Runs against a private redis-server this module starts and stops (never the shared one)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable

import httpx
import pytest
import redis.asyncio as aioredis
from structlog.testing import capture_logs

from quorum.api.app import create_app
from quorum.cache import FallbackCache, MemoryTTLCache, RedisCache, make_cache
from quorum.engine.runtime import RuntimeState
from tests.integration.service.conftest import make_settings
from tests.outages import PrivateRedis


@pytest.fixture(scope="module")
async def private_redis() -> AsyncIterator[PrivateRedis]:
    rd = PrivateRedis()
    await rd.start()
    try:
        yield rd
    finally:
        await rd.close()


async def until(predicate: Callable[[], Awaitable[bool]], timeout: float = 60.0, step: float = 0.1) -> None:
    """Poll `predicate` until true; fail after `timeout` seconds (a generous bound, not a speed test)."""
    deadline = asyncio.get_running_loop().time() + timeout
    while not await predicate():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"condition not reached within {timeout:g}s")
        await asyncio.sleep(step)


async def test_redis_outage_falls_back_to_memory_and_recovers(private_redis: PrivateRedis) -> None:
    await private_redis.start()
    changes: list[tuple[bool, str | None]] = []
    cache = FallbackCache(RedisCache(private_redis.url, "t1:"), min_backoff_s=0.2, max_backoff_s=1.0,
                          on_change=lambda c: changes.append((c.degraded, c.reason)))
    raw = aioredis.from_url(private_redis.url)
    try:
        await cache.set("before", "in-redis", 60)
        assert await raw.get("t1:before") == b"in-redis"
        assert await cache.get("before") == b"in-redis" and not cache.degraded

        with capture_logs() as logs:
            await private_redis.stop()
            await cache.set("during", "in-memory", 60)  # no exception: the call is served from memory
            assert cache.degraded and cache.since_ms is not None
            assert cache.reason == "redis unreachable (ConnectionError)"
            assert cache.detail == "redis unreachable (ConnectionError); in-process cache in use"
            for _ in range(5):
                assert await cache.get("during") == b"in-memory"
            assert await cache.get("before") is None  # Redis's copy is out of reach
            await cache.delete("during")
            assert await cache.get("during") is None
            assert await cache.ping() is True
            warnings = [e for e in logs if e["event"] == "cache.redis_unavailable"]
            assert len(warnings) == 1 and warnings[0]["reason"] == "redis unreachable (ConnectionError)"
            assert private_redis.url not in repr(logs)

            await cache.set("stale", "set-during-outage", 60)
            await private_redis.start()

            async def recovered() -> bool:
                return not cache.degraded

            await until(recovered)
        assert [e["event"] for e in logs].count("cache.redis_recovered") == 1
        assert changes == [(True, "redis unreachable (ConnectionError)"), (False, None)]
        assert await cache.get("stale") is None  # the memory copy was dropped on recovery
        await cache.set("after", "back-in-redis", 60)
        await raw.connection_pool.disconnect()  # our own client's connection died with the old server
        assert await raw.get("t1:after") == b"back-in-redis"  # written to the real Redis again
        assert await cache.get("after") == b"back-in-redis" and not cache.degraded
        # every get counted: 1 hit before, 5 hits + 2 misses during, 1 miss + 1 hit after
        assert (cache.hits, cache.misses) == (7, 3)
        assert cache.outages == 1
    finally:
        await raw.aclose()
        await cache.close()
        await private_redis.start()


async def test_idle_outage_is_noticed_by_ping_and_health_says_degraded(private_redis: PrivateRedis,
                                                                        pool: object) -> None:
    """No cache traffic at all: /health's probe alone notices the outage; 200 "degraded", not 503."""
    await private_redis.start()
    cache = make_cache(private_redis.url, "t2:")
    assert isinstance(cache, FallbackCache)
    runtime = RuntimeState(mode="paper", scan_interval_s=60.0)
    runtime.mark_scan()
    runtime.mark_market_data()
    app = create_app(make_settings(), runtime, pool, cache, check_ttl_s=0)  # type: ignore[arg-type]
    try:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as c:
            r = await c.get("/health")
            assert r.status_code == 200 and r.json()["status"] == "ok" and r.json()["degraded"] == []
            assert r.json()["components"]["cache"]["backend"] == "redis"
            await private_redis.stop()
            r = await c.get("/health")
            body = r.json()
            assert r.status_code == 200, body
            assert body["status"] == "degraded" and body["degraded"] == ["cache"] and body["failing"] == []
            component = body["components"]["cache"]
            assert component["ok"] is True and component["degraded"] is True
            assert component["detail"] == "redis unreachable (ConnectionError); in-process cache in use"
            assert component["backend"] == "memory" and component["since_ms"] > 0
            await private_redis.start()

            async def healthy_again() -> bool:
                return (await c.get("/health")).json()["status"] == "ok"

            await until(healthy_again)
    finally:
        await cache.close()


async def test_engine_cache_degraded_is_shown_even_when_the_api_cache_answers(pool: object) -> None:
    """The engine process has its own cache client: its fallback, mirrored in the runtime, also
    degrades /health; another failing component still turns it 503."""
    runtime = RuntimeState(mode="paper", scan_interval_s=60.0)
    runtime.mark_scan()
    runtime.mark_market_data()
    runtime.cache_degraded = "redis unreachable (TimeoutError)"
    app = create_app(make_settings(), runtime, pool, MemoryTTLCache(), check_ttl_s=0)  # type: ignore[arg-type]
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as c:
        r = await c.get("/health")
        assert r.status_code == 200 and r.json()["degraded"] == ["cache"]
        assert r.json()["components"]["cache"]["detail"].startswith("engine: redis unreachable (TimeoutError)")
        runtime.paused = True
        r = await c.get("/health")
        assert r.status_code == 503 and r.json()["status"] == "fail"
        assert r.json()["failing"] == ["breakers"] and r.json()["degraded"] == ["cache"]


async def test_service_cache_state_reaches_the_api_process_mirror(private_redis: PrivateRedis, pg_url: str) -> None:
    """`quorum run`'s own cache (the engine's) reports its fallback through the runtime state,
    which the API child mirrors."""
    from quorum.api.process import apply_snapshot, snapshot
    from quorum.api.runner import service_surface

    await private_redis.start()
    runtime = RuntimeState(mode="paper")
    settings = make_settings(redis_url=private_redis.url, telegram_bot_token=None)
    async with service_surface(settings, runtime, serve=False, database_url=pg_url,
                               stop=asyncio.Event()) as surface:
        assert isinstance(surface.cache, FallbackCache)
        await surface.cache.set("k", "v", 60)
        assert runtime.cache_degraded is None
        await private_redis.stop()
        assert await surface.cache.get("k") is None  # served (as a miss) from memory
        assert runtime.cache_degraded == "redis unreachable (ConnectionError)"
        mirror = RuntimeState()
        apply_snapshot(mirror, snapshot(runtime))
        assert mirror.cache_degraded == "redis unreachable (ConnectionError)"
        await private_redis.start()

        async def cleared() -> bool:
            return runtime.cache_degraded is None

        await until(cleared)


async def test_a_hung_redis_costs_one_socket_timeout_then_memory(private_redis: PrivateRedis) -> None:
    """A Redis that accepts nothing but never answers (SIGSTOP) must not hang model calls: the
    first call waits one socket timeout (2 s), then every call is served from memory."""
    await private_redis.start()
    cache = FallbackCache(RedisCache(private_redis.url, "t3:"), min_backoff_s=0.2, max_backoff_s=1.0)
    try:
        await cache.set("k", "v", 60)
        private_redis.freeze()
        try:
            assert await asyncio.wait_for(cache.get("k"), 10) is None  # bounded, never a hang
            assert cache.reason == "redis unreachable (TimeoutError)"
            await asyncio.wait_for(cache.set("k2", "v2", 60), 10)
            assert await asyncio.wait_for(cache.get("k2"), 10) == b"v2"
        finally:
            private_redis.thaw()

        async def recovered() -> bool:
            return not cache.degraded

        await until(recovered)
        assert await cache.get("k") == b"v"  # the same server, thawed: its data is still there
    finally:
        await cache.close()
