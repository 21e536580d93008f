"""The cache seam: one interface, two implementations (Redis, or an in-process TTL cache when
REDIS_URL is unset). Values are bytes or str; callers serialise. Hits and misses are counted."""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Protocol, runtime_checkable

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

    async def close(self) -> None:
        self._data.clear()


class RedisCache:
    """Redis-backed cache; every key is prefixed with `namespace`."""

    def __init__(self, url: str, namespace: str = "quorum:") -> None:
        import redis.asyncio as aioredis

        self._redis = aioredis.from_url(url, socket_timeout=2.0, socket_connect_timeout=2.0)
        self._ns = namespace
        self.hits = 0
        self.misses = 0

    async def get(self, key: str) -> bytes | None:
        value: bytes | None = await self._redis.get(self._ns + key)
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
            return bool(await self._redis.ping())
        except Exception:
            return False

    async def close(self) -> None:
        await self._redis.aclose()


def make_cache(redis_url: str | None, namespace: str = "quorum:") -> Cache:
    """RedisCache when a URL is configured, otherwise the in-process cache (logged)."""
    if redis_url:
        log.info("cache.redis", namespace=namespace)
        return RedisCache(redis_url, namespace)
    log.info("cache.memory", reason="REDIS_URL unset")
    return MemoryTTLCache()
