"""Data quality through the user's door: `quorum scan`, `quorum backtest` and `quorum demo` on a
copy of the bundled BTCUSDT 5m file with one 100× price spike injected (2025-10-08 12:00 UTC).
DATA_QUALITY=flag (the default) reports it with file, time and value and goes on with the bar as
it is; DATA_QUALITY=refuse stops with one line naming it and exit code 2."""

from __future__ import annotations

import asyncio
import gzip
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import BUNDLED_DATA
from tests.integration.service.test_embedded_postgres import servers
from tests.outages import free_port

SPIKE_MS = 1_759_924_800_000  # 2025-10-08 12:00 UTC
SPIKE_AT = "2025-10-08T12:00Z"
NOWHERE = "postgresql://quorum@127.0.0.1:1/quorum"  # nothing listens: a refusal must come first


@pytest.fixture(scope="module")
def spiked(tmp_path_factory: pytest.TempPathFactory) -> Path:
    data = tmp_path_factory.mktemp("spiked")
    with gzip.open(BUNDLED_DATA / "BTCUSDT-futures-5m.csv.gz", "rt") as fh:
        lines = fh.read().splitlines()
    for i, line in enumerate(lines[1:], 1):
        ts, o, _high, lo, c, v = line.split(",")
        if int(ts) == SPIKE_MS:
            bad = float(c) * 100
            lines[i] = f"{ts},{o},{bad},{lo},{bad},{v}"
    with gzip.open(data / "BTCUSDT-futures-5m.csv.gz", "wt") as fh:
        fh.write("\n".join(lines) + "\n")
    shutil.copy(BUNDLED_DATA / "BTCUSDT-funding.csv.gz", data)
    return data


def _env(tmp: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if k not in ("DATABASE_URL", "REDIS_URL", "TELEGRAM_BOT_TOKEN") and not k.startswith("DATA_")}
    env.update({"VAR_DIR": str(tmp / "var"), "LOG_FORMAT": "json", "API_HOST": "127.0.0.1", **extra})
    return env


async def _quorum(tmp: Path, *args: str, timeout: float = 300, **env: str) -> subprocess.CompletedProcess[str]:
    return await asyncio.to_thread(subprocess.run, [sys.executable, "-m", "quorum", *args], cwd=tmp,
                                   env=_env(tmp, **env), capture_output=True, text=True, timeout=timeout)


def _one_error_line(done: subprocess.CompletedProcess[str], file: Path) -> str:
    lines = [ln for ln in done.stderr.splitlines() if ln.strip() and not ln.startswith("{")]
    assert done.returncode == 2, done.stderr[-2000:]
    assert len(lines) == 1 and "Traceback" not in done.stderr, done.stderr[-2000:]
    assert lines[0].startswith(f"error: data quality: {file}: {SPIKE_AT} range_outlier "), lines[0]
    assert "3 more flags" in lines[0] and "DATA_QUALITY=refuse" in lines[0]
    return lines[0]


async def test_scan_reports_the_spike_or_refuses(spiked: Path, tmp_path: Path) -> None:
    file = spiked / "BTCUSDT-futures-5m.csv.gz"
    done = await _quorum(tmp_path, "scan", "--data-dir", str(spiked), "--symbols", "BTCUSDT", "--at", "2025-10-09")
    assert done.returncode == 0, done.stderr[-2000:]
    out = done.stdout
    assert "# BTCUSDT snapshot" in out
    assert "data quality: 4 flags in 1 candle file" in out
    assert f"  {file}: {SPIKE_AT} price_outlier 12274900 (high 12274900 = 100× the median close" in out
    assert f"  {file}: {SPIKE_AT} range_outlier " in out and f"{file}: 2025-10-08T12:05Z move_outlier 122690 " in out

    as_json = await _quorum(tmp_path, "scan", "--data-dir", str(spiked), "--symbols", "BTCUSDT", "--json",
                            "--at", "2025-10-09")
    last = json.loads(as_json.stdout.strip().splitlines()[-1])
    assert [(f["kind"], f["time"]) for f in last["data_flags"]] == [
        ("range_outlier", SPIKE_AT), ("move_outlier", SPIKE_AT), ("price_outlier", SPIKE_AT),
        ("move_outlier", "2025-10-08T12:05Z")]
    assert last["data_flags"][2]["file"] == str(file) and last["data_flags"][2]["value"] == 12274900.0

    before = await _quorum(tmp_path, "scan", "--data-dir", str(spiked), "--symbols", "BTCUSDT", "--at", "2025-10-08")
    assert "data quality: 1 candle file checked, no gaps or outliers" in before.stdout  # not closed yet at --at

    refused = await _quorum(tmp_path, "scan", "--data-dir", str(spiked), "--symbols", "BTCUSDT", "--at", "2025-10-09",
                            DATA_QUALITY="refuse")
    _one_error_line(refused, file)
    assert refused.stdout == ""


