"""The paper engine's step costs Postgres round trips for what changed, not for how many symbols
it watches: the short variant of `benchmarks/bench_paper_step.py` (the engine wired by
bootstrap in paper mode on the shared data, every round trip counted on the wire) at 3 and 12
flat symbols. Before the paper venue kept its books in memory a flat step paid ~16 round trips
and a decision step ~17 per symbol; the goal is ≤ 5 at 100 flat symbols."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]


def test_a_flat_symbol_costs_no_round_trip() -> None:
    out = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "bench_paper_step.py"), "--symbols", "3,12", "--modes", "flat",
         "--steps", "6", "--no-direct"],
        capture_output=True, text=True, timeout=240, cwd=ROOT, env=dict(os.environ, PYTHONPATH=str(ROOT / "src")),
        check=True)
    result = json.loads(out.stdout[: out.stdout.rindex("}") + 1])
    small, large = (result["configs"][f"{n}_flat"]["round_trips_per_step"] for n in (3, 12))
    assert small["non_decision"]["median"] == large["non_decision"]["median"] <= 3
    assert small["decision"]["max"] == large["decision"]["max"] <= 5
