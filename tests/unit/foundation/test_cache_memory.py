import pytest

from quorum.cache import MemoryTTLCache, make_cache


class FakeClock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


async def test_ttl_expiry_and_counters():
    clock = FakeClock()
    cache = MemoryTTLCache(clock=clock)
    await cache.set("k", "v", ttl_seconds=10)
    assert await cache.get("k") == b"v"
    clock.t += 9.99
    assert await cache.get("k") == b"v"
    clock.t += 0.02
    assert await cache.get("k") is None
    assert (cache.hits, cache.misses) == (2, 1)


async def test_lru_bound_and_delete():
    cache = MemoryTTLCache(max_entries=2)
    await cache.set("a", b"1", 60)
    await cache.set("b", b"2", 60)
    await cache.get("a")
    await cache.set("c", b"3", 60)
    assert await cache.get("b") is None
    assert await cache.get("a") == b"1"
    await cache.delete("a")
    assert await cache.get("a") is None


async def test_non_positive_ttl_is_an_error():
    with pytest.raises(ValueError, match="ttl_seconds"):
        await MemoryTTLCache().set("k", "v", 0)


def test_make_cache_without_url_is_memory():
    assert isinstance(make_cache(None), MemoryTTLCache)
