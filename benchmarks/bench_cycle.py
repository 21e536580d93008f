"""Decision-cycle wall time at 100 symbols × 3 model voters answering in 3 s (target ≤ 10 s;
asked one symbol after another it was about 300 s).

Three OpenAI-compatible providers (MODELS=openai:gpt-4.1-mini,deepseek:deepseek-chat,qwen:qwen-plus,
each `<PROVIDER>_BASE_URL` pointing at its own wire-level fake in a child process — remote
providers do not share our CPU) answer every request with a valid vote after `--latency`
seconds and record how many requests they hold at once. The engine is wired by
`quorum.bootstrap.bootstrap` in paper mode on replayed files, against a throwaway Postgres
database (created here, dropped at the end): every decision, vote and proposal is persisted and
entries go through risk and the paper venue, exactly as in a running service. The shared data
has six real symbols: the 100 symbols reuse their real series under distinct names (BTC00USDT,
ETH01USDT, ...). Each run is one `Engine.step` at a fresh decision close (no vote cache); the
figure is the wall time of `run_cycle` inside it (snapshots, consensus for every symbol, risk,
execution, persistence). The same cycle with MAX_CONCURRENT_DECISIONS=1 — the old one symbol
after another — is measured on a few symbols and extrapolated to `--symbols`.
Prints JSON, then a one-line summary.

    uv run python benchmarks/bench_cycle.py [--symbols 100] [--latency 3] [--runs 3] [--sequential-symbols 4]
"""

from __future__ import annotations

import argparse
import asyncio
import copy
import hashlib
import itertools
import json
import multiprocessing as mp
import os
import statistics
import sys
import time
import uuid
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import asyncpg  # noqa: E402
import structlog  # noqa: E402
from tests.fakes.openai_server import FakeOpenAIServer, Reply  # noqa: E402
from tests.unit.ai.factory import vote_json  # noqa: E402

from quorum.backtest.request import parse_time  # noqa: E402
from quorum.bootstrap import bootstrap  # noqa: E402
from quorum.clock import ScaledClock, SimulatedClock  # noqa: E402
from quorum.config import Settings, load_settings  # noqa: E402
from quorum.market.feeds import ReplayMarketData  # noqa: E402
from quorum.store.db import create_pool  # noqa: E402
from quorum.store.migrate import apply_migrations  # noqa: E402

