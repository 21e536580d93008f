"""Soak: weeks of unattended paper trading on live-style data, compressed, with every fault a real
deployment meets — and an independent check of the record it leaves.

It runs the real `quorum run` (the `quorum` CLI in its own process, paper mode) with the real
ccxt/ccxt.pro clients against the live-style fake Binance (tests/fakes/binance_live.py: the real
candles and funding of ../shared/data, 1m bars derived by its documented path, REST + websockets),
two fake language models speaking the OpenAI and Anthropic wire formats beside the rules analyst,
and a Postgres and a Redis of its own. Only the clock is replaced, through the test-only seam
QUORUM_TEST_CLOCK (`quorum.clock.ScaledClock`), shared by the fake exchange and the service — also
across the SIGKILL restarts the soak performs on the service's own process. Outage durations are
wall seconds.

On a fixed seeded schedule (benchmarks/soak_faults.py) it injects exchange 5xx bursts, late answers,
a 429 then a 418, websocket drops, model 5xx and time-outs, a Postgres outage, a Redis outage and
SIGKILLs (one while a stop is being crossed). /health is polled every 0.25 s. At the end it stops
the service with SIGTERM and judges the record with benchmarks/soak_check.py. Prints JSON, then a
one-line summary; `--assert` exits 1 unless every goal is met.

    uv run python benchmarks/soak_paper.py [--days 28] [--speed 400] [--seed 11] [--ci] [--assert]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks.soak_check import check_record  # noqa: E402
from benchmarks.soak_faults import schedule  # noqa: E402
from benchmarks.soak_service import ServiceRunner, Soak  # noqa: E402

DATA = Path(os.environ.get("QUORUM_SHARED_DATA", ROOT.parent / "shared" / "data"))
SYMBOLS = ("BTCUSDT", "ETHUSDT", "SOLUSDT", "BNBUSDT", "XRPUSDT", "DOGEUSDT")
DAY_MS = 86_400_000


def _args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    ap.add_argument("--days", type=float, default=28.0, help="simulated days (after the start)")
    ap.add_argument("--speed", type=float, default=400.0, help="simulated seconds per wall second")
    ap.add_argument("--start", default="2025-09-20", help="data instant the run starts at (UTC)")
    ap.add_argument("--seed", type=int, default=11)
    ap.add_argument("--kills", type=int, default=5, help="SIGKILL restarts (one of them while a stop is crossed)")
    ap.add_argument("--outage-s", type=float, default=60.0, help="wall seconds of the Postgres and Redis outages")
    ap.add_argument("--work-dir", default=str(ROOT / "var" / "soak"), help="logs and the service's files")
    ap.add_argument("--ci", action="store_true", help="the short variant: 2 simulated days, every fault kind")
    ap.add_argument("--assert", dest="check", action="store_true", help="exit 1 unless every goal is met")
    ap.add_argument("--keep-db", action="store_true", help="leave the soak's Postgres running to inspect it")
    args = ap.parse_args(argv)
    if args.ci:
        args.days = min(args.days, 2.0)
    return args


def goals(r: dict[str, Any]) -> dict[str, bool]:
    """The issue's goals, each true or false."""
    return {
        "no_unexpected_exits": r["unexpected_exits"] == 0,
        "no_dark_seconds": r["health_dark_seconds"] == 0,
        "no_unprotected_beyond_interval": r["unprotected_position_seconds_beyond_interval"] == 0,
        "no_duplicates": r["duplicate_client_ids"] == 0,
        "no_lost_fills": r["lost_fills"] == 0,
        "no_missed_stop_fills": r["missed_stop_fills"] == 0,
        "identity_gap_below_1_cent": r["equity_identity_gap_usd"] is not None and r["equity_identity_gap_usd"] < 0.01,
        "funding_at_published_rate": r["funding_events"] == r["funding_events_at_published_rate"],
        "rss_growth_below_10pct": r["rss_growth_pct"] is not None and r["rss_growth_pct"] < 10.0,
        "clean_sigterm": r["sigterm_exit_code"] == 0,
        "every_fault_kind": all(n > 0 for n in r["faults_injected"].values()),
        "judged_every_bar": r["caught_up_at_end"],
    }


def summary(r: dict[str, Any]) -> str:
    met = sum(r["goals"].values())
    return (f"soak: {r['simulated_days']:.1f} simulated days × {len(r['symbols'])} symbols in "
            f"{r['wall_seconds'] / 60:.1f} min; cycles {r['decision_cycles_done']}/{r['decision_cycles_expected']}; "
            f"faults {sum(r['faults_injected'].values())}; exits {r['unexpected_exits']}; dark "
            f"{r['health_dark_seconds']:.1f}s of {r['health_polls']} polls; missed stops {r['missed_stop_fills']}; "
            f"lost fills {r['lost_fills']}; dupes {r['duplicate_client_ids']}; identity gap "
            f"{r['equity_identity_gap_usd']}; funding {r['funding_events_at_published_rate']}/{r['funding_events']} "
            f"published; RSS {r['rss_mb_start']}→{r['rss_mb_end']} MB; lag p50/max {r['engine_lag_s_p50']}/"
            f"{r['engine_lag_s_max']} s (drain {r['drain_wall_s']} s); goals {met}/{len(r['goals'])}")


def failure_excerpt(log: Path, lines: int = 25) -> str:
    """The service log's last lines before each start and at its end: why a process ended."""
    text = log.read_text(errors="replace").splitlines() if log.exists() else []
    marks = [i for i, line in enumerate(text) if line.startswith("===== soak: starting")] + [len(text)]
    out = []
    for i in marks[1:]:
        out.append(f"--- service log before line {i} ---")
        out.extend(line[:300] for line in text[max(0, i - lines):i])
    return "\n".join(out)


async def main(argv: list[str] | None = None) -> int:
    args = _args(argv)
    from quorum.backtest.request import parse_time

    start_ms = parse_time(args.start, "start")
    assert start_ms is not None
    end_ms = start_ms + int(args.days * DAY_MS)
    faults = schedule(args.seed, start_ms, end_ms, kills=args.kills)
    work = Path(args.work_dir)
    await asyncio.to_thread(work.mkdir, parents=True, exist_ok=True)
    soak = Soak(data=DATA, symbols=SYMBOLS, start_ms=start_ms, end_ms=end_ms, speed=args.speed,
                outage_s=args.outage_s, work_dir=work, faults=faults, keep=args.keep_db)
    wall0 = time.monotonic()
    async with soak:
        runner = ServiceRunner(soak)
        await runner.run()
        record = await check_record(soak.database_url, data_dir=DATA, symbols=SYMBOLS, start_ms=start_ms,
                                    end_ms=end_ms, down=runner.down_windows(), monitor_ms=60_000,
                                    initial_capital=soak.initial_capital)
    report = runner.report(record, simulated_days=args.days, wall_seconds=time.monotonic() - wall0)
    report["goals"] = goals(report)
    if args.keep_db:
        report["database_url"] = soak.database_url
    print(json.dumps(report, indent=2, default=str))
    print(summary(report))
    if args.check and not all(report["goals"].values()):
        print(failure_excerpt(work / "service.log"))
    return 0 if (all(report["goals"].values()) or not args.check) else 1


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
