"""Consensus wall time with three fake providers answering in 200/400/800 ms (target: the
slowest + 20 ms, i.e. the fan-out is parallel), and the cached path (target ≤ 2 ms; memory
cache, and Redis when reachable). The official openai SDK talks to wire-level fakes on
127.0.0.1. Prints JSON, then a one-line summary.

    uv run python benchmarks/bench_consensus.py [--runs 5] [--cached-runs 300]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing as mp
import statistics
import sys
import time
from multiprocessing.connection import Connection
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.fakes.openai_server import FakeOpenAIServer, Reply  # noqa: E402
from tests.unit.ai.factory import context, snapshot, vote_json  # noqa: E402

from quorum.ai.analysts import ModelAnalyst  # noqa: E402
from quorum.ai.consensus import ConsensusEngine  # noqa: E402
from quorum.ai.openai_provider import OpenAIChatClient  # noqa: E402
from quorum.ai.prompts import PromptSet  # noqa: E402
from quorum.ai.retry import RetryPolicy  # noqa: E402
from quorum.cache import Cache, MemoryTTLCache, RedisCache  # noqa: E402
from quorum.domain.consensus import ConsensusRules  # noqa: E402

LATENCIES = (0.2, 0.4, 0.8)


def _serve(conn: Connection) -> None:
    """Child process: the three fake providers (remote providers do not share our CPU)."""

    async def run() -> None:
        servers = [FakeOpenAIServer(Reply(text=vote_json("LONG", 0.8), delay=lat)) for lat in LATENCIES]
        for srv in servers:
            await srv.start()
        conn.send([srv.base_url for srv in servers])
        loop = asyncio.get_running_loop()
        while True:
            cmd = await loop.run_in_executor(None, conn.recv)
            if cmd == "count":
                conn.send(sum(len(srv.requests) for srv in servers))
            else:
                break
        for srv in servers:
            await srv.stop()

    asyncio.run(run())


class Servers:
    def __init__(self) -> None:
        self.conn, child = mp.Pipe()
        self.proc = mp.Process(target=_serve, args=(child,), daemon=True)
        self.proc.start()
        self.urls: list[str] = self.conn.recv()

    def requests(self) -> int:
        self.conn.send("count")
        return int(self.conn.recv())

    def stop(self) -> None:
        self.conn.send("stop")
        self.proc.join(5)


def engine_for(urls: list[str], cache: Cache | None) -> ConsensusEngine:
    prompts = PromptSet()
    analysts = [
        ModelAnalyst(OpenAIChatClient("openai", f"fake-{int(lat * 1000)}ms", api_key="sk-bench", base_url=url,
                                      timeout_seconds=10, temperature=0.2), prompts,
                     retry=RetryPolicy(attempts=1), cache=cache, cache_ttl_seconds=900)
        for url, lat in zip(urls, LATENCIES, strict=True)
    ]
    return ConsensusEngine(analysts, ConsensusRules(2, 0.66, 0.6), deadline_seconds=10)


async def cached_path(servers: Servers, cache: Cache, runs: int) -> dict[str, float]:
    engine = engine_for(servers.urls, cache)
    ctx = context(snapshot(trend="up"))
    before = servers.requests()
    await engine.decide(ctx)  # prime
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        r = await engine.decide(ctx)
        times.append((time.perf_counter() - t0) * 1000)
        assert all(rec.cached for rec in r.records)
    assert servers.requests() == before + 3, "cached path made HTTP requests"
    times.sort()
    return {"median_ms": round(statistics.median(times), 3), "p95_ms": round(times[int(0.95 * len(times)) - 1], 3),
            "max_ms": round(times[-1], 3), "runs": runs}


async def main() -> dict[str, object]:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=15)
    ap.add_argument("--cached-runs", type=int, default=300)
    args = ap.parse_args()
    servers = Servers()
    try:
        engine = engine_for(servers.urls, None)
        await engine.decide(context(snapshot(time_ms=1)))  # warm up connections and SDK imports
        slow = engine.analysts[-1]
        alone = []
        for i in range(args.runs):  # the slowest voter on its own: the floor for the fan-out
            t0 = time.perf_counter()
            await slow.vote(context(snapshot(trend="up", time_ms=5_000 + i)))
            alone.append((time.perf_counter() - t0) * 1000)
        walls = []
        for i in range(args.runs):
            t0 = time.perf_counter()
            r = await engine.decide(context(snapshot(trend="up", time_ms=10_000 + i)))
            walls.append((time.perf_counter() - t0) * 1000)
            assert r.proposal.valid_votes == 3
        slowest_ms = max(LATENCIES) * 1000
        mem = await cached_path(servers, MemoryTTLCache(), args.cached_runs)
        redis_figures: dict[str, float] | str
        rc = RedisCache("redis://127.0.0.1:6379/15", namespace=f"quorum-bench:{time.time_ns()}:")
        if await rc.ping():
            redis_figures = await cached_path(servers, rc, args.cached_runs)
        else:
            redis_figures = "redis unreachable"
        await rc.close()
    finally:
        servers.stop()
    median_wall = statistics.median(walls)
    return {
        "benchmark": "consensus",
        "provider_latencies_ms": [int(x * 1000) for x in LATENCIES],
        "fanout": {
            "runs": args.runs,
            "wall_ms_median": round(median_wall, 2),
            "wall_ms_max": round(max(walls), 2),
            "sum_of_latencies_ms": int(sum(LATENCIES) * 1000),
            "slowest_voter_alone_ms_median": round(statistics.median(alone), 2),
            "overhead_over_slowest_alone_ms": round(median_wall - statistics.median(alone), 2),
            "overhead_over_slowest_ms_median": round(median_wall - slowest_ms, 2),
            "target": "wall <= slowest + 20 ms",
            "meets_target": median_wall <= slowest_ms + 20,
        },
        "cached_memory": {**mem, "target_ms": 2.0, "meets_target": mem["median_ms"] <= 2.0},
        "cached_redis": redis_figures,
    }


if __name__ == "__main__":
    out = asyncio.run(main())
    print(json.dumps(out, indent=2))
    f, m = out["fanout"], out["cached_memory"]
    print(f"consensus: 3 voters (200/400/800 ms) → {f['wall_ms_median']} ms median wall "  # type: ignore[index]
          f"(+{f['overhead_over_slowest_ms_median']} ms over slowest); cached {m['median_ms']} ms median")  # type: ignore[index]
