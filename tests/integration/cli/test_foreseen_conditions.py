"""Every foreseen condition, through the real CLI (and `health_server.py`) in a subprocess: one
line naming what failed (the host, file, setting or port) and what to do, never a traceback, at
most three lines on stderr; exit code 2 for bad input, 1 for an unavailable dependency.

Nothing here touches the internet: the exchange and model endpoints point at a closed local port.
The slow cases (retries, the API port's bind retry) would take minutes one after another, so the
module starts every case at once and each test waits for its own process. `quorum run` is the
exception to "one line and exit": with the exchange unreachable it stays up and says so once per
retry, and a SIGTERM ends it cleanly.
"""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass, field
from importlib.metadata import version
from pathlib import Path

import pytest

from tests.conftest import BUNDLED_DATA, ROOT, SHARED_DATA, scratch_database
from tests.fakes.binance_market import FakeBinanceMarket
from tests.outages import free_port

TIMEOUT_S = 240  # per case, on a loaded 2-core machine; most take a few seconds


@dataclass(frozen=True)
class Case:
    argv: list[str]  # after `python -m quorum` (or the script, when it starts with a .py path)
    code: int
    names: tuple[str, ...]  # what the output must name (the host, file, setting, port) and what to do
    env: dict[str, str] = field(default_factory=dict)
    stderr_lines: int = 3  # at most
    said_on: str = "stderr"  # where `names` must appear: "stderr" (the one error line) or "any"


@dataclass
class Context:
    tmp: Path
    closed: int  # a port nothing listens on: "no network"
    held: int  # a port another process listens on
    dbs: dict[str, str]  # fresh databases (no migrations applied) by case id
    bad_data: Path
    bad_file: Path
    fake_exchange: str  # a fake Binance listing BTCUSDT only


def _cases(c: Context) -> dict[str, Case]:
    closed = f"127.0.0.1:{c.closed}"
    backtest = ["backtest", "--quiet", "--out", str(c.tmp / "bt")]
    bt_range = ["--start", "2025-10-06", "--end", "2025-10-08"]
    return {
        "version": Case(["--version"], 0, (f"quorum {version('quorum')}",), said_on="any"),
        "unknown command": Case(["nosuch"], 2, ("nosuch", "quorum --help")),
        "download without network": Case(
            ["download", "--symbols", "BTCUSDT", "--timeframes", "5m", "--since", "2025-01-01",
             "--data-dir", str(c.tmp / "dl")], 1, (closed, "BINANCE_FAPI_URL", "run again")),
        "download into a file": Case(
            ["download", "--symbols", "BTCUSDT", "--since", "2025-01-01", "--data-dir", str(c.bad_file / "dl")],
            2, (str(c.bad_file),)),
        "download bad --since": Case(["download", "--since", "yesterday"], 2, ("yesterday", "2025-01-31")),
        "download unknown symbol": Case(
            ["download", "--symbols", "NOPEUSDT", "--timeframes", "5m", "--since", "2025-01-01",
             "--data-dir", str(c.tmp / "dl-nope")], 2,
            ("NOPEUSDT", "--symbols", c.fake_exchange.removeprefix("http://")),
            env={"BINANCE_FAPI_URL": c.fake_exchange}),
        "decide without network": Case(["decide", "BTCUSDT"], 1, (closed, "BINANCE_FAPI_URL")),
        "decide unknown symbol": Case(["decide", "NOPEUSDT", "--data", str(BUNDLED_DATA)], 2,
                                      ("NOPEUSDT", str(BUNDLED_DATA))),
        "decide missing data directory": Case(["decide", "BTCUSDT", "--data", str(c.tmp / "nowhere")], 2,
                                              (str(c.tmp / "nowhere"),)),
        "decide TIMEFRAMES finer than EXECUTION_TIMEFRAME": Case(
            ["decide", "BTCUSDT", "--data", str(BUNDLED_DATA)], 2, ("TIMEFRAMES", "EXECUTION_TIMEFRAME", "1h"),
            env={"EXECUTION_TIMEFRAME": "1h", "DECISION_TIMEFRAME": "4h"}),
        "decide with Redis down": Case(  # not a failure: the in-process cache stands in, and says so
            ["decide", "BTCUSDT", "--data", str(BUNDLED_DATA)], 0, ("in-process cache", "consensus:"),
            env={"REDIS_URL": f"redis://{closed}/0"}, said_on="any"),
        "report on a database never migrated": Case(  # it applies the migrations, as `run` does
            ["report"], 0, ("trades 0", "win_rate: (no closed trades)"), env={"DATABASE_URL": c.dbs["report"]},
            said_on="any"),
        "readiness on a database never migrated": Case(  # exit 1: the gate fails (no record yet)
            ["readiness"], 1, ("no paper record yet",), env={"DATABASE_URL": c.dbs["readiness"]}, said_on="any"),
        "report with Postgres down": Case(["report"], 1, (closed, "DATABASE_URL"),
                                          env={"DATABASE_URL": f"postgresql://postgres@{closed}/quorum"}),
        "backtest timeframe without matching TIMEFRAMES": Case(
            [*backtest, "--data", str(SHARED_DATA), "--symbols", "BTCUSDT", "--timeframe", "1h",
             "--decision-timeframe", "4h", "--start", "2025-09-01", "--end", "2025-09-10"], 2,
            ("TIMEFRAMES=15m,1h,4h", "--timeframe 1h", "TIMEFRAMES=1h,4h")),
        "backtest bad data file": Case([*backtest, "--data", str(c.bad_data), "--symbols", "ETHUSDT"], 2,
                                       (str(c.bad_data / "ETHUSDT-futures-5m.csv.gz"), "line 501")),
        "scan bad data file": Case(["scan", "--data-dir", str(c.bad_data), "--symbols", "ETHUSDT"], 2,
                                   (str(c.bad_data / "ETHUSDT-futures-5m.csv.gz"), "line 501")),
        "scan --at before the data": Case(["scan", "--data-dir", str(BUNDLED_DATA), "--at", "2019-01-01"], 2,
                                          ("2019-01-01", str(BUNDLED_DATA), "--at")),
        "demo bad data file": Case(
            ["demo", "--data", str(c.bad_data), "--symbols", "ETHUSDT", "--days", "0.1", "--port", str(c.closed)],
            2, (str(c.bad_data / "ETHUSDT-futures-5m.csv.gz"), "line 501")),
        "demo missing data directory": Case(["demo", "--data", str(c.tmp / "nowhere"), "--port", str(c.closed)],
                                            2, (str(c.tmp / "nowhere"), "--data")),
        "backtest bad --start": Case([*backtest, "--data", str(BUNDLED_DATA), "--symbols", "BTCUSDT",
                                      "--start", "2025-13-01"], 2, ("--start", "2025-13-01")),
        "backtest unknown symbol": Case([*backtest, "--data", str(BUNDLED_DATA), "--symbols", "NOPEUSDT"], 2,
                                        ("NOPEUSDT", str(BUNDLED_DATA))),
        "backtest unwritable --out": Case(
            ["backtest", "--quiet", "--data", str(BUNDLED_DATA), "--symbols", "BTCUSDT", *bt_range,
             "--out", str(c.bad_file / "out")], 2, ("--out", str(c.bad_file / "out"))),
        "backtest replay without recorded votes": Case(
            [*backtest, "--data", str(BUNDLED_DATA), "--symbols", "BTCUSDT", *bt_range, "--analyst", "replay"],
            2, ("no recorded votes", "BTCUSDT", "2025-10-06", "DATABASE_URL", "quorum run"),
            env={"DATABASE_URL": c.dbs["replay"]}),
        "health_server.py with the API port in use": Case(
            [str(ROOT / "health_server.py")], 1, (f"127.0.0.1:{c.held}", "API_PORT"),
            env={"API_PORT": str(c.held)}),
        "run with the API port in use": Case(  # after the bind retry (a predecessor's child may be exiting)
            ["run"], 1, (f"127.0.0.1:{c.held}", "API_PORT"),
            env={"API_PORT": str(c.held), "DATABASE_URL": c.dbs["run port"]}),
    }


