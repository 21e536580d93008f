"""The cache seam: one interface, three implementations. Values are bytes or str; callers
serialise. Hits and misses are counted.

- `MemoryTTLCache`: in-process, when REDIS_URL is unset;
- `RedisCache`: Redis itself (short socket timeouts: a call never hangs);
- `FallbackCache`: what `make_cache` returns when REDIS_URL is set: Redis while it answers, the
  in-process cache from the first Redis error until a background probe (capped backoff) finds
  Redis again. Its `degraded` / `reason` / `since_ms` feed /health ("degraded", not failing).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Protocol, cast, runtime_checkable

import structlog

log = structlog.get_logger(__name__)


@runtime_checkable
class Cache(Protocol):
    hits: int
    misses: int

    async def get(self, key: str) -> bytes | None: ...
    async def set(self, key: str, value: bytes | str, ttl_seconds: float) -> None: ...
    async def delete(self, key: str) -> None: ...
    async def ping(self) -> bool: ...
    async def close(self) -> None: ...


class MemoryTTLCache:
    """In-process cache with per-key expiry and an LRU bound. `clock` is injectable for tests."""

    def __init__(self, max_entries: int = 50_000, clock: Callable[[], float] = time.monotonic) -> None:
        self._data: OrderedDict[str, tuple[float, bytes]] = OrderedDict()
        self._max = max_entries
        self._clock = clock
        self.hits = 0
        self.misses = 0

    async def get(self, key: str) -> bytes | None:
        item = self._data.get(key)
        if item is None or item[0] <= self._clock():
            if item is not None:
                del self._data[key]
            self.misses += 1
            return None
        self._data.move_to_end(key)
        self.hits += 1
        return item[1]

    async def set(self, key: str, value: bytes | str, ttl_seconds: float) -> None:
        if ttl_seconds <= 0:
            raise ValueError("ttl_seconds must be positive")
        data = value.encode() if isinstance(value, str) else value
        self._data[key] = (self._clock() + ttl_seconds, data)
        self._data.move_to_end(key)
        while len(self._data) > self._max:
            self._data.popitem(last=False)

    async def delete(self, key: str) -> None:
        self._data.pop(key, None)

    async def ping(self) -> bool:
        return True

    def clear(self) -> None:
        self._data.clear()

    async def close(self) -> None:
        self.clear()


class RedisCache:
    """Redis-backed cache; every key is prefixed with `namespace`."""

    def __init__(self, url: str, namespace: str = "quorum:") -> None:
        import redis.asyncio as aioredis
        from redis.asyncio.retry import Retry
        from redis.backoff import NoBackoff
        from redis.exceptions import ConnectionError as RedisConnectionError

        # one immediate retry on a fresh connection absorbs a pooled connection that a Redis
        # restart closed; timeouts are not retried (a call waits at most one socket timeout)
        self._redis = aioredis.from_url(url, socket_timeout=2.0, socket_connect_timeout=2.0,
                                        retry=Retry(NoBackoff(), 1, (RedisConnectionError,)))
        self._ns = namespace
        self.hits = 0
        self.misses = 0

    async def get(self, key: str) -> bytes | None:
        value = cast("bytes | None", await self._redis.get(self._ns + key))  # decode_responses is off
        if value is None:
            self.misses += 1
        else:
            self.hits += 1
        return value

    async def set(self, key: str, value: bytes | str, ttl_seconds: float) -> None:
        if ttl_seconds <= 0:
            raise ValueError("ttl_seconds must be positive")
        await self._redis.set(self._ns + key, value, px=int(ttl_seconds * 1000))

    async def delete(self, key: str) -> None:
        await self._redis.delete(self._ns + key)

    async def ping(self) -> bool:
        try:
            await self.probe()
        except Exception:
            return False
        return True

    async def probe(self) -> None:
        """PING; raises whatever the client raised when Redis does not answer."""
        if not await self._redis.ping():
            raise ConnectionError("PING was not answered with PONG")

    async def reset(self) -> None:
        """Drop every pooled connection (after an outage they may all be dead)."""
        await self._redis.connection_pool.disconnect()

    async def close(self) -> None:
        await self._redis.aclose()


PROBE_TIMEOUT_S = 2.5  # the background probe's bound (the socket timeouts are 2 s)


class FallbackCache:
    """Redis while it answers; the in-process cache while it does not.

    The first Redis error on get/set/delete/ping switches to `memory` at once (the call still
    succeeds, from memory), logs one warning naming the reason (the exception class only: an
    error text could carry the URL) and starts one background probe that PINGs Redis after 1 s,
    2 s, 4 s … up to `max_backoff_s` between tries. When Redis answers, one line is logged, the
    memory copy is dropped (it may hold values Redis never saw) and calls go to Redis again.
    `on_change(self)` is called on every switch (the service mirrors it into the runtime state).
    """

    def __init__(self, redis: RedisCache, memory: MemoryTTLCache | None = None, *, min_backoff_s: float = 1.0,
                 max_backoff_s: float = 30.0, ping_timeout_s: float = 0.5,
                 on_change: Callable[[FallbackCache], None] | None = None) -> None:
        self.redis = redis
        self.memory = memory or MemoryTTLCache()
        self.min_backoff_s = min_backoff_s
        self.max_backoff_s = max_backoff_s
        self.ping_timeout_s = ping_timeout_s
        self.on_change = on_change
        self.hits = 0
        self.misses = 0
        self.degraded = False
        self.reason: str | None = None
        self.since_ms: int | None = None  # wall ms the fallback began
        self.outages = 0
        self._probe_task: asyncio.Task[None] | None = None
        self._closed = False

    @property
    def detail(self) -> str:
        """One line for /health."""
        if not self.degraded:
            return "ok"
        return f"{self.reason}; in-process cache in use"

    def _degrade(self, exc: BaseException) -> None:
        if self.degraded or self._closed:
            return
        self.degraded = True
        self.reason = f"redis unreachable ({type(exc).__name__})"
        self.since_ms = int(time.time() * 1000)
        self.outages += 1
        log.warning("cache.redis_unavailable", reason=self.reason, fallback="in-process cache",
                    retry_in_s=self.min_backoff_s)
        self._notify()
        self._probe_task = asyncio.get_running_loop().create_task(self._probe_until_back())

    def _notify(self) -> None:
        if self.on_change is not None:
            try:
                self.on_change(self)
            except Exception as exc:  # a listener must never break a cache call
                log.warning("cache.listener_failed", error=type(exc).__name__)

    async def _probe_until_back(self) -> None:
        delay = self.min_backoff_s
        while not self._closed:
            await asyncio.sleep(delay)
            try:
                await self.redis.reset()
                await asyncio.wait_for(self.redis.probe(), PROBE_TIMEOUT_S)
            except Exception:
                delay = min(delay * 2, self.max_backoff_s)
                continue
            down_s = (time.time() * 1000 - (self.since_ms or 0)) / 1000
            self.degraded, self.reason, self.since_ms = False, None, None
            self.memory.clear()  # values set meanwhile never reached Redis: drop them
            log.info("cache.redis_recovered", down_s=round(down_s, 1))
            self._notify()
            return

    async def get(self, key: str) -> bytes | None:
        value: bytes | None = None
        if not self.degraded:
            try:
                value = await self.redis.get(key)
            except Exception as exc:
                self._degrade(exc)
        if self.degraded:
            value = await self.memory.get(key)
        if value is None:
            self.misses += 1
        else:
            self.hits += 1
        return value

    async def set(self, key: str, value: bytes | str, ttl_seconds: float) -> None:
        if ttl_seconds <= 0:
            raise ValueError("ttl_seconds must be positive")
        if not self.degraded:
            try:
                await self.redis.set(key, value, ttl_seconds)
            except Exception as exc:
                self._degrade(exc)
        if self.degraded:
            await self.memory.set(key, value, ttl_seconds)

    async def delete(self, key: str) -> None:
        await self.memory.delete(key)  # also here: a value set during an outage must not outlive it
        if not self.degraded:
            try:
                await self.redis.delete(key)
            except Exception as exc:
                self._degrade(exc)

    async def ping(self) -> bool:
        """True: the cache works (from Redis, or from memory while degraded). A Redis that does
        not answer within `ping_timeout_s` degrades it, so /health notices an idle outage."""
        if not self.degraded:
            try:
                await asyncio.wait_for(self.redis.probe(), self.ping_timeout_s)
            except Exception as exc:
                self._degrade(exc)
        return True

    async def close(self) -> None:
        self._closed = True
        if self._probe_task is not None:
            self._probe_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._probe_task
        await self.memory.close()
        await self.redis.close()


def make_cache(redis_url: str | None, namespace: str = "quorum:", *,
               on_change: Callable[[FallbackCache], None] | None = None) -> Cache:
    """With a REDIS_URL: Redis with the in-process cache as its fallback (`FallbackCache`);
    without one: the in-process cache alone (logged)."""
    if redis_url:
        log.info("cache.redis", namespace=namespace, fallback="in-process cache while Redis is unreachable")
        return FallbackCache(RedisCache(redis_url, namespace), on_change=on_change)
    log.info("cache.memory", reason="REDIS_URL unset")
    return MemoryTTLCache()