async def test_backtest_reports_the_spike_in_summary_json_or_refuses(spiked: Path, tmp_path: Path) -> None:
    file = spiked / "BTCUSDT-futures-5m.csv.gz"
    args = ["backtest", "--data", str(spiked), "--symbols", "BTCUSDT", "--start", "2025-10-06", "--end", "2025-10-10",
            "--quiet", "--out"]
    done = await _quorum(tmp_path, *args, str(tmp_path / "out"))
    assert done.returncode == 0, done.stderr[-2000:]
    assert "data flags: 4 (see summary.json)" in done.stdout
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    flags = summary["data_flags"]
    assert len(flags) == 4 and all(set(f) >= {"file", "symbol", "timeframe", "kind", "time", "value", "detail"}
                                   for f in flags)
    price = next(f for f in flags if f["kind"] == "price_outlier")
    assert price == {**price, "file": str(file), "symbol": "BTCUSDT", "timeframe": "5m", "time": SPIKE_AT,
                     "value": 12274900.0}

    clean = await _quorum(tmp_path, "backtest", "--data", str(BUNDLED_DATA), "--symbols", "BTCUSDT",
                          "--start", "2025-10-06", "--end", "2025-10-07", "--quiet", "--out", str(tmp_path / "clean"))
    assert clean.returncode == 0 and "data flags: 0 →" in clean.stdout, clean.stderr[-2000:]
    assert json.loads((tmp_path / "clean" / "summary.json").read_text())["data_flags"] == []

    early = await _quorum(tmp_path, *args[:7], "--end", "2025-10-08", "--quiet", "--out", str(tmp_path / "early"),
                          DATA_QUALITY="refuse")  # the spike is after the range: nothing to refuse
    assert early.returncode == 0 and "data flags: 0" in early.stdout, early.stderr[-2000:]

    refused = await _quorum(tmp_path, *args, str(tmp_path / "refused"), DATA_QUALITY="refuse")
    _one_error_line(refused, file)
    assert not (tmp_path / "refused").exists()


async def test_demo_refuses_before_touching_anything(spiked: Path, tmp_path: Path) -> None:
    done = await _quorum(tmp_path, "demo", "--data", str(spiked), "--symbols", "BTCUSDT", "--days", "0.1",
                         DATA_QUALITY="refuse", DATABASE_URL=NOWHERE)
    _one_error_line(done, spiked / "BTCUSDT-futures-5m.csv.gz")
    assert not (tmp_path / "var").exists()


async def test_demo_reports_the_spike_at_start_and_runs(spiked: Path, tmp_path: Path) -> None:
    file = spiked / "BTCUSDT-futures-5m.csv.gz"
    try:
        done = await _quorum(tmp_path, "demo", "--data", str(spiked), "--symbols", "BTCUSDT", "--days", "0.02",
                             "--port", str(free_port()))
    finally:
        for pid in servers((tmp_path / "var" / "pgdata").resolve()):  # never leave a server behind
            os.kill(pid, 15)
    assert done.returncode == 0, (done.stdout + done.stderr)[-3000:]
    lines = done.stdout.splitlines()
    assert lines[0] == ("data quality: 4 flags in 1 candle file (bars kept as they are; "
                        "DATA_QUALITY=refuse stops instead)")
    assert lines[3].startswith(f"  {file}: {SPIKE_AT} price_outlier 12274900 ")
    start = next(i for i, ln in enumerate(lines) if ln.startswith("Quorum demo: replaying BTCUSDT"))
    assert start > 4 and "Record: paper" in done.stdout  # the report comes first
