"""The live-style fake Binance as its own process (the CI smoke test and the soak run it).

    python -m tests.fakes.binance_live --port N --symbols A,B --data DIR [--clock SPEC] [--shift-to-now ISO]

Loads the data, serves it, prints ONE JSON line on stdout when ready:
{"rest_root": "http://127.0.0.1:N", "ws_root": "ws://127.0.0.1:N", "ccxt_linear_ws": ".../ws", "port": N,
"shift_ms": ..., "now_ms": ..., "symbols": [...]} — `rest_root` is the service's BINANCE_FAPI_URL and
`ws_root` its BINANCE_FSTREAM_URL. Runs until SIGTERM/SIGINT, then closes every connection, prints
one summary line on stderr and exits 0. A bad argument or missing file: one line on stderr, exit 2.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

from quorum.clock import ScaledClock, WallClock
from quorum.market.data_files import DataFileError
from tests.fakes.binance_live import DEFAULT_SYMBOLS, LiveBinanceMarket, NowClock, shift_to_now


def _parse_iso(s: str) -> int:
    dt = datetime.fromisoformat(s.strip().replace("Z", "+00:00"))
    return int((dt if dt.tzinfo else dt.replace(tzinfo=UTC)).timestamp() * 1000)


def _args(argv: Sequence[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="python -m tests.fakes.binance_live", description=(__doc__ or "").split("\n")[0])
    ap.add_argument("--port", type=int, default=0, help="0 = any free port (printed)")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--symbols", default=",".join(DEFAULT_SYMBOLS))
    ap.add_argument("--data", default=os.environ.get("QUORUM_SHARED_DATA",
                                                     str(Path(__file__).resolve().parents[2].parent / "shared/data")))
    ap.add_argument("--clock", default="", help="ScaledClock spec SIM0_MS,WALL0_S,SPEED (default: the wall clock)")
    ap.add_argument("--shift-to-now", default="", metavar="START_ISO",
                    help="serve the data instant START now (shift rounded down to a multiple of 8 h)")
    ap.add_argument("--shift-ms", type=int, default=0, help="explicit shift (multiple of 4 h)")
    ap.add_argument("--tick-s", type=float, default=0.025)
    ap.add_argument("--partial-every-s", type=float, default=0.25, help="0 = only the first partial update")
    return ap.parse_args(argv)


async def _serve(args: argparse.Namespace) -> int:
    clock: NowClock = ScaledClock.parse(args.clock) if args.clock else WallClock()
    shift = shift_to_now(_parse_iso(args.shift_to_now), clock.now_ms()) if args.shift_to_now else args.shift_ms
    fake = LiveBinanceMarket(clock, shift_ms=shift, tick_s=args.tick_s, partial_every_s=args.partial_every_s or None)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    fake.load(args.data, [s.strip().upper() for s in args.symbols.split(",") if s.strip()])
    await asyncio.sleep(0)  # a stop signal that came while loading is seen here
    if stop.is_set():
        return 0
    await fake.start(args.host, args.port)
    print(json.dumps({"rest_root": fake.rest_root, "ws_root": fake.fstream_root, "ccxt_linear_ws": fake.ws_root,
                      "port": fake.port, "shift_ms": shift, "now_ms": fake.now_ms, "clock": args.clock or "wall",
                      "symbols": sorted(fake.five)}), flush=True)
    try:
        await stop.wait()
    finally:
        stats = fake.stats()
        await fake.stop()
    print(json.dumps({"stopped": True, "ws_connects": stats["ws_connects"], "faults": len(stats["faults"]),
                      "requests": sum(sum(v.values()) for v in stats["requests"].values())}),
          file=sys.stderr, flush=True)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = _args(argv)
    try:
        return asyncio.run(_serve(args))
    except (DataFileError, ValueError, OSError) as exc:
        print(f"binance_live: {exc}", file=sys.stderr, flush=True)
        return 2


if __name__ == "__main__":
    sys.exit(main())
