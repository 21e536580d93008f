"""The earlier bots' settings through the commands a user runs (the real CLI in a subprocess):
a value that cannot mean what it meant stops start-up with one line (exit 2, before anything is
touched); the honoured ones change what Quorum does — SCAN_INTERVAL_SECONDS how often the demo
decides, MIN_PROFIT_USD which entries the risk manager takes, MIN/MAX_STOP_LOSS_PERCENT (fractions)
where a backtest's stops lie; USE_PAPER_TRADING=true runs paper."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import BUNDLED_DATA
from tests.outages import free_port

NOWHERE = "postgresql://quorum@127.0.0.1:1/quorum"  # nothing listens: a refusal must come first
PASSED_ON = ("PATH", "HOME", "LANG", "LC_ALL", "PYTHONPATH", "PYTHONDONTWRITEBYTECODE", "QUORUM_SHARED_DATA")


def _env(**extra: str) -> dict[str, str]:
    """A clean environment: nothing of the caller's configuration, only `extra`."""
    env = {k: v for k, v in os.environ.items() if k in PASSED_ON}
    env.update({"LOG_FORMAT": "json", "API_HOST": "127.0.0.1"})
    env.update(extra)
    return env


def _quorum(args: list[str], cwd: Path, env: dict[str, str], timeout: float = 600) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "quorum", *args], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=timeout)


@pytest.mark.parametrize(("env", "says"), [
    ({"USE_PAPER_TRADING": "false"}, "USE_PAPER_TRADING=false: live trading is chosen with TRADING_MODE=live"),
    ({"USE_PAPER_TRADING": "true", "TRADING_MODE": "live"}, "USE_PAPER_TRADING=true contradicts TRADING_MODE=live"),
    ({"MIN_STOP_LOSS_PERCENT": "7"}, "MIN_STOP_LOSS_PERCENT='7': a fraction of the entry price (0.07 = 7 %)"),
    ({"MAX_STOP_LOSS_PERCENT": "0.08", "MAX_STOP_LOSS_PCT": "0.08"},
     "MAX_STOP_LOSS_PERCENT=0.08 (8 %) contradicts MAX_STOP_LOSS_PCT=0.08 (percent)"),
    ({"MIN_PROFIT_USD": "3", "MIN_EXPECTED_PROFIT_USD": "5"}, "MIN_PROFIT_USD=3 contradicts MIN_EXPECTED_PROFIT_USD=5"),
    ({"SCAN_INTERVAL_SECONDS": "200"}, "SCAN_INTERVAL_SECONDS='200': decisions happen at each close of a "
                                       "DECISION_TIMEFRAME bar"),
    ({"SCAN_INTERVAL_SECONDS": "180"}, "SCAN_INTERVAL_SECONDS=180 means DECISION_TIMEFRAME=3m, which is not a "
                                       "multiple of EXECUTION_TIMEFRAME=5m"),
    ({"MODELS": "opneai:gpt-4o"}, "unknown provider 'opneai'; known: anthropic, deepseek, grok, llamacpp, ollama, "
                                  "openai, openrouter, qwen, xai"),
    ({"ENABLE_GROK": "false"}, "ENABLE_GROK is not a Quorum setting (an earlier bot's): the voters are the MODELS "
                               "entries"),
])
def test_a_setting_that_cannot_mean_what_it_meant_stops_start_up(tmp_path: Path, env: dict[str, str],
                                                                  says: str) -> None:
    done = _quorum(["run"], tmp_path, _env(DATABASE_URL=NOWHERE, VAR_DIR=str(tmp_path / "var"), **env), timeout=120)
    assert done.returncode == 2, done.stderr
    errors = [line for line in done.stderr.splitlines() if line.startswith("configuration error:")]
    assert len(errors) == 1 and says in errors[0], done.stderr
    assert "Traceback" not in done.stderr and not (tmp_path / "var").exists()


@pytest.fixture(scope="module")
def carried_over_demo(tmp_path_factory: pytest.TempPathFactory) -> str:
    """`quorum demo --days 1` on BTCUSDT from a directory holding an earlier bot's `.env`."""
    cwd = tmp_path_factory.mktemp("legacy-demo")
    (cwd / ".env").write_text("USE_PAPER_TRADING=true\nSCAN_INTERVAL_SECONDS=3600\nMIN_PROFIT_USD=50.00\n")
    done = _quorum(["demo", "--data", str(BUNDLED_DATA), "--symbols", "BTCUSDT", "--days", "1",
                    "--port", str(free_port())], cwd, _env(VAR_DIR=str(cwd / "var")))
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return done.stdout + done.stderr


def test_use_paper_trading_true_runs_paper(carried_over_demo: str) -> None:
    assert "Record: paper" in carried_over_demo and "configuration error" not in carried_over_demo


def test_scan_interval_seconds_is_how_often_the_engine_decides(carried_over_demo: str) -> None:
    # one day at SCAN_INTERVAL_SECONDS=3600: 24 decisions on closed 1h bars (the default 15m: 96)
    assert "288 bar steps, 24 decision cycles" in carried_over_demo


def test_min_profit_usd_rejects_entries_that_would_earn_less(carried_over_demo: str) -> None:
    verdicts = [json.loads(line) for line in carried_over_demo.splitlines()
                if line.startswith("{") and '"risk_verdict"' in line]
    assert verdicts, "no entry was proposed"
    assert all(v["status"] == "rejected" for v in verdicts)
    # every proposal that reached the end of the risk checks was stopped by MIN_PROFIT_USD=50
    assert any(v["reasons"] == ["expected_profit_below_min"] for v in verdicts)
    assert ", 0 entries," in carried_over_demo


def _stop_pcts(tmp_path: Path, **env: str) -> list[float]:
    tmp_path.mkdir(exist_ok=True)
    out = tmp_path / "bt"
    done = _quorum(["backtest", "--data", str(BUNDLED_DATA), "--symbols", "BTCUSDT,ETHUSDT,SOLUSDT",
                    "--start", "2025-10-06", "--end", "2025-10-13", "--out", str(out), "--quiet"],
                   tmp_path, _env(VAR_DIR=str(tmp_path / "var"), **env))
    assert done.returncode == 0, done.stderr[-3000:]
    with (out / "trades.csv").open() as f:
        trades = list(csv.DictReader(f))
    assert trades, "no trade to measure"
    # the stop's distance from the entry, in percent: risk / quantity / entry
    return [float(t["risk_usd"]) / float(t["quantity"]) / float(t["entry_price"]) * 100 for t in trades]


def test_min_stop_loss_percent_is_a_fraction(tmp_path: Path) -> None:
    legacy = _stop_pcts(tmp_path / "legacy", MIN_STOP_LOSS_PERCENT="0.02", MAX_STOP_LOSS_PERCENT="0.10")
    assert min(legacy) >= 1.99 and max(legacy) <= 10.0  # 2 % .. 10 %
    percent = _stop_pcts(tmp_path / "percent", MIN_STOP_LOSS_PCT="0.02")  # the new name: 0.02 %
    assert min(percent) < 1.5


def test_max_stop_loss_percent_is_a_fraction(tmp_path: Path) -> None:
    tight = _stop_pcts(tmp_path, MIN_STOP_LOSS_PERCENT="0.001", MAX_STOP_LOSS_PERCENT="0.006")
    assert max(tight) <= 0.61  # no stop wider than 0.6 %
