"""Scanner benchmark. Prints one JSON object and a one-line summary.

1. snapshot build: 100 symbols × 3 timeframes (15m/1h/4h) × 500 bars — indicators computed
   from scratch for every series (the live path), one snapshot per symbol, market breadth;
   synthetic symbols are 500-bar windows cut at different offsets from the shared 5m files.
   Target ≤ 0.25 s. Also reported: the same with `Snapshot.hash` of every snapshot, and the
   backtest path (one snapshot lookup on precomputed arrays).
2. REST weight per cycle at 100 symbols in steady state (websocket mode), measured on the wire
   by the fake Binance server with the real ccxt client. Target ≤ 5 % of 2400/min.
3. peak RSS of the process.

Run: `uv run python benchmarks/bench_snapshot.py [--data ../shared/data] [--symbols 100]`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "src"))

import numpy as np  # noqa: E402

from quorum.config import Settings  # noqa: E402
from quorum.market.data_files import CandleSeries, discover, load_candles, resample  # noqa: E402
from quorum.market.snapshot import SnapshotBuilder, build_snapshots  # noqa: E402

TFS = ("15m", "1h", "4h")
BARS = 500


def synthetic_universe(data_dir: Path, n_symbols: int) -> tuple[dict[str, dict[str, CandleSeries]], int]:
    """n_symbols × {tf: 500-bar series}, all ending at the same time t (windows of real data)."""
    bases = {}
    for sym, ds in discover(data_dir).items():
        if "5m" in ds.candles:
            five = load_candles(ds.candles["5m"], sym, "5m")
            bases[sym] = {tf: resample(five, tf) for tf in TFS}
    names = sorted(bases)
    out: dict[str, dict[str, CandleSeries]] = {}
    t_common = 1_800_000_000_000  # on the 4h grid; every window is shifted to end here
    for k in range(n_symbols):
        src = bases[names[k % len(names)]]
        shift = (k // len(names)) * 7  # different 4h offsets → different windows per synthetic symbol
        four = src["4h"]
        end4 = len(four) - 1 - shift
        t = int(four.open_ms[end4])  # a 4h boundary: the window ends with bars closed at t
        series = {}
        for tf, s in src.items():
            i = s.closed_count(t)
            w = s.slice(i - BARS, i)
            series[tf] = CandleSeries(f"S{k:03d}USDT", tf, w.open_ms - (t - t_common), w.open, w.high,
                                      w.low, w.close, w.volume)
        out[f"S{k:03d}USDT"] = series
    return out, t_common


def bench_build(universe: dict[str, dict[str, CandleSeries]], t: int, repeats: int) -> dict[str, float]:
    times, hashed, lookups, cpu = [], [], [], []
    for _ in range(repeats):
        t0 = time.perf_counter()
        c0 = time.process_time()
        builders = [SnapshotBuilder(sym, series, TFS) for sym, series in universe.items()]
        snaps = build_snapshots(builders, t)
        cpu.append(time.process_time() - c0)
        t1 = time.perf_counter()
        for s in snaps.values():
            _ = s.hash
        t2 = time.perf_counter()
        build_snapshots(builders, t)
        t3 = time.perf_counter()
        times.append(t1 - t0)
        hashed.append(t2 - t0)
        lookups.append(t3 - t2)
    assert all(len(s.timeframes) == 3 for s in snaps.values())
    assert all(v.ema200 is not None for s in snaps.values() for v in s.timeframes)
    return {
        "build_s_min": round(min(times), 4), "build_s_median": round(statistics.median(times), 4),
        "build_cpu_s_median": round(statistics.median(cpu), 4),
        "build_plus_hash_s_median": round(statistics.median(hashed), 4),
        "lookup_only_s_median": round(statistics.median(lookups), 4),
    }


async def bench_weight(n_symbols: int, data_dir: Path) -> dict[str, float]:
    from tests.fakes.binance_market import FakeBinanceMarket, SymbolInfo

    from quorum.market.live import LiveMarketData, make_exchange

    five = load_candles(data_dir / "BTCUSDT-futures-5m.csv.gz")
    series = {tf: resample(five, tf) for tf in ("5m", *TFS)}
    start = int(five.open_ms[-1]) // 14_400_000 * 14_400_000 - 14_400_000 + 2_000
    fake = FakeBinanceMarket(now_ms=start)
    for k in range(n_symbols):
        fake.add_symbol(f"S{k:03d}USDT", SymbolInfo(quote_volume=1e9 + k), **series)
    await fake.start()

    class Clock:
        def now_ms(self) -> int:
            return fake.now_ms

    settings = Settings(_env_file=None, timeframes=list(TFS), execution_timeframe="5m",  # type: ignore[call-arg]
                        universe_size=n_symbols, min_quote_volume_usd=0)
    live = LiveMarketData(settings, exchange=make_exchange(fake.rest_root, fake.ws_root, enableRateLimit=False),
                          clock=Clock(), ws_grace_s=10.0)
    try:
        await live.start()
        backfill = fake.total_weight()
        deadline = time.monotonic() + 30
        while len(fake.subscribed()) < n_symbols * 4 and time.monotonic() < deadline:  # noqa: ASYNC110
            await asyncio.sleep(0.05)
        t = start - 2_000
        await live.snapshots(t)  # first cycle
        cycles = []
        for _ in range(3):
            t += 900_000
            await fake.advance_to(t + 1_000)
            w0 = fake.total_weight()
            c0 = time.perf_counter()
            snaps = await live.snapshots(t)
            cycles.append((fake.total_weight() - w0, live.stats["last_cycle_weight"], time.perf_counter() - c0))
        assert len(snaps) == n_symbols
        wire = max(c[0] for c in cycles)
        per_min = wire / (settings.scan_interval_seconds / 60)
        return {
            "symbols": n_symbols, "backfill_weight": backfill,
            "cycle_weight_wire": wire, "cycle_weight_counted": max(c[1] for c in cycles),
            "cycle_weight_pct_of_2400": round(100 * wire / 2400, 2),
            "weight_per_min_at_scan_interval": round(per_min, 2),
            "weight_per_min_pct_of_2400": round(100 * per_min / 2400, 3),
            "rest_fallbacks": live.stats["rest_fallbacks"], "cycle_s_median": round(
                statistics.median(c[2] for c in cycles), 3),
        }
    finally:
        await live.close()
        await fake.stop()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    ap.add_argument("--symbols", type=int, default=100)
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--skip-weight", action="store_true")
    args = ap.parse_args()
    universe, t = synthetic_universe(args.data, args.symbols)
    out: dict[str, object] = {"symbols": args.symbols, "timeframes": list(TFS), "bars": BARS}
    out["snapshot"] = bench_build(universe, t, args.repeats)
    if not args.skip_weight:
        out["rest_weight"] = asyncio.run(bench_weight(args.symbols, args.data))
    out["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    print(json.dumps(out, indent=2))
    snap = out["snapshot"]
    rw = out.get("rest_weight") or {}
    print(f"SUMMARY build {snap['build_s_median']}s wall, {snap['build_cpu_s_median']}s CPU "  # type: ignore[index]
          f"(target 0.25) | cycle weight "
          f"{rw.get('cycle_weight_wire')} = {rw.get('cycle_weight_pct_of_2400')}% of 2400 (target 5) | "
          f"peak RSS {out['peak_rss_mb']} MB")


if __name__ == "__main__":
    np.seterr(all="ignore")
    main()
