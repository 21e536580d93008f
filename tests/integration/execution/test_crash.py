"""Crash test: a paper session is SIGKILLed at random points while it opens, protects, reduces
and closes positions; after each kill, reconciliation must leave 0 duplicate orders, 0
positions without a stop, 0 lost fills, and the record must match the venue.

The number of kill points is CRASH_KILLS (default 12, ~1 s each) for the paper session and
CRASH_KILLS_LIVE (default 1, ~9 s each: the child imports ccxt) for a live session against the
fake Binance server; benchmarks/bench_execution_crash.py runs more of both."""

from __future__ import annotations

import asyncio
import os
import random
import signal
import sys
from pathlib import Path

from quorum.execution.reconcile import Reconciler

from .crash_session import ACCOUNT, DbClock, build
from .helpers import invariants

SCRIPT = Path(__file__).with_name("crash_session.py")
ROOT = Path(__file__).resolve().parents[3]


async def _kill_after_ready(args: list[str], delay_s: float, ready_timeout_s: float) -> str:
    """Start a session script, wait for its READY line, let it run `delay_s`, SIGKILL it.
    Returns its last printed line."""
    env = dict(os.environ, PYTHONPATH=str(ROOT / "src"))
    proc = await asyncio.create_subprocess_exec(
        sys.executable, *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=env,
        cwd=str(ROOT))
    assert proc.stdout is not None
    while True:
        line = (await asyncio.wait_for(proc.stdout.readline(), timeout=ready_timeout_s)).decode().strip()
        if not line:
            err = await proc.stderr.read() if proc.stderr else b""
            raise AssertionError(f"{Path(args[0]).name} exited before READY: {err.decode()[-2000:]}")
        if line == "READY":
            break
    await asyncio.sleep(delay_s)
    proc.send_signal(signal.SIGKILL)
    out, _ = await proc.communicate()
    lines = out.decode().strip().splitlines()
    return lines[-1] if lines else ""


async def run_kill_cycle(url: str, seed: int, delay_s: float) -> str:
    """The paper session: start, wait for READY, run `delay_s`, SIGKILL. Returns the last line."""
    return await _kill_after_ready([str(SCRIPT), url, str(seed)], delay_s, ready_timeout_s=30)


async def check_after_restart(pool) -> dict:
    clock = DbClock()
    clock.t = int(await pool.fetchval("SELECT max(last_time_ms) FROM paper_symbols WHERE account=$1", ACCOUNT))
    _ex, executor = build(pool, clock)
    report = await Reconciler(executor).run()
    assert report.ok, report.error
    inv = await invariants(pool, executor, account=ACCOUNT)
    inv["corrections"] = len(report.corrections)
    return inv


async def test_sigkill_at_random_points_leaves_nothing_broken(pool, pg_url):
    kills = int(os.environ.get("CRASH_KILLS", "12"))
    rng = random.Random(20_260_101)
    corrections = 0
    steps = []
    for k in range(kills):
        last = await run_kill_cycle(pg_url, seed=k, delay_s=rng.uniform(0.02, 0.6))
        steps.append(last)
        inv = await check_after_restart(pool)
        corrections += inv.pop("corrections")
        assert inv == {"unprotected": 0, "duplicate_stops": 0, "mismatched": 0, "lost_fills": 0,
                       "duplicate_entries": 0}, (k, last, inv)
    # the sessions really traded: orders, fills and closed positions exist
    assert await pool.fetchval("SELECT count(*) FROM fills") > kills
    assert await pool.fetchval("SELECT count(*) FROM positions WHERE status='closed'") > 0
    # every order that reached the venue is in our record (stored before it was sent)
    missing = await pool.fetchval(
        """SELECT count(*) FROM paper_orders p WHERE p.account=$1 AND p.client_order_id NOT LIKE 'liquidation-%'
             AND NOT EXISTS (SELECT 1 FROM orders o WHERE o.client_order_id = p.client_order_id)""", ACCOUNT)
    assert missing == 0
    print(f"crash test: {kills} kill points, {corrections} reconciliation corrections, last lines {steps}")


LIVE_SCRIPT = Path(__file__).with_name("crash_session_live.py")


async def _kill_live(pg_url: str, fake_url: str, seed: int, delay_s: float) -> str:
    return await _kill_after_ready([str(LIVE_SCRIPT), pg_url, fake_url, str(seed)], delay_s, ready_timeout_s=60)


async def live_violations(pool, fake) -> dict:
    """Invariant violations between the fake Binance venue and the record (all should be 0)."""
    out = {"unprotected": 0, "duplicate_stops": 0, "mismatched": 0, "lost_fills": 0, "duplicate_entries": 0}
    for sym, p in fake.positions.items():
        stops = [a for a in fake.algo.values() if a["symbol"] == sym and a["algoStatus"] == "NEW"
                 and a["orderType"] == "STOP_MARKET"]
        out["unprotected"] += not any(abs(float(a["quantity"]) - abs(p["amt"])) < 1e-9 for a in stops)
        out["duplicate_stops"] += max(len(stops) - 1, 0)
    rows = await pool.fetch("SELECT symbol, quantity FROM positions WHERE mode='live' AND status='open'")
    db = {r["symbol"]: float(r["quantity"]) for r in rows}
    venue = {s: abs(p["amt"]) for s, p in fake.positions.items()}
    out["mismatched"] = sum(1 for s in set(db) | set(venue)
                            if s not in db or s not in venue or abs(db[s] - venue[s]) > 1e-9)
    recorded = {r["trade_id"] for r in await pool.fetch("SELECT trade_id FROM fills WHERE mode='live'")}
    out["lost_fills"] = sum(1 for t in fake.trades if str(t["id"]) not in recorded)
    entries: dict[str, int] = {}
    for o in fake.orders.values():
        if o["clientOrderId"].startswith("qlE-"):
            key = o["clientOrderId"].rsplit("-", 1)[0]
            entries[key] = entries.get(key, 0) + 1
    out["duplicate_entries"] = sum(1 for n in entries.values() if n > 1)
    return out


async def test_sigkill_live_session_against_fake_binance(pool, pg_url):
    """The same with the Binance adapter (real ccxt client, fake venue in this process): the
    killed session's in-flight requests are resolved by client id; nothing is duplicated, nothing
    is left unprotected. Each child imports ccxt (~8 s CPU here), so the default is 1 kill point
    (CRASH_KILLS_LIVE); benchmarks/bench_execution_crash.py --live-kills runs more."""
    from quorum.execution.reconcile import Reconciler as R
    from tests.fakes.binance_trading import FakeBinanceTrading

    from .crash_session_live import build as build_live

    fake = FakeBinanceTrading(wallet=100_000.0)
    url = await fake.start()
    kills = int(os.environ.get("CRASH_KILLS_LIVE", "1"))
    rng = random.Random(77)
    ex, executor = build_live(pool, url)
    try:
        for k in range(kills):
            last = await _kill_live(pg_url, url, seed=k, delay_s=rng.uniform(0.2, 0.8))
            report = await R(executor).run()
            assert report.ok, report.error
            inv = await live_violations(pool, fake)
            assert not any(inv.values()), (k, last, inv)
        assert fake.trades, "the sessions traded"
    finally:
        await ex.close()
        await fake.stop()
