"""`quorum backtest` says when breakers halted new entries (halts, active_fraction, the summary
line), can simulate an operator's breaker resets (--breaker-reset-after), and takes no decision
before every timeframe's indicators are defined (warm-up). Run as the user runs it: the real CLI
in a subprocess, on real data."""

from __future__ import annotations

import csv
import itertools
import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from quorum.backtest.outputs import iso
from quorum.backtest.request import parse_time
from quorum.domain.statistics import max_drawdown_pct
from quorum.market.data_files import load_candles
from quorum.market.snapshot import SnapshotBuilder

SYMS = "BTCUSDT,ETHUSDT,SOLUSDT"
START, END = "2025-09-01", "2025-09-22"
DAY = 86_400_000


def _backtest(tmp_path: Path, name: str, data: Path, *args: str, env: dict[str, str] | None = None
              ) -> tuple[subprocess.CompletedProcess[str], Path]:
    out = tmp_path / name
    proc = subprocess.run([sys.executable, "-m", "quorum", "backtest", "--data", str(data), "--out", str(out),
                           "--quiet", *args], capture_output=True, text=True, cwd=tmp_path, timeout=600,
                          env={**os.environ, **(env or {})})
    return proc, out


def _summary(out: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((out / "summary.json").read_text())
    return data


def _trades(out: Path) -> list[dict[str, str]]:
    with (out / "trades.csv").open() as fh:
        return list(csv.DictReader(fh))


def _equity(out: Path) -> list[tuple[int, float]]:
    with (out / "equity.csv").open() as fh:
        return [(int(r["time_ms"]), float(r["equity"])) for r in csv.DictReader(fh)]


def _peak(reason: str) -> float:
    m = re.search(r"from peak ([0-9.]+)", reason)
    assert m, reason
    return float(m.group(1))


@pytest.fixture(scope="module")
def halted(shared_data: Path, tmp_path_factory: pytest.TempPathFactory
           ) -> tuple[subprocess.CompletedProcess[str], dict[str, Any], Path]:
    """Three symbols for three weeks with the drawdown breaker at 3 %: it trips on the first day."""
    proc, out = _backtest(tmp_path_factory.mktemp("halted"), "bt", shared_data, "--symbols", SYMS,
                          "--start", START, "--end", END, env={"MAX_DRAWDOWN_PCT": "3"})
    assert proc.returncode == 0, proc.stderr
    return proc, _summary(out), out


def test_a_drawdown_halt_is_told_first_with_its_dates(halted: tuple[Any, dict[str, Any], Path]) -> None:
    proc, s, out = halted
    trips = [e for e in s["breaker_trips"] if e["breaker"] == "drawdown"]
    assert len(trips) == 1
    trip_ms = trips[0]["at_ms"]
    dd = [h for h in s["halts"] if h["breaker"] == "drawdown"]
    assert dd == [{"breaker": "drawdown", "symbol": None, "from_ms": trip_ms, "to_ms": None,
                   "reason": trips[0]["reason"], "simulated_reset": False, "from": iso(trip_ms), "to": None}]
    # no entry after the halt began: the rest of the period only managed exits
    assert all(int(t["entry_ms"]) < trip_ms for t in _trades(out))
    # every other halt of this run lies inside the drawdown halt: entries were allowed only before it
    start, end = s["start_ms"], s["end_ms"]
    assert all(h["from_ms"] >= trip_ms for h in s["halts"])
    assert s["active_fraction"] == pytest.approx((trip_ms - start) / (end - start))
    share = round((end - trip_ms) / (end - start) * 100)
    line = proc.stdout.strip()
    assert line.startswith(f"HALTED: drawdown breaker stopped new entries {iso(trip_ms)[:10]} → end "
                           f"({share} % of the period); new entries allowed "
                           f"{s['active_fraction'] * 100:.1f} % of the period"), line
    assert line == f"{s['halt_statement']} · " + line.split(" · ", 1)[1]
    assert "analyst=rules" in line.split(" · ", 1)[1]
    assert s["simulated_resets"] is None
    assert s["max_drawdown_between_resets_pct"] == pytest.approx(s["max_drawdown_pct"])


def test_simulated_operator_resets_resume_trading_and_rebase_the_peak(
        shared_data: Path, tmp_path: Path, halted: tuple[Any, dict[str, Any], Path]) -> None:
    proc, out = _backtest(tmp_path, "reset", shared_data, "--symbols", SYMS, "--start", START, "--end", END,
                          "--breaker-reset-after", "2d", env={"MAX_DRAWDOWN_PCT": "3"})
    assert proc.returncode == 0, proc.stderr
    s = _summary(out)
    assert "with simulated operator resets after 2d" in proc.stdout.split(" · ", 1)[0]
    dd = [h for h in s["halts"] if h["breaker"] == "drawdown"]
    first = dd[0]
    # the same trip as without resets, now reset by the simulated operator two days later
    assert first["from_ms"] == halted[1]["halts"][0]["from_ms"]
    assert first["simulated_reset"] and first["to_ms"] == first["from_ms"] + 2 * DAY
    assert s["simulated_resets"]["after"] == "2d"
    assert s["simulated_resets"]["count"] == sum(1 for h in dd if h["simulated_reset"]) >= 2
    assert s["simulated_resets"]["at"][0] == first["to"]
    # trading resumed after the cool-down
    reset_ms = first["to_ms"]
    after = [t for t in _trades(out) if int(t["entry_ms"]) >= reset_ms]
    assert after and len(_trades(out)) > len(_trades(halted[2]))
    # the peak was re-based at the reset (as `quorum reset-breaker drawdown` does): at the reset the
    # equity was still more than 3 % below the old peak, so without re-basing no entry could pass;
    # the next trip measures from a peak no lower than the equity at the reset and below the old one
    equity = dict(_equity(out))
    old_peak, at_reset = _peak(first["reason"]), equity[reset_ms]
    assert at_reset < old_peak * 0.97
    second = dd[1]
    assert at_reset - 0.01 <= _peak(second["reason"]) < old_peak
    # drawdowns: over the whole period, and between resets (peak re-based at each reset), by hand
    curve = _equity(out)
    resets = [parse_time(a, "at") for a in s["simulated_resets"]["at"]]
    bounds = [s["start_ms"], *resets, s["end_ms"] + 1]
    segments = [[v for t, v in curve if a <= t < b] for a, b in itertools.pairwise(bounds)]
    segments[0].insert(0, s["initial_equity"])
    between = max(max_drawdown_pct(seg) for seg in segments if seg)
    assert s["max_drawdown_between_resets_pct"] == pytest.approx(between)
    assert s["max_drawdown_pct"] == pytest.approx(max_drawdown_pct([s["initial_equity"]] + [v for _, v in curve]))
    assert s["max_drawdown_between_resets_pct"] < s["max_drawdown_pct"]
    assert f"(between resets {between:.2f} %)" in proc.stdout


def test_a_bad_reset_duration_is_one_line_exit_2(shared_data: Path, tmp_path: Path) -> None:
    proc, out = _backtest(tmp_path, "bad", shared_data, "--symbols", "BTCUSDT", "--breaker-reset-after", "7x")
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        "error: --breaker-reset-after '7x': not a duration (a positive whole number and a unit m, h, d or w, "
        "e.g. 12h or 7d)"]
    assert not out.exists()


