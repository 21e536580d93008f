"""Backtest speed: 6 symbols of the shared 5m futures data over their full common range with the
rules analyst. Prints JSON (bar-steps per second per core; target >= 1,000,000) and a summary line.

Run: uv run python benchmarks/bench_backtest.py [--data DIR] [--symbols A,B,...]
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

from quorum.backtest.fast import FastBacktest
from quorum.backtest.request import BacktestRequest, load_market
from quorum.backtest.runner import equity_curve, prepare_inputs
from quorum.config import load_settings
from quorum.engine.shared import LoopConfig

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA = Path(os.environ.get("QUORUM_SHARED_DATA", ROOT.parent / "shared" / "data"))
SYMBOLS = "BTCUSDT,ETHUSDT,SOLUSDT,BNBUSDT,XRPUSDT,DOGEUSDT"
TARGET = 1_000_000


def scenario(name: str, market, settings, t_load: float) -> dict:  # type: ignore[no-untyped-def]
    req = market.request
    cfg = LoopConfig.from_settings(settings)
    cpu0 = time.process_time()
    t1 = time.perf_counter()
    inputs = prepare_inputs(market, settings)
    t_prep = time.perf_counter() - t1
    t2 = time.perf_counter()
    run = FastBacktest(inputs, cfg).run()
    t_loop = time.perf_counter() - t2
    t3 = time.perf_counter()
    equity_curve(run, inputs, cfg.initial_equity, cfg.exec_tf_ms, market.start_ms)
    t_eq = time.perf_counter() - t3
    cpu = time.process_time() - cpu0
    wall = t_prep + t_loop + t_eq
    bars = run.bars_processed
    return {
        "scenario": name,
        "symbols": list(req.symbols),
        "range": [market.start_ms, market.end_ms],
        "bar_steps": bars,
        "trades": len(run.trades),
        "events": run.events,
        "load_seconds": round(t_load, 3),
        "indicators_signals_seconds": round(t_prep, 3),
        "loop_seconds": round(t_loop, 3),
        "equity_curve_seconds": round(t_eq, 3),
        "wall_seconds": round(wall, 3),
        "cpu_seconds": round(cpu, 3),
        "bar_steps_per_second": round(bars / wall),
        "bar_steps_per_cpu_second": round(bars / cpu) if cpu > 0 else None,
        "target": TARGET,
        "meets_target": bars / wall >= TARGET,
        "note": "excludes reading the gzipped CSV files (load_seconds); one process, one core",
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA)
    ap.add_argument("--symbols", default=SYMBOLS)
    args = ap.parse_args()
    req = BacktestRequest(args.data, tuple(args.symbols.split(",")), None, None)
    t0 = time.perf_counter()
    market = load_market(req)
    t_load = time.perf_counter() - t0
    results = [
        # the configured defaults: the drawdown breaker (20 %) trips and, with no operator to reset it,
        # the rest of the range only manages exits
        scenario("defaults", market, load_settings(), t_load),
        # breakers that never stop trading: every signal of the year is evaluated and traded
        scenario("trading_all_year", market, load_settings(max_drawdown_pct=100, max_daily_loss_pct=100), t_load),
    ]
    print(json.dumps({"benchmark": "bench_backtest", "target_bar_steps_per_second": TARGET,
                      "scenarios": results}, indent=2))
    for r in results:
        print(f"bench_backtest[{r['scenario']}]: {r['bar_steps']} bar-steps in {r['wall_seconds']:.2f}s = "
              f"{r['bar_steps_per_second']:,} bar-steps/s (target {TARGET:,}; "
              f"{'met' if r['meets_target'] else 'NOT met'}); {r['trades']} trades")


if __name__ == "__main__":
    main()
