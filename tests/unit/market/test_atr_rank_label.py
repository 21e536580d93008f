"""The ATR % rank says what it means (issue 14, item 10): the value is the share of the last 100
bars' ATR % at or below the current one (1 = the highest), and the old label "percentile 1 of last
100 bars" read as the lowest. `quorum scan` and the prompt now say "at or above N % of the last 100
bars, 100 = the highest"; the value itself (used by the regime and sizing as a share) is unchanged."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

from quorum.ai.prompts import render_market
from tests.unit.ai.factory import snapshot, view

ROOT = Path(__file__).resolve().parents[3]


def _scan(*extra: str) -> str:
    run = subprocess.run([sys.executable, "-m", "quorum", "scan", "--data-dir", str(ROOT / "data"), "--symbols",
                          "BTCUSDT", "--at", "2025-10-10T21:30", *extra], capture_output=True, text=True,
                         timeout=120, check=False, cwd=ROOT, env={**os.environ, "LOG_LEVEL": "WARNING"})
    assert run.returncode == 0, run.stderr
    return run.stdout


def test_scan_labels_the_atr_rank_with_its_meaning() -> None:
    text = _scan()
    doc = next(d for d in map(json.loads, _scan("--json").splitlines()) if "prompt" in d)
    shares = [tf["atr_pct_share_of_last_100_bars_at_or_below"] for tf in doc["prompt"]["timeframes"]]
    shown = re.findall(r"ATR% at or above ([0-9.]+)% of the last 100 bars, 100% = the highest", text)
    assert len(shown) == len(shares) == 3
    assert [float(s) for s in shown] == [float(f"{v * 100:.3g}") for v in shares]
    assert 1.0 in shares  # during the 2025-10-10 cascade one timeframe's ATR % is the highest of its 100 bars
    assert "percentile" not in text and "percentile" not in json.dumps(doc)


def test_the_prompt_fallback_renderer_says_the_same() -> None:
    snap = snapshot(timeframes=(view("15m", atr_pct_percentile=1.0), view("1h", atr_pct_percentile=0.01)))
    text = render_market(snap)
    assert "at or above 100 % of the last 100 bars' ATR %, 100 = the highest" in text
    assert "at or above 1 % of the last 100 bars' ATR %" in text and "percentile" not in text
