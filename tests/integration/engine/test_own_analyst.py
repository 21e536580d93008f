"""Your own analyst through the doors a user has: `quorum backtest --analyst PATH.py:Class` (alone
and next to the rules analyst), `ANALYSTS=` for `quorum decide` and `quorum demo`, and one line
for a broken file."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]
EMA = f"{ROOT / 'examples' / 'ema_cross.py'}:EmaCross"


def quorum(cwd: Path, *args: str, timeout: float = 600, **env: str) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.endswith("_API_KEY") and k not in ("MODELS", "ANALYSTS")}
    return subprocess.run([sys.executable, "-m", "quorum", *args], cwd=cwd, env={**base, **env}, text=True,
                          capture_output=True, timeout=timeout)


def test_backtest_with_the_ema_example_alone_and_next_to_the_rules_analyst(shared_data: Path, tmp_path: Path) -> None:
    common = ["backtest", "--data", str(shared_data), "--symbols", "BTCUSDT,ETHUSDT", "--start", "2025-03-01",
              "--end", "2025-03-15", "--quiet"]
    alone = quorum(tmp_path, *common, "--analyst", EMA, "--out", "alone")
    assert alone.returncode == 0, alone.stderr[-2000:]
    summary = json.loads((tmp_path / "alone" / "summary.json").read_text())
    assert summary["analyst"] == "ema_cross" and summary["analyst_info"]["voters"] == ["ema_cross"]
    trades = list(csv.DictReader((tmp_path / "alone" / "trades.csv").open()))
    assert len(trades) == summary["trades"] >= 5
    assert {t["voters"] for t in trades} == {"ema_cross"}
    assert "analyst=ema_cross" in alone.stdout

    both = quorum(tmp_path, *common, "--analyst", "rules", "--analyst", EMA, "--out", "both")
    assert both.returncode == 0, both.stderr[-2000:]
    summary = json.loads((tmp_path / "both" / "summary.json").read_text())
    assert summary["analyst_info"]["voters"] == ["rules", "ema_cross"]
    # two voters must agree (MIN_AGREEMENT 0.66): fewer entries than the cross alone
    assert summary["trades"] < len(trades)


@pytest.mark.parametrize(("body", "expected"), [
    ("class EmaCross:\n    def vote(self, ctx)\n", "syntax error at line 2"),
    ("class Other:\n    def vote(self, ctx):\n        return None\n", "no class 'EmaCross' (classes there: Other)"),
])
def test_a_broken_analyst_file_is_one_line(tmp_path: Path, shared_data: Path, body: str, expected: str) -> None:
    path = tmp_path / "mine.py"
    path.write_text(body)
    r = quorum(tmp_path, "backtest", "--data", str(shared_data), "--symbols", "BTCUSDT", "--analyst",
               f"{path}:EmaCross", "--quiet", timeout=120)
    assert r.returncode == 2 and "Traceback" not in r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and str(path) in lines[0] and expected in lines[0], r.stderr
    bad = quorum(tmp_path, "backtest", "--data", str(shared_data), "--symbols", "BTCUSDT", "--analyst", "ema",
                 timeout=120)
    assert bad.returncode == 2 and "PATH.py:ClassName" in bad.stderr and "Traceback" not in bad.stderr
    run = quorum(tmp_path, "run", timeout=120, ANALYSTS=f"{path}:EmaCross", DATABASE_URL="postgresql://127.0.0.1:1/x")
    assert run.returncode == 2 and str(path) in run.stderr and "Traceback" not in run.stderr, run.stderr


def test_decide_and_demo_ask_the_analysts_setting(shared_data: Path, tmp_path: Path) -> None:
    decided = quorum(tmp_path, "decide", "BTCUSDT", "--data", str(shared_data), "--at", "2025-03-05T12:00", "--json",
                     ANALYSTS=EMA, RULES_VOTER="always")
    assert decided.returncode == 0, decided.stderr[-2000:]
    voters = [v["voter"] for v in json.loads(decided.stdout)["voters"]]
    assert voters == ["rules", "ema_cross"]

    demo = quorum(tmp_path, "demo", "--data", str(shared_data), "--symbols", "BTCUSDT,ETHUSDT", "--days", "2",
                  "--port", "0", ANALYSTS=EMA, VAR_DIR=str(tmp_path / "var"))
    assert demo.returncode == 0, (demo.stdout[-2000:], demo.stderr[-2000:])
    assert "ema_cross" in demo.stderr  # ai.voters: the engine asked it
    assert "closed trades" in demo.stdout
