"""Crash-recovery soak: SIGKILL a paper trading session at many random points and check, after
every restart, that reconciliation leaves 0 duplicate orders, 0 positions without a stop and
0 lost fills (the same check as tests/integration/execution/test_crash.py, more kill points).

Creates a throwaway database on TEST_DATABASE_URL's server (default postgres@127.0.0.1),
drops it afterwards. Prints JSON, then a one-line summary.

    uv run python benchmarks/bench_execution_crash.py [--kills 60] [--seed 7] [--live-kills 10]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import sys
import time
import uuid
from pathlib import Path

import asyncpg

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "src"))

from tests.integration.execution.test_crash import (  # noqa: E402
    _kill_live,
    check_after_restart,
    live_violations,
    run_kill_cycle,
)

from quorum.store.db import create_pool  # noqa: E402
from quorum.store.migrate import apply_migrations  # noqa: E402

ADMIN = os.environ.get("TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres")


async def live_soak(pool: asyncpg.Pool, url: str, kills: int, rng: random.Random) -> dict[str, object]:
    from tests.fakes.binance_trading import FakeBinanceTrading
    from tests.integration.execution.crash_session_live import build

    from quorum.execution.reconcile import Reconciler

    fake = FakeBinanceTrading(wallet=100_000.0)
    fake_url = await fake.start()
    ex, executor = build(pool, fake_url)
    violations = []
    try:
        for k in range(kills):
            last = await _kill_live(url, fake_url, seed=k, delay_s=rng.uniform(0.2, 1.0))
            report = await Reconciler(executor).run()
            inv = await live_violations(pool, fake)
            if not report.ok or any(inv.values()):
                violations.append({"kill": k, "last_line": last, "reconcile_error": report.error, **inv})
    finally:
        await ex.close()
        await fake.stop()
    return {"live_kill_points": kills, "live_violations": violations, "live_trades": len(fake.trades)}


async def main(kills: int, seed: int, live_kills: int = 0) -> dict[str, object]:
    name = f"quorum_crash_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(ADMIN)
    await admin.execute(f'CREATE DATABASE "{name}"')
    url = ADMIN.rpartition("/")[0] + "/" + name
    rng = random.Random(seed)
    violations: list[dict[str, object]] = []
    corrections = 0
    t0 = time.perf_counter()
    try:
        conn = await asyncpg.connect(url)
        await apply_migrations(conn)
        await conn.close()
        pool = await create_pool(url, min_size=1, max_size=4)
        for k in range(kills):
            last = await run_kill_cycle(url, seed=seed * 1000 + k, delay_s=rng.uniform(0.02, 0.8))
            inv = await check_after_restart(pool)
            corrections += int(inv.pop("corrections"))
            if any(inv.values()):
                violations.append({"kill": k, "last_line": last, **inv})
        live = await live_soak(pool, url, live_kills, rng) if live_kills else {}
        fills = await pool.fetchval("SELECT count(*) FROM fills")
        closed = await pool.fetchval("SELECT count(*) FROM positions WHERE status='closed'")
        orders = await pool.fetchval("SELECT count(*) FROM orders")
        await pool.close()
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()
    return {"kill_points": kills, "violations": violations, "reconciliation_corrections": corrections,
            "orders": orders, "fills": fills, "closed_positions": closed,
            "seconds": round(time.perf_counter() - t0, 1), **live}


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--kills", type=int, default=60)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--live-kills", type=int, default=0, help="also kill a live session on the fake Binance")
    args = ap.parse_args()
    out = asyncio.run(main(args.kills, args.seed, args.live_kills))
    print(json.dumps(out, indent=2))
    print(f"crash soak: {out['kill_points']} kill points, {len(out['violations'])} violations, "  # type: ignore[arg-type]
          f"{out['reconciliation_corrections']} corrections, {out['seconds']} s")