def test_no_decision_before_every_timeframes_indicators_are_defined(shared_data: Path, tmp_path: Path) -> None:
    # from the first bar of the files: the 4h EMA200 slope needs 205 4h bars, so the start moves
    proc, out = _backtest(tmp_path, "warm", shared_data, "--symbols", "BTCUSDT", "--start", "2024-12-31",
                          "--end", "2025-02-20")
    assert proc.returncode == 0, proc.stderr
    s = _summary(out)
    ready = parse_time("2025-02-03T04:00", "ready")  # 2024-12-31 00:00 + 205 × 4 h
    assert ready is not None
    assert s["effective_start"] == iso(ready) and s["start_ms"] == ready
    assert s["warmup"]["timeframe"] == "4h" and s["warmup"]["longest_indicator"] == "ema200_slope"
    assert s["warmup"]["bars"] == 205 and s["warmup"]["ready_at"] == iso(ready)
    assert s["warmup"]["requested_start"] == "2024-12-31T00:00:00Z"
    assert not s["warmup"]["history_before_start_used"] and s["warmup"]["start_moved_by_ms"] == ready - 1735603200000
    trades = _trades(out)
    assert trades and min(int(t["entry_ms"]) for t in trades) > ready
    assert f"from={iso(ready)}" in proc.stdout
    # the snapshot the engine would see agrees: one 15m step earlier the 4h view is short of history
    series = load_candles(shared_data / "BTCUSDT-futures-5m.csv.gz")
    builder = SnapshotBuilder("BTCUSDT", None, ("15m", "1h", "4h"), base=series)
    assert any(f.startswith("short_history:4h") for f in builder.snapshot(ready - 15 * 60_000).flags)
    assert not any(f.startswith(("short_history", "no_data")) for f in builder.snapshot(ready).flags)


def test_history_before_start_is_used_for_the_warmup(shared_data: Path, tmp_path: Path) -> None:
    proc, out = _backtest(tmp_path, "hist", shared_data, "--symbols", "BTCUSDT", "--start", "2025-03-01",
                          "--end", "2025-03-04")
    assert proc.returncode == 0, proc.stderr
    s = _summary(out)
    assert s["effective_start"] == "2025-03-01T00:00:00Z"
    assert s["warmup"]["history_before_start_used"] and s["warmup"]["start_moved_by_ms"] == 0


def test_a_range_inside_the_warmup_is_refused(shared_data: Path, tmp_path: Path) -> None:
    proc, out = _backtest(tmp_path, "short", shared_data, "--symbols", "BTCUSDT", "--start", "2025-01-10",
                          "--end", "2025-01-20")
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert lines == ["error: warm-up: BTCUSDT: not every timeframe's indicators are defined before the end of the "
                     "range 2025-01-20 00:00 (4h ema200 needs more than the 120 4h bars the files hold by then); "
                     "use a later --end or files with more history before --start"]
    assert not (out / "summary.json").exists()
