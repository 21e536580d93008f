"""Risk hot paths on real data: exits over a year of BTCUSDT 5m bars, bar by bar (`step_bar`)
versus event to event (`run_exits` = numpy `first_event_index` + `fold_extremes`), and the
verdict (`evaluate`) per proposal. Both exit paths must give the same result (checked here too).
Prints JSON, then a one-line summary.

    uv run python benchmarks/bench_risk.py [--data ../shared/data] [--bars 100000]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import pandas as pd

from quorum.domain.exits import Bar, ExitPolicy, run_exits, step_bar
from quorum.domain.models import Action, PositionState, Proposal, Regime, Side, SymbolFilters
from quorum.domain.risk import RiskContext, evaluate
from quorum.risk.brackets import BracketTable

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    ap.add_argument("--bars", type=int, default=100_000)
    ap.add_argument("--verdicts", type=int, default=20_000)
    args = ap.parse_args()

    df = pd.read_csv(args.data / "BTCUSDT-futures-5m.csv.gz").iloc[: args.bars]
    t = df.timestamp_ms.to_numpy(np.int64)
    o, h, lo, c = (df[k].to_numpy(np.float64) for k in ("open", "high", "low", "close"))
    entry = float(o[0])

    def scenario(stop_frac: float, policy: ExitPolicy) -> dict[str, object]:
        pos = PositionState(symbol="BTCUSDT", side=Side.LONG, entry_price=entry, quantity=1.0,
                            initial_quantity=1.0, initial_stop=entry * stop_frac, stop_price=entry * stop_frac,
                            take_profit=None, leverage=1, opened_ms=int(t[0]), peak_price=entry)
        t0 = time.perf_counter()
        state, events_step, stepped = pos, [], 0
        for i in range(len(o)):
            state, intents = step_bar(state, Bar(int(t[i]), o[i], h[i], lo[i], c[i]), policy)
            stepped += 1
            if intents:
                events_step.append((i, intents))
            if state.quantity <= 0:
                break
        step_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        final, events_scan = run_exits(pos, t, o, h, lo, c, policy)
        scan_s = time.perf_counter() - t0
        return {"bars": stepped, "step_bar_seconds": round(step_s, 4),
                "step_bar_bars_per_s": round(stepped / step_s), "run_exits_seconds": round(scan_s, 4),
                "run_exits_speedup": round(step_s / scan_s, 1) if scan_s > 0 else None,
                "exit_events": len(events_scan), "paths_agree": final == state and events_scan == events_step}

    # quiet: a wide position that nothing touches (the backtester's common case between events)
    quiet = scenario(0.4, ExitPolicy(time_stop_ms=0, trailing_enabled=False, partial_exits=((0.3, 1.0),)))
    # active: partial at +15 %, trailing 6 % after +5 % (every new high is an event once trailing)
    active = scenario(0.85, ExitPolicy(time_stop_ms=0, trailing_activation_pct=5.0, trailing_distance_pct=6.0,
                                       break_even_at_r=0, partial_exits=((0.3, 1.0),)))

    table = BracketTable()
    filters = SymbolFilters("BTCUSDT", 0.1, 0.001, 0.001, 100.0)
    rng = np.random.default_rng(1)
    props = []
    for i in range(args.verdicts):
        px = float(c[i % len(c)])
        stop_pct = float(rng.uniform(0.5, 6.0))
        props.append(Proposal("BTCUSDT", Action.LONG, 0.8, px, px * (1 - stop_pct / 100),
                              (px * (1 + 2 * stop_pct / 100),), None, 3, 0, 1.0, "", "h", int(t[i % len(t)])))
    ctx = RiskContext(equity=10_000.0, now_ms=0, brackets=table.for_symbol("BTCUSDT"), filters=filters, atr=300.0,
                      atr_pct_percentile=0.6, regime=Regime.TRENDING_UP)
    t0 = time.perf_counter()
    accepted = sum(1 for p in props if evaluate(p, ctx).accepted)
    verdict_s = time.perf_counter() - t0

    out = {
        "quiet": quiet,
        "active": active,
        "verdicts": len(props),
        "verdicts_accepted": accepted,
        "verdict_us_each": round(verdict_s / len(props) * 1e6, 1),
    }
    print(json.dumps(out))
    print(f"exits quiet: {quiet['step_bar_bars_per_s']} bars/s stepping, scan {quiet['run_exits_speedup']}x faster; "
          f"active: scan {active['run_exits_speedup']}x; agree={quiet['paths_agree'] and active['paths_agree']}; "
          f"evaluate {out['verdict_us_each']} µs/proposal")


if __name__ == "__main__":
    main()