# `quorum run` stays up with the exchange unreachable: one line per retry, never a traceback
RUN_RETRYING = "run with the exchange unreachable"
CASE_IDS = [*_cases(Context(Path("/x"), 1, 2, {k: "" for k in ("report", "readiness", "replay", "run port")},
                            Path("/x"), Path("/x"), "")), RUN_RETRYING]


def _env(c: Context, extra: dict[str, str]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("QUORUM_", "BINANCE_", "REDIS_", "OPENAI_", "ANTHROPIC_", "DEEPSEEK_"))
           and k not in ("DATABASE_URL", "MODELS", "TIMEFRAMES", "EXECUTION_TIMEFRAME", "DECISION_TIMEFRAME",
                         "SYMBOLS", "API_PORT", "API_HOST", "TRADING_MODE", "LOG_LEVEL")}
    env.update({"BINANCE_FAPI_URL": f"http://127.0.0.1:{c.closed}", "BINANCE_FSTREAM_URL": f"ws://127.0.0.1:{c.closed}",
                "OPENAI_BASE_URL": f"http://127.0.0.1:{c.closed}/v1", "DATABASE_URL": c.dbs["report"],
                "API_HOST": "127.0.0.1", "API_PORT": str(free_port()), "LOG_FORMAT": "json",
                "VAR_DIR": str(c.tmp / "var"), "SYMBOLS": "BTCUSDT", "COLUMNS": "200"})
    env.update(extra)
    return env


def _bad_data(tmp: Path) -> Path:
    """The bundled ETHUSDT 5m file with a broken line 501 (a semicolon for a comma)."""
    d = tmp / "bad-data"
    d.mkdir()
    shutil.copy(BUNDLED_DATA / "ETHUSDT-funding.csv.gz", d)
    with gzip.open(BUNDLED_DATA / "ETHUSDT-futures-5m.csv.gz", "rt") as f:
        lines = f.read().splitlines()
    lines[500] = lines[500].replace(",", ";", 1)
    with gzip.open(d / "ETHUSDT-futures-5m.csv.gz", "wt") as f:
        f.write("\n".join(lines) + "\n")
    return d


