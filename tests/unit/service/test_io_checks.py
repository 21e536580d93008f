"""/health's database/cache probe: cached for ttl, then served stale while one background probe
refreshes it (no request waits on the database), and awaited again once too stale."""

import asyncio

from quorum.api.health import IoChecks


class SlowPool:
    """A pool whose `SELECT 1` waits until released; counts the probes."""

    def __init__(self) -> None:
        self.calls = 0
        self.release = asyncio.Event()
        self.answer = 1

    async def fetchval(self, _sql: str) -> int:
        self.calls += 1
        await self.release.wait()
        return self.answer


async def test_stale_answer_is_served_while_one_background_probe_refreshes():
    pool = SlowPool()
    io = IoChecks(ttl_s=0.05, stale_factor=100)
    pool.release.set()
    db, _ = await io.get(pool, None)  # first answer: awaited
    assert db.ok and pool.calls == 1
    pool.release.clear()
    pool.answer = 2  # the next probe will report an unexpected answer
    await asyncio.sleep(0.06)  # past the ttl
    served = await asyncio.wait_for(asyncio.gather(*(io.get(pool, None) for _ in range(50))), timeout=0.5)
    assert all(d.ok for d, _ in served), "requests are answered at once from the last result"
    await asyncio.sleep(0)
    assert pool.calls == 2, "exactly one background probe"
    pool.release.set()
    await asyncio.sleep(0.01)
    db, _ = await io.get(pool, None)
    assert not db.ok and db.detail == "unexpected answer"


async def test_too_stale_answer_is_not_served():
    pool = SlowPool()
    pool.release.set()
    io = IoChecks(ttl_s=0.01, stale_factor=2)
    assert (await io.get(pool, None))[0].ok
    pool.answer = 2
    await asyncio.sleep(0.03)  # past ttl × stale_factor: the request waits for a fresh probe
    db, _ = await io.get(pool, None)
    assert not db.ok and pool.calls == 2


async def test_zero_ttl_probes_on_every_request():
    pool = SlowPool()
    pool.release.set()
    io = IoChecks(ttl_s=0.0)
    for _ in range(3):
        await io.get(pool, None)
    assert pool.calls == 3
