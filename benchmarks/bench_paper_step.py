"""Postgres round trips and wall time of one paper-engine step, at 3, 30 and 100 symbols, flat
and with positions (goals at 100 symbols: ≤ 5 round trips per flat step, ≤ 50 ms median step).

A step is one `await engine.step(t)` at a 5m execution-bar close t (EXECUTION_TIMEFRAME),
including its decision cycle when t also closes a DECISION_TIMEFRAME (15m) bar: snapshots,
consensus for every symbol, risk, execution, persistence. Steps at decision closes, at the other
closes and all together are reported apart. The engine is wired as `bench_cycle.py` wires it
(from which the set-up is imported): `quorum.bootstrap.bootstrap` in paper mode on the shared
data (six real series cloned under distinct names up to `--symbols`), a throwaway Postgres
database per run (created, migrated, dropped), three OpenAI-compatible voters answering at once
from fake servers in a child process (no vote cache), a SimulatedClock moved to t before each
step. Every configuration runs the same settings; only the votes differ:

- flat: every vote HOLD (MODELS are keyed, so no rules analyst votes): no position, no order;
- positions: a stable LONG/SHORT mix at confidence 0.8 (stop 2 %, target 4 %), and limits raised
  so every symbol can open at the first decision close (see SETTINGS); the measured steps then
  manage the held positions (venue bars, funding, stops, trailing) on every step.

The pool is opened as the service opens it (`create_pool(url, min_size=2, max_size=10)`), its
URL pointed at a counting proxy (`tests/fakes/pg_wire.py`): every Sync, Flush after Parse/
Describe (asyncpg's prepare) and simple Query is one round trip, the pool's reset query on each
release (if the pool resets connections) included; each is attributed to its SQL. The proxy
shares the event loop and adds a hop per round trip, so the step wall times come from a second,
identical run with the pool on Postgres directly (same data, votes and steps, fresh database);
the proxied times are reported too. `--warmup` steps (two decision closes: entries, caches,
prepared statements) precede the `--steps` measured ones. Of a decision step, the time spent in
`_gather_consensus` (votes from the fakes over HTTP, each decision's transaction) is reported
too. Monitoring ticks (1m on live data) do not occur in a replay, whose monitor timeframe is the
execution timeframe: they are not measured. Prints JSON, then a one-line summary.

    uv run python benchmarks/bench_paper_step.py [--symbols 3,30,100] [--steps 16] [--modes flat,positions]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import statistics
import sys
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import asyncpg  # noqa: E402
import structlog  # noqa: E402
from benchmarks.bench_cycle import ADMIN_URL, BUDGET_USD, DATA, PROVIDERS, REAL, START, Servers, clone_market  # noqa: E402
from tests.fakes.pg_wire import PgWireProxy  # noqa: E402

from quorum.backtest.request import parse_time  # noqa: E402
from quorum.bootstrap import bootstrap  # noqa: E402
from quorum.clock import SimulatedClock  # noqa: E402
from quorum.config import Settings, load_settings, timeframe_seconds  # noqa: E402
from quorum.market.feeds import ReplayMarketData  # noqa: E402
from quorum.store.db import create_pool  # noqa: E402
from quorum.store.migrate import apply_migrations  # noqa: E402

EXEC_TF = Settings.model_fields["execution_timeframe"].default
DECISION_TF = Settings.model_fields["decision_timeframe"].default
EXEC_MS = timeframe_seconds(EXEC_TF) * 1000
DECISION_MS = timeframe_seconds(DECISION_TF) * 1000
VOTES = {"flat": ("HOLD",), "positions": ("LONG", "SHORT")}
SETTINGS: dict[str, Any] = {  # both modes; room for a position on each of 100 symbols
    "min_voters": 2, "daily_ai_budget_usd": BUDGET_USD, "consensus_deadline_seconds": 120, "rules_voter": "auto",
    "initial_capital": 1_000_000.0, "max_concurrent_positions": 100, "max_positions_per_cluster": 100,
    "max_opens_per_hour": 1000, "max_total_notional_pct": 5000.0,
    "risk_per_trade_pct": 0.03,  # ≈ 1.5 % of equity per position at a 2 % stop: 100 fit the margin
}
GOAL_ROUND_TRIPS = 5  # per step, 100 symbols, flat
GOAL_STEP_MS = 50.0  # median step wall, 100 symbols
TOP = 12


async def scenario(pool: asyncpg.Pool, probe: asyncpg.Connection, real: ReplayMarketData, proxy: PgWireProxy | None,
                   *, symbols: int, warmup: int, steps: int) -> dict[str, Any]:
    """Warm-up then measured steps of one engine; per measured step: wall, round trips, queries."""
    start = parse_time(START, "s")
    assert start is not None
    clock = SimulatedClock(start)
    real.clock = clock
    market, names = clone_market(real, symbols, clock)
    settings = load_settings(models=",".join(f"{p}:{m}" for p, m in PROVIDERS), symbols=names, **SETTINGS)
    app = await bootstrap(settings, pool=pool, mode="paper", data_dir=DATA, symbols=names, clock=clock,
                          market=market, start_ms=start, account="bench-paper-step")
    verdicts: Counter[str] = Counter()  # what became of the LONG/SHORT consensus results
    record = app.runtime.record_decision

    def note(decision: dict[str, Any]) -> None:
        if decision.get("action") in ("LONG", "SHORT"):
            why = ", ".join(str(r) for r in decision.get("reasons") or [])
            verdict = decision.get("verdict") or "none: a position is held on the symbol"
            verdicts[str(verdict) + (f" ({why})" if why else "")] += 1
        record(decision)

    app.runtime.record_decision = note  # type: ignore[method-assign]
    engine = app.engine
    gathering = [0.0]  # seconds in `_gather_consensus`: votes over HTTP + each decision's transaction
    gather = engine._gather_consensus

    async def timed_gather(*a: Any) -> Any:
        t0 = time.perf_counter()
        try:
            return await gather(*a)
        finally:
            gathering[0] += time.perf_counter() - t0

    engine._gather_consensus = timed_gather  # type: ignore[method-assign,assignment]
    await engine.start()
    rows: list[dict[str, Any]] = []
    try:
        for k in range(1, warmup + steps + 1):
            t = start + k * EXEC_MS
            await clock.sleep_until(t)
            held = await probe.fetchval("SELECT count(*) FROM positions WHERE mode='paper' AND status='open'")
            if proxy is not None:
                proxy.reset()
            gathering[0] = 0.0
            t0 = time.perf_counter()
            await engine.step(t)
            wall = time.perf_counter() - t0
            if k > warmup:
                snap = proxy.snapshot() if proxy is not None else None
                rows.append({"decision": t % DECISION_MS == 0, "ms": wall * 1000, "held": int(held),
                             "gather_ms": gathering[0] * 1000,
                             "rt": snap.round_trips if snap else None, "queries": snap.queries if snap else None,
                             "connections": snap.connections if snap else 0})
    finally:
        await app.close()
        await app.consensus.close()
    return {"rows": rows, "entries": engine.stats.entries, "closes": engine.stats.closes,
            "errors": engine.stats.errors, "verdicts": dict(verdicts.most_common())}


async def run(admin: asyncpg.Connection, real: ReplayMarketData, proxy: PgWireProxy | None,
              **kw: Any) -> dict[str, Any]:
    """`scenario` on a fresh database, the pool through `proxy` (None: straight to Postgres)."""
    name = f"quorum_bench_step_{uuid.uuid4().hex[:8]}"
    await admin.execute(f'CREATE DATABASE "{name}"')
    url = ADMIN_URL.rpartition("/")[0] + "/" + name
    try:
        probe = await asyncpg.connect(url)  # not through the proxy: counting positions is not the engine's
        try:
            await apply_migrations(probe)
            pool = await create_pool(proxy.dsn(url) if proxy else url, min_size=2, max_size=10)  # as the service
            try:
                return await scenario(pool, probe, real, proxy, **kw)
            finally:
                await pool.close()
        finally:
            await probe.close()
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _p90(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[max(math.ceil(0.9 * len(ordered)) - 1, 0)]


def split(rows: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    return {"all": rows, "decision": [r for r in rows if r["decision"]],
            "non_decision": [r for r in rows if not r["decision"]]}


def summarize(counted: dict[str, Any], timed: dict[str, Any] | None, *, top: int) -> dict[str, Any]:
    rows = counted["rows"]
    out: dict[str, Any] = {
        "positions_open": {"min": min(r["held"] for r in rows), "max": max(r["held"] for r in rows)},
        "steps_measured": {k: len(v) for k, v in split(rows).items()},
        "round_trips_per_step": {
            k: {"median": statistics.median(r["rt"] for r in v), "max": max(r["rt"] for r in v),
                "mean": round(statistics.fmean(r["rt"] for r in v), 1)}
            for k, v in split(rows).items() if v},
    }
    for label, run_ in (("step_ms", timed), ("step_ms_through_proxy", counted)):
        if run_ is not None:
            out[label] = {k: {"median": round(statistics.median(r["ms"] for r in v), 1),
                              "p90": round(_p90([r["ms"] for r in v]), 1)}
                          for k, v in split(run_["rows"]).items() if v}
    decisions = [r["gather_ms"] for r in (timed or counted)["rows"] if r["decision"]]
    if decisions:
        out["decision_step_ms_in_consensus_gather_median"] = round(statistics.median(decisions), 1)
    if timed is not None:
        out["positions_open_direct_run"] = {"min": min(r["held"] for r in timed["rows"]),
                                            "max": max(r["held"] for r in timed["rows"])}
    parts: dict[str, tuple[Counter[str], int]] = {
        k: (sum((r["queries"] for r in v), Counter()), len(v)) for k, v in split(rows).items()}
    total, n = parts["all"]
    out["top_queries"] = [
        {"query": q, "per_step": round(c / n, 2),
         **{f"per_{k}_step": round(parts[k][0][q] / parts[k][1], 2) for k in ("decision", "non_decision")
            if parts[k][1]}}
        for q, c in total.most_common(top)]
    out["distinct_queries"] = len(total)
    out["pool_connections_opened_while_measured"] = sum(r["connections"] for r in rows)
    out["engine"] = {k: counted[k] for k in ("entries", "closes", "errors")}
    if counted["verdicts"]:
        out["directional_consensus_verdicts"] = counted["verdicts"]
    return out


async def main() -> dict[str, Any]:
    ap = argparse.ArgumentParser()
    ap.add_argument("--symbols", default="3,30,100", help="comma-separated symbol counts")
    ap.add_argument("--modes", default="flat,positions", help="flat, positions or both")
    ap.add_argument("--steps", type=int, default=16, help="measured 5m steps per configuration")
    ap.add_argument("--warmup", type=int, default=6, help="steps before measuring (6 = two decision closes)")
    ap.add_argument("--no-direct", action="store_true", help="skip the uncounted run the step times come from")
    args = ap.parse_args()
    counts = [int(s) for s in args.symbols.split(",")]
    modes = [m.strip() for m in args.modes.split(",")]
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(40))  # errors only: stdout is JSON
    t_all = time.perf_counter()
    real = ReplayMarketData(DATA, SimulatedClock(0), timeframes=["15m", "1h", "4h"], base_timeframe=EXEC_TF,
                            symbols=REAL)
    proxy = await PgWireProxy().start()
    admin = await asyncpg.connect(ADMIN_URL)
    configs: dict[str, Any] = {}
    try:
        for mode in modes:
            servers = Servers(0.0, VOTES[mode])
            try:
                for (provider, _), base_url in zip(PROVIDERS, servers.urls, strict=True):
                    os.environ[f"{provider.upper()}_API_KEY"] = "sk-bench"
                    os.environ[f"{provider.upper()}_BASE_URL"] = base_url
                for n in counts:
                    kw = {"symbols": n, "warmup": args.warmup, "steps": args.steps}
                    counted = await run(admin, real, proxy, **kw)
                    timed = None if args.no_direct else await run(admin, real, None, **kw)
                    configs[f"{n}_{mode}"] = {"symbols": n, "mode": mode,
                                              **summarize(counted, timed, top=TOP if n >= 100 else 5)}
            finally:
                servers.stop()
    finally:
        await admin.close()
        await proxy.stop()
    wall = "step_ms" if not args.no_direct else "step_ms_through_proxy"
    goals: dict[str, Any] = {}
    flat = configs.get(f"{max(counts)}_flat")
    if flat is not None:
        rt = flat["round_trips_per_step"]["all"]
        goals["round_trips_per_step_flat"] = {
            "symbols": max(counts), "target_max": GOAL_ROUND_TRIPS, "median": rt["median"], "max": rt["max"],
            "met_by_median": rt["median"] <= GOAL_ROUND_TRIPS, "met_every_step": rt["max"] <= GOAL_ROUND_TRIPS}
    for mode in modes:
        c = configs.get(f"{max(counts)}_{mode}")
        if c is not None:
            med = c[wall]["all"]["median"]
            goals[f"step_ms_median_{mode}"] = {"symbols": max(counts), "target_max": GOAL_STEP_MS, "median": med,
                                                "met": med <= GOAL_STEP_MS, "from": wall}
    return {
        "benchmark": "paper_step",
        "what": f"one engine.step(t) per {EXEC_TF} close; decision cycle inside when t closes a {DECISION_TF} bar",
        "execution_timeframe": EXEC_TF, "decision_timeframe": DECISION_TF,
        "symbols_note": f"the shared data has {len(REAL)} real symbols; more reuse their series under distinct names",
        "voters": [f"{p}:{m}" for p, m in PROVIDERS], "voter_latency_s": 0.0, "vote_cache": "none",
        "votes": {m: list(VOTES[m]) for m in modes}, "settings": SETTINGS,
        "pool": "quorum.store.db.create_pool(url, min_size=2, max_size=10), as the service opens it",
        "round_trip": "a Sync, a Flush after Parse/Describe (asyncpg's prepare) or a simple Query; the pool's "
                      "reset query on release counts (tests/fakes/pg_wire.py)",
        "step_ms_from": "a second run straight to Postgres (no proxy)" if not args.no_direct else "the proxied run",
        "monitoring_ticks": "not measured: they do not occur in a replay (monitor timeframe = execution "
                            f"timeframe = {EXEC_TF}); on live data the paper engine also steps every "
                            "MONITOR_INTERVAL_SECONDS (1m)",
        "warmup_steps": args.warmup,
        "configs": configs,
        "goals": goals,
        "total_s": round(time.perf_counter() - t_all, 1),
    }


if __name__ == "__main__":
    result = asyncio.run(main())
    print(json.dumps(result, indent=2))
    wall_key = "step_ms" if "step_ms" in next(iter(result["configs"].values()), {}) else "step_ms_through_proxy"
    parts = [f"{name}: {c['round_trips_per_step']['all']['median']:g} round trips, "
             f"{c[wall_key]['all']['median']:g} ms" for name, c in result["configs"].items()]
    verdict = {True: "met", False: "NOT met"}
    goals = []
    for k, v in result["goals"].items():
        if "met" in v:
            goals.append(f"{k} ≤ {v['target_max']:g} at {v['symbols']}: {v['median']:g} {verdict[v['met']]}")
        else:
            goals.append(f"{k} ≤ {v['target_max']:g} at {v['symbols']}: median {v['median']:g} "
                         f"{verdict[v['met_by_median']]}, max {v['max']:g} {verdict[v['met_every_step']]}")
    print(f"paper step (median per step): {'; '.join(parts)} — goals: {'; '.join(goals)}")