@dataclass
class Started:
    proc: subprocess.Popen[bytes]
    out: Path
    err: Path


@pytest.fixture(scope="module")
async def started(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[tuple[Context, dict[str, Started]]]:
    tmp = tmp_path_factory.mktemp("foreseen")
    held = socket.socket()
    held.bind(("127.0.0.1", 0))
    held.listen()
    (tmp / "a-file").write_text("not a directory\n")
    fake = FakeBinanceMarket()
    fake.add_symbol("BTCUSDT")
    await fake.start()
    async with contextlib.AsyncExitStack() as stack:
        stack.push_async_callback(fake.stop)
        dbs = {k: await stack.enter_async_context(scratch_database("quorum_foreseen"))
               for k in ("report", "readiness", "replay", "run port", "run")}
        ctx = Context(tmp, free_port(), held.getsockname()[1], dbs, _bad_data(tmp), tmp / "a-file", fake.rest_root)
        cases = _cases(ctx)
        procs: dict[str, Started] = {}
        try:
            cases[RUN_RETRYING] = Case(["run"], 0, (), env={"DATABASE_URL": dbs["run"]})
            for i, (cid, case) in enumerate(cases.items()):
                procs[cid] = _launch(ctx, case, tmp / f"{i}")
            yield ctx, procs
        finally:
            _kill_all(procs.values())
            held.close()


def _launch(ctx: Context, case: Case, stem: Path) -> Started:
    script = case.argv[:1] if case.argv and case.argv[0].endswith(".py") else ["-m", "quorum", *case.argv[:1]]
    out, err = stem.with_suffix(".out"), stem.with_suffix(".err")
    with out.open("wb") as o, err.open("wb") as e:
        proc = subprocess.Popen([sys.executable, *script, *case.argv[1:]], cwd=ctx.tmp, env=_env(ctx, case.env),
                                stdout=o, stderr=e, start_new_session=True)
    return Started(proc, out, err)


def _kill_all(started: Iterable[Started]) -> None:
    for s in started:
        if s.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(s.proc.pid, signal.SIGKILL)
            s.proc.wait(10)


@pytest.mark.parametrize("case_id", [c for c in CASE_IDS if c != RUN_RETRYING])
async def test_one_line_never_a_traceback(case_id: str, started: tuple[Context, dict[str, Started]]) -> None:
    ctx, procs = started
    case = _cases(ctx)[case_id]
    run = procs[case_id]
    code = await asyncio.to_thread(run.proc.wait, TIMEOUT_S)  # the event loop serves the fake exchange
    out, err = run.out.read_text(), run.err.read_text()
    assert "Traceback" not in out + err, err[-3000:]
    assert code == case.code, f"exit {code}\nstdout: {out[-1500:]}\nstderr: {err[-1500:]}"
    lines = err.splitlines()
    assert len(lines) <= case.stderr_lines, err
    said = lines[-1] if case.said_on == "stderr" and lines else out + err
    for name in case.names:
        assert name in said, f"{name!r} not in:\n{said[-2000:]}"
    if case.said_on == "stderr":  # the last line says what failed and what to do; it is not a log line
        assert said.startswith(("error: ", "configuration error: ")), err


async def test_run_stays_up_and_says_once_per_retry(started: tuple[Context, dict[str, Started]]) -> None:
    """`quorum run` with the exchange unreachable: up, one JSON log line per retry naming the host and
    what to check, then a clean stop on SIGTERM."""
    ctx, procs = started
    run = procs[RUN_RETRYING]
    host = f"127.0.0.1:{ctx.closed}"
    deadline = time.monotonic() + TIMEOUT_S
    waiting: list[dict[str, object]] = []
    while time.monotonic() < deadline and run.proc.poll() is None and not waiting:
        await asyncio.sleep(0.5)
        events = [json.loads(line) for line in run.err.read_text().splitlines() if line.startswith("{")]
        waiting = [e for e in events if e.get("event") == "engine.start_waiting_for_exchange"]
    assert run.proc.poll() is None, "an unreachable exchange must not end `quorum run`: " + run.err.read_text()[-2000:]
    assert waiting and waiting[0]["host"] == host and "BINANCE_FAPI_URL" in str(waiting[0]["action"])
    run.proc.send_signal(signal.SIGTERM)
    assert await asyncio.to_thread(run.proc.wait, 60) == 0
    err = run.err.read_text()
    assert "Traceback" not in err + run.out.read_text()
    retries = [e for e in (json.loads(line) for line in err.splitlines() if line.startswith("{"))
               if e.get("event") == "binance_read_retry"]
    assert retries and all(r["host"] == host for r in retries)  # one line per retry, each naming the host
