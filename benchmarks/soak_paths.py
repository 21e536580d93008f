"""The soak checker's own arithmetic (pure numpy, nothing from Quorum's fill model or venue):
the fake Binance's documented 1-minute path, the fill a crossed stop should get, and intervals
of simulated time.

THE 1-MINUTE PATH, as tests/fakes/binance_live.py documents it: within a 5m bar (o, h, l, c) the
price moves linearly through o (minute 0), N (1), F (3), c (5), where N, the nearer extreme, is l
when |o − l| ≤ |h − o|, else h, and F is the other one; so minute 2 is (N + F) / 2 and minute 4
is (F + c) / 2. 1m bar i opens at point i, closes at point i + 1, its high/low are the larger/
smaller of the two. Written again here on purpose: the checker must not share the fake's code.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

MINUTE_MS = 60_000
FIVE_MS = 5 * MINUTE_MS


@dataclass(frozen=True)
class MinuteBars:
    """1m bars of one symbol in SERVED time (data time + shift): open times and prices."""

    t: np.ndarray
    o: np.ndarray
    h: np.ndarray
    lo: np.ndarray
    c: np.ndarray

    def __len__(self) -> int:
        return len(self.t)

    def index(self, time_ms: int) -> int | None:
        """Index of the bar opening exactly at `time_ms`, or None."""
        i = int(np.searchsorted(self.t, time_ms, side="left"))
        return i if i < len(self.t) and int(self.t[i]) == time_ms else None

    def first_cross(self, stop: float, sell: bool, from_ms: int, through_ms: int) -> int | None:
        """Index of the first bar with open time in [from_ms, through_ms] whose range reaches
        `stop`: a sell stop (a long's) when low ≤ stop, a buy stop (a short's) when high ≥ stop."""
        a = int(np.searchsorted(self.t, from_ms, side="left"))
        b = int(np.searchsorted(self.t, through_ms, side="right"))
        if b <= a:
            return None
        hit = self.lo[a:b] <= stop if sell else self.h[a:b] >= stop
        k = int(np.argmax(hit))
        return a + k if hit[k] else None


def minute_path(open_ms: np.ndarray, o: np.ndarray, h: np.ndarray, lo: np.ndarray,
                c: np.ndarray) -> MinuteBars:
    """The five 1m bars of every 5m bar (vectorised; same float operations as the documented path)."""
    o, h, lo, c = (np.asarray(x, dtype=np.float64) for x in (o, h, lo, c))
    low_first = np.abs(o - lo) <= np.abs(h - o)
    near = np.where(low_first, lo, h)
    far = np.where(low_first, h, lo)
    pts = np.stack([o, near, (near + far) / 2, far, (far + c) / 2, c], axis=1)  # (n, 6)
    first, second = pts[:, :5], pts[:, 1:]
    t = (np.asarray(open_ms, dtype=np.int64)[:, None] + np.arange(5, dtype=np.int64) * MINUTE_MS).ravel()
    return MinuteBars(t, first.ravel(), np.maximum(first, second).ravel(), np.minimum(first, second).ravel(),
                      second.ravel())


def load_minutes(data_dir: Path, symbol: str, from_ms: int, to_ms: int, shift_ms: int = 0) -> MinuteBars:
    """1m bars (served time) covering [from_ms, to_ms] from `<data_dir>/<SYMBOL>-futures-5m.csv.gz`."""
    df = pd.read_csv(data_dir / f"{symbol}-futures-5m.csv.gz")
    ts = df["timestamp_ms"].to_numpy(np.int64) + shift_ms
    keep = (ts >= from_ms - FIVE_MS) & (ts <= to_ms + FIVE_MS)
    return minute_path(ts[keep], *(df[k].to_numpy(np.float64)[keep] for k in ("open", "high", "low", "close")))


def load_funding_rates(data_dir: Path, symbol: str, shift_ms: int = 0) -> dict[int, float]:
    """Served funding time → the rate in `<SYMBOL>-funding.csv.gz` (empty when there is no file)."""
    path = data_dir / f"{symbol}-funding.csv.gz"
    if not path.exists():
        return {}
    df = pd.read_csv(path)
    return {int(t) + shift_ms: float(r) for t, r in zip(df["timestamp_ms"], df["funding_rate"], strict=True)}


def stop_reference(bars: MinuteBars, i: int, stop: float, sell: bool) -> float:
    """The reference price of a stop crossed on bar i: the stop, or the open when the bar opened beyond it."""
    o = float(bars.o[i])
    return min(o, stop) if sell else max(o, stop)


def opened_beyond_take_profit(bars: MinuteBars, i: int, tp: float, sell: bool) -> bool:
    """True when bar i opened at or beyond a take-profit (a long's TP, a sell, is above the price)."""
    o = float(bars.o[i])
    return o >= tp if sell else o <= tp


def market_fill_price(reference: float, quantity: float, sell: bool, spread_bps: float,
                      impact_bps_per_100k: float) -> float:
    """A market order's price: reference ∓ (half the spread + size impact); a sell gets less."""
    notional = abs(quantity) * reference
    slip = (spread_bps / 2 + impact_bps_per_100k * notional / 100_000) / 10_000
    return reference * (1 - slip) if sell else reference * (1 + slip)


# --- the record: positions from the venue's trades -----------------------------------------------
def signed_quantity(trade: Mapping[str, Any]) -> float:
    """A trade's effect on the position: buy +, sell −."""
    return float(trade["quantity"]) if trade["side"] == "buy" else -float(trade["quantity"])


def flat_points(trades: Sequence[Mapping[str, Any]], tol: float = 1e-9) -> list[tuple[int, Mapping[str, Any]]]:
    """(time, last trade at that time) of every instant after whose trades the symbol is flat;
    `trades` of one symbol in execution order."""
    out: list[tuple[int, Mapping[str, Any]]] = []
    pos = 0.0
    for k, t in enumerate(trades):
        pos += signed_quantity(t)
        last_at_time = k + 1 == len(trades) or int(trades[k + 1]["time_ms"]) != int(t["time_ms"])
        if last_at_time and abs(pos) <= tol:
            out.append((int(t["time_ms"]), t))
    return out


# --- intervals of simulated time (ms; half-open [start, end)) ------------------------------------
def overlap_ms(start: int, end: int, windows: Iterable[tuple[int, int]]) -> int:
    """How much of [start, end) lies inside the (possibly overlapping) `windows`."""
    total, cursor = 0, start
    for a, b in sorted(windows):
        a, b = max(a, cursor), min(b, end)
        if b > a:
            total += b - a
            cursor = b
    return total


@dataclass(frozen=True)
class Segment:
    """A stretch of time with a constant position and set of live stops on one symbol."""

    start: int
    end: int
    position: float  # signed quantity
    stop_qty: float  # the largest live stop's quantity (0 = none)


def coverage_segments(trades: Sequence[tuple[int, float]], stops: Sequence[tuple[int, int, float]],
                      end_ms: int, tol: float = 1e-9) -> list[Segment]:
    """Segments of [first event, end_ms) where a position exists. `trades`: (time, signed qty) in
    execution order; `stops`: (start, end, qty), live on [start, end)."""
    events = sorted({t for t, _ in trades} | {s for s, _, _ in stops} | {e for _, e, _ in stops} | {end_ms})
    events = [t for t in events if t <= end_ms]
    starts = sorted(range(len(stops)), key=lambda j: stops[j][0])
    ends = sorted(range(len(stops)), key=lambda j: stops[j][1])
    pos, ti, si, ei = 0.0, 0, 0, 0
    live: dict[int, float] = {}
    out: list[Segment] = []
    for k, t in enumerate(events[:-1]):
        while ti < len(trades) and trades[ti][0] <= t:
            pos += trades[ti][1]
            ti += 1
        while si < len(starts) and stops[starts[si]][0] <= t:
            live[starts[si]] = stops[starts[si]][2]
            si += 1
        while ei < len(ends) and stops[ends[ei]][1] <= t:
            live.pop(ends[ei], None)
            ei += 1
        if abs(pos) > tol:
            out.append(Segment(t, events[k + 1], pos, max(live.values(), default=0.0)))
    return out