PROVIDERS = (("openai", "gpt-4.1-mini"), ("deepseek", "deepseek-chat"), ("qwen", "qwen-plus"))
REAL = ("BTCUSDT", "ETHUSDT", "SOLUSDT", "BNBUSDT", "XRPUSDT", "DOGEUSDT")
DATA = Path(os.environ.get("QUORUM_SHARED_DATA", ROOT.parent / "shared" / "data"))
ADMIN_URL = os.environ.get("BENCH_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
START = "2025-10-06"
DECISION_MS = 900_000
BUDGET_USD = 10_000.0  # no call is refused for budget: the figure is about concurrency


MIXED_ACTIONS = ("LONG", "LONG", "SHORT", "HOLD", "HOLD")


def _vote_for(body: dict[str, Any], latency: float, actions: tuple[str, ...] = MIXED_ACTIONS) -> Reply:
    """A valid vote for the symbol and price the prompt names; the action is a stable function
    of the symbol (one of `actions`: by default a mix of LONG, SHORT and HOLD), the same for
    every voter."""
    user = body["messages"][-1]["content"]
    symbol = user.split("Symbol: ", 1)[1].split("\n", 1)[0]
    price = float(user.split("Current price: ", 1)[1].split("\n", 1)[0])
    action = actions[hashlib.sha256(symbol.encode()).digest()[0] % len(actions)]
    return Reply(text=vote_json(action, 0.8, price=price, symbol=symbol), delay=latency)


def _serve(conn: Connection, latency: float, actions: tuple[str, ...] = MIXED_ACTIONS) -> None:
    """Child process: one fake OpenAI-compatible server per provider."""

    async def run() -> None:
        servers = [FakeOpenAIServer(lambda body: _vote_for(body, latency, actions)) for _ in PROVIDERS]
        for srv in servers:
            await srv.start()
        conn.send([srv.base_url for srv in servers])  # type: ignore[attr-defined]
        loop = asyncio.get_running_loop()
        while True:
            cmd = await loop.run_in_executor(None, conn.recv)
            if cmd == "stats":  # requests and peak in flight since the last "stats"
                conn.send([(len(srv.requests), srv.peak_in_flight) for srv in servers])
                for srv in servers:
                    srv.requests.clear()
                    srv.peak_in_flight = srv.in_flight
            else:
                break
        for srv in servers:
            await srv.stop()

    asyncio.run(run())


class Servers:
    def __init__(self, latency: float, actions: tuple[str, ...] = MIXED_ACTIONS) -> None:
        self.conn, child = mp.Pipe()
        self.proc = mp.Process(target=_serve, args=(child, latency, actions), daemon=True)
        self.proc.start()
        self.urls: list[str] = self.conn.recv()

    def stats(self) -> list[tuple[int, int]]:
        self.conn.send("stats")
        return [tuple(x) for x in self.conn.recv()]  # type: ignore[misc]

    def stop(self) -> None:
        self.conn.send("stop")
        self.proc.join(10)


def clone_market(real: ReplayMarketData, n: int, clock: SimulatedClock) -> tuple[ReplayMarketData, list[str]]:
    """`n` symbols reusing the six real series under distinct names (indicators shared, not recomputed)."""
    builders = {}
    for i in range(n):
        base = REAL[i % len(REAL)]
        name = f"{base[:-4]}{i:02d}USDT"
        b = copy.copy(real.builder(base))
        b.symbol = name
        builders[name] = b
    market = ReplayMarketData(DATA, clock, timeframes=real.timeframes, base_timeframe=real.base_timeframe,
                              builders=builders)
    return market, sorted(builders)


async def measure(pool: asyncpg.Pool, real: ReplayMarketData, servers: Servers, *, symbols: int, runs: int,
                  max_concurrent: int, account: str) -> dict[str, Any]:
    start = parse_time(START, "s")
    assert start is not None
    clock = SimulatedClock(start)
    real.clock = clock
    market, names = clone_market(real, symbols, clock)
    settings = load_settings(models=",".join(f"{p}:{m}" for p, m in PROVIDERS), symbols=names, min_voters=2,
                             max_concurrent_decisions=max_concurrent, daily_ai_budget_usd=BUDGET_USD,
                             consensus_deadline_seconds=120)
    app = await bootstrap(settings, pool=pool, mode="paper", data_dir=DATA, symbols=names, clock=clock,
                          market=market, start_ms=start, account=account)
    engine = app.engine
    await engine.start()
    servers.stats()  # reset the counters
    inner = engine.run_cycle
    walls: list[float] = []

    async def timed(t: int) -> None:
        t0 = time.perf_counter()
        await inner(t)
        walls.append(time.perf_counter() - t0)

    engine.run_cycle = timed  # type: ignore[method-assign]
    steps: list[float] = []
    seen: list[list[tuple[int, int]]] = []
    decisions0 = engine.stats.decisions
    for i in range(runs):
        t = start + (i + 1) * DECISION_MS
        await clock.sleep_until(t)
        t0 = time.perf_counter()
        await engine.step(t)
        steps.append(time.perf_counter() - t0)
        seen.append(servers.stats())
    decisions = engine.stats.decisions - decisions0
    stored = await pool.fetchval("SELECT count(*) FROM decisions d WHERE d.symbol = ANY($1::text[])", names)
    entries = engine.stats.entries
    await app.close()
    await app.consensus.close()
    return {"walls": walls, "steps": steps, "per_run_servers": seen, "decisions": decisions,
            "decisions_stored": int(stored), "entries": entries, "symbols": names}


async def measure_cadence(pool: asyncpg.Pool, real: ReplayMarketData, *, symbols: int, max_concurrent: int,
                          step_wall_s: float, cycles: int) -> dict[str, Any]:
    """The live arrangement: decision cycles in the background while the loop keeps stepping.
    A wall-anchored clock makes one 5m step last `step_wall_s` wall seconds; every step's start
    is recorded with whether a cycle was in flight, and with how many positions it managed."""
    start = parse_time(START, "s")
    assert start is not None
    speed = 300.0 / step_wall_s
    clock = ScaledClock(start - 1, time.time(), speed)
    real.clock = clock
    market, names = clone_market(real, symbols, clock)
    settings = load_settings(models=",".join(f"{p}:{m}" for p, m in PROVIDERS), symbols=names, min_voters=2,
                             max_concurrent_decisions=max_concurrent, daily_ai_budget_usd=BUDGET_USD,
                             consensus_deadline_seconds=120)
    app = await bootstrap(settings, pool=pool, mode="paper", data_dir=DATA, symbols=names, clock=clock,
                          market=market, start_ms=start, account="bench-cadence")
    engine = app.engine
    engine.concurrent_cycles = True  # as on live data: the cycle runs beside the loop
    await engine.start()
    inner = engine.step
    starts: list[tuple[float, bool, int]] = []

    async def timed(t: int) -> bool:
        in_flight = engine._cycle_task is not None and not engine._cycle_task.done()
        held = len(await app.executor.positions.open_positions())
        starts.append((time.perf_counter(), in_flight, held))
        return await inner(t)

    engine.step = timed  # type: ignore[method-assign]
    await engine.run(until_ms=start + cycles * DECISION_MS + 2 * 300_000)
    await engine._finish_cycle()
    await app.close()
    await app.consensus.close()
    gaps = [(b[0] - a[0], b[1] or a[1], b[2]) for a, b in itertools.pairwise(starts)]
    during = [g for g, cyc, _ in gaps if cyc]
    return {"nominal_step_wall_s": step_wall_s, "steps": len(starts),
            "steps_during_a_cycle": len(during),
            "step_gap_s_max_during_cycle": round(max(during), 3) if during else None,
            "step_gap_s_median_during_cycle": round(statistics.median(during), 3) if during else None,
            "step_gap_s_max_otherwise": round(max((g for g, cyc, _ in gaps if not cyc), default=0.0), 3),
            "positions_managed_per_step_max": max((h for _, _, h in gaps), default=0),
            "cycles_run": engine.stats.cycles, "cycles_skipped": engine.stats.cycles_skipped}


async def main() -> dict[str, Any]:
    ap = argparse.ArgumentParser()
    ap.add_argument("--symbols", type=int, default=100)
    ap.add_argument("--latency", type=float, default=3.0, help="seconds each fake voter takes to answer")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--max-concurrent-decisions", type=int,
                    default=Settings.model_fields["max_concurrent_decisions"].default, help="default: the setting's")
    ap.add_argument("--sequential-symbols", type=int, default=4,
                    help="symbols for the MAX_CONCURRENT_DECISIONS=1 figure (0: skip it)")
    ap.add_argument("--cadence-cycles", type=int, default=3,
                    help="decision periods of the live arrangement (cycles in the background; 0: skip it)")
    ap.add_argument("--step-wall", type=float, default=1.0, help="wall seconds per 5m step in the cadence run")
    args = ap.parse_args()
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(40))  # errors only: stdout is JSON
    servers = Servers(args.latency)
    name = f"quorum_bench_cycle_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(ADMIN_URL)
    await admin.execute(f'CREATE DATABASE "{name}"')
    url = ADMIN_URL.rpartition("/")[0] + "/" + name
    for (provider, _), base_url in zip(PROVIDERS, servers.urls, strict=True):
        os.environ[f"{provider.upper()}_API_KEY"] = "sk-bench"
        os.environ[f"{provider.upper()}_BASE_URL"] = base_url
    try:
        conn = await asyncpg.connect(url)
        await apply_migrations(conn)
        await conn.close()
        pool = await create_pool(url, min_size=2, max_size=10)  # as the service opens it
        try:
            t0 = time.perf_counter()
            real = ReplayMarketData(DATA, SimulatedClock(0), timeframes=["15m", "1h", "4h"], base_timeframe="5m",
                                    symbols=REAL)
            load_s = time.perf_counter() - t0
            conc = await measure(pool, real, servers, symbols=args.symbols, runs=args.runs,
                                 max_concurrent=args.max_concurrent_decisions, account="bench-concurrent")
            cadence = None
            if args.cadence_cycles:
                cadence = await measure_cadence(pool, real, symbols=args.symbols,
                                                max_concurrent=args.max_concurrent_decisions,
                                                step_wall_s=args.step_wall, cycles=args.cadence_cycles)
            seq = None
            if args.sequential_symbols:
                seq = await measure(pool, real, servers, symbols=args.sequential_symbols, runs=1, max_concurrent=1,
                                    account="bench-sequential")
        finally:
            await pool.close()
    finally:
        servers.stop()
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()
    median = statistics.median(conc["walls"])
    peaks = {f"{p}:{m}": max(run[k][1] for run in conc["per_run_servers"]) for k, (p, m) in enumerate(PROVIDERS)}
    requests = {f"{p}:{m}": [run[k][0] for run in conc["per_run_servers"]] for k, (p, m) in enumerate(PROVIDERS)}
    out: dict[str, Any] = {
        "benchmark": "decision_cycle",
        "symbols": args.symbols,
        "symbols_note": (f"the shared data has {len(REAL)} real symbols; the {args.symbols} symbols reuse their real "
                         f"series under distinct names ({', '.join(conc['symbols'][:3])}, ...)"),
        "voters": [f"{p}:{m}" for p, m in PROVIDERS],
        "voter_latency_s": args.latency,
        "wire_format": "OpenAI chat completions (official openai SDK → fake servers in a child process)",
        "max_concurrent_decisions": args.max_concurrent_decisions,
        "model_max_concurrency": Settings.model_fields["model_max_concurrency"].default,
        "daily_ai_budget_usd": BUDGET_USD,
        "runs": args.runs,
        "cycle_wall_s": [round(w, 3) for w in conc["walls"]],
        "cycle_wall_s_median": round(median, 3),
        "step_wall_s_median": round(statistics.median(conc["steps"]), 3),
        "waves_floor_s": round(-(-args.symbols // args.max_concurrent_decisions) * args.latency, 1),
        "target_s": 10.0,
        "meets_target": median <= 10.0,
        "peak_concurrent_requests_per_server": peaks,
        "requests_per_run_per_server": requests,
        "decisions": conc["decisions"],
        "decisions_stored_in_postgres": conc["decisions_stored"],
        "entries": conc["entries"],
        "data_load_s": round(load_s, 2),
    }
    if cadence is not None:
        out["position_checks_during_cycles"] = cadence
    if seq is not None:
        per_symbol = seq["walls"][0] / args.sequential_symbols
        out["sequential"] = {
            "how": "the same cycle with MAX_CONCURRENT_DECISIONS=1 (one symbol after another, as before)",
            "symbols": args.sequential_symbols,
            "cycle_wall_s": round(seq["walls"][0], 3),
            "per_symbol_s": round(per_symbol, 3),
            "extrapolated_cycle_wall_s": round(per_symbol * args.symbols, 1),
        }
    return out


if __name__ == "__main__":
    result = asyncio.run(main())
    print(json.dumps(result, indent=2))
    seq = result.get("sequential")
    before = f"; one symbol at a time ≈ {seq['extrapolated_cycle_wall_s']} s" if seq else ""
    print(f"decision cycle: {result['symbols']} symbols × 3 voters at {result['voter_latency_s']:g} s → "
          f"{result['cycle_wall_s_median']} s median wall (target ≤ 10 s){before}; peak in flight per provider "
          f"{sorted(result['peak_concurrent_requests_per_server'].values())}" + (
              "; steps while a cycle ran every {step_gap_s_median_during_cycle} s median, "
              "{step_gap_s_max_during_cycle} s max (nominal {nominal_step_wall_s} s)"
              .format(**result["position_checks_during_cycles"])
              if "position_checks_during_cycles" in result else ""))
