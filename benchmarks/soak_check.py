"""The soak's independent checker: did the paper venue (and Quorum's own record) do the right thing?

`check_record(database_url, ...)` reads a finished paper session's Postgres record and judges it
with code of its own — the fake Binance's documented 1-minute path re-implemented from its
docstring (benchmarks/soak_paths.py), the stop/take-profit rule and slippage written out again;
nothing from Quorum's fill model, exits or venue is imported. It returns a JSON-able dict:

- `missed_stop_fills`: reduce-only stop_market orders whose outcome differs from the path: crossed
  but not filled, filled at another 1m bar or price, filled although never crossed (+ details);
- `unprotected_position_seconds` and friends: time a position existed with no live stop;
- `duplicate_client_ids`, `lost_fills`, `equity_identity_gap_usd` (venue books and ledger),
  funding at the published rate, decision cycles done vs expected.

Times are venue (served) times; `shift_ms` = served − data time. Standalone:

    python benchmarks/soak_check.py --database-url URL --data-dir ../shared/data --symbols BTCUSDT,ETHUSDT \\
        --start-ms S --end-ms E
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from bisect import bisect_left
from collections import Counter, defaultdict
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import asyncpg

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks.soak_paths import (  # noqa: E402
    MINUTE_MS,
    MinuteBars,
    coverage_segments,
    flat_points,
    load_funding_rates,
    load_minutes,
    market_fill_price,
    opened_beyond_take_profit,
    overlap_ms,
    signed_quantity,
    stop_reference,
)

QTY_TOL = 1e-9
PRICE_RTOL = 1e-6
DECISION_MS = 15 * MINUTE_MS
Row = dict[str, Any]


async def _load(database_url: str, account: str, mode: str) -> dict[str, Any]:
    conn = await asyncpg.connect(database_url)
    try:
        q = {
            "orders": """SELECT client_order_id, symbol, side, type, reduce_only, quantity::float8 AS quantity,
                           stop_price::float8 AS stop_price, state, time_ms, closed_ms
                         FROM paper_orders WHERE account=$1 ORDER BY exchange_order_id""",
            "trades": """SELECT trade_id, client_order_id, symbol, side, quantity::float8 AS quantity,
                           price::float8 AS price, fee::float8 AS fee, realized_pnl::float8 AS realized_pnl,
                           reason, time_ms FROM paper_trades WHERE account=$1 ORDER BY time_ms, trade_id""",
            "funding": """SELECT symbol, time_ms, rate::float8 AS rate, mark_price::float8 AS mark_price,
                            quantity::float8 AS quantity, amount::float8 AS amount
                          FROM paper_funding WHERE account=$1 ORDER BY time_ms, symbol""",
        }
        out: dict[str, Any] = {k: [dict(r) for r in await conn.fetch(sql, account)] for k, sql in q.items()}
        wallet = await conn.fetchval("SELECT wallet_balance::float8 FROM paper_accounts WHERE account=$1", account)
        out["wallet"] = None if wallet is None else float(wallet)
        m = {
            "our_orders": """SELECT client_order_id, purpose, decision_id, state, error FROM orders WHERE mode=$1""",
            "fills": """SELECT client_order_id, trade_id, position_id, side, quantity::float8 AS quantity,
                          price::float8 AS price, fee::float8 AS fee FROM fills WHERE mode=$1""",
            "positions": """SELECT id, side, status, entry_price::float8 AS entry_price, net_pnl::float8 AS net_pnl,
                              funding::float8 AS funding FROM positions WHERE mode=$1""",
            "decision_times": """SELECT DISTINCT (extract(epoch FROM at) * 1000)::bigint AS t
                                 FROM decisions WHERE mode=$1""",
        }
        out.update({k: [dict(r) for r in await conn.fetch(sql, mode)] for k, sql in m.items()})
        return out
    finally:
        await conn.close()


class StopJudge:
    """What each reduce-only stop_market order should have done on the 1m path: fill on the first
    1m bar opening at or after its placement (`time_ms`), before it ended otherwise (cancelled,
    or the position closed by something else), whose range reaches the stop — at that bar's open
    time, at the stop (the open if the bar opened beyond it) ∓ slippage. On the bar where a
    take-profit closed the position, the stop comes first unless the bar opened beyond the TP."""

    def __init__(self, data: dict[str, Any], bars: dict[str, MinuteBars], end_ms: int, spread_bps: float,
                 impact_bps_per_100k: float) -> None:
        self.bars, self.end_ms = bars, end_ms
        self.spread, self.impact = spread_bps, impact_bps_per_100k
        self.orders = {o["client_order_id"]: o for o in data["orders"]}
        self.trades_by_cid: dict[str, list[Row]] = defaultdict(list)
        by_symbol: dict[str, list[Row]] = defaultdict(list)
        for t in data["trades"]:
            self.trades_by_cid[t["client_order_id"]].append(t)
            by_symbol[t["symbol"]].append(t)
        self.flat = {s: flat_points(ts) for s, ts in by_symbol.items()}
        self.flat_times = {s: [t for t, _ in pts] for s, pts in self.flat.items()}
        self.tps: dict[str, list[Row]] = defaultdict(list)
        for o in data["orders"]:
            if o["type"] == "take_profit_market":
                self.tps[o["symbol"]].append(o)

    def _ended_otherwise(self, o: Row) -> tuple[int, Mapping[str, Any]] | None:
        """When and by which trade the position ended other than by this stop (None: it did not)."""
        sym = o["symbol"]
        k = bisect_left(self.flat_times.get(sym, []), int(o["time_ms"]))
        if k == len(self.flat_times.get(sym, [])):
            return None
        t, last = self.flat[sym][k]
        return None if last["client_order_id"] == o["client_order_id"] else (t, last)

    def _tp_should_win(self, o: Row, bars: MinuteBars, i: int) -> Row | None:
        """A take-profit live on bar i that the bar opened beyond (it fills first) without a fill there."""
        t = int(bars.t[i])
        for tp in self.tps.get(o["symbol"], []):
            live = int(tp["time_ms"]) <= t and (tp["closed_ms"] is None or int(tp["closed_ms"]) >= t)
            if live and tp["side"] == o["side"] and opened_beyond_take_profit(bars, i, float(tp["stop_price"]),
                                                                              o["side"] == "sell"):
                if not any(int(x["time_ms"]) == t for x in self.trades_by_cid.get(tp["client_order_id"], [])):
                    return tp
        return None

    @staticmethod
    def _live_on(o: Row, t: int) -> bool:
        """Could the stop trigger on the 1m bar opening at t? (Cancelled at t: no, the bar came
        after; expired at t: yes, the fill that expired it happened on that bar.)"""
        closed = o["closed_ms"]
        if int(o["time_ms"]) > t or (closed is not None and int(closed) < t):
            return False
        return not (o["state"] == "cancelled" and closed is not None and int(closed) <= t)

    def judge(self, o: Row) -> Row | None:
        """None when the order did what the path says; else a detail of what went wrong."""
        bars = self.bars[o["symbol"]]
        sell, stop, start = o["side"] == "sell", float(o["stop_price"]), int(o["time_ms"])
        own = self.trades_by_cid.get(o["client_order_id"], [])
        why, i = None, None
        if own:
            fill = own[0]
            i = bars.first_cross(stop, sell, start, int(fill["time_ms"]))
            if i is None:
                why = "filled although never crossed"
            elif int(bars.t[i]) != int(fill["time_ms"]):
                why = "filled at another bar"
            else:
                ref = stop_reference(bars, i, stop, sell)
                want = market_fill_price(ref, float(fill["quantity"]), sell, self.spread, self.impact)
                if abs(float(fill["price"]) - want) > PRICE_RTOL * want:
                    why = "filled at another price"
                elif fill["reason"] != "stop":
                    why = f"fill reason {fill['reason']!r}"
                elif (tp := self._tp_should_win(o, bars, i)) is not None:
                    why = f"take-profit {tp['client_order_id']} opened beyond on that bar and should have filled first"
        elif o["state"] == "filled":
            why, i = "state filled without a trade", bars.first_cross(stop, sell, start, self.end_ms - MINUTE_MS)
        else:
            last = self.end_ms - MINUTE_MS  # bars that closed before the run ended
            if o["state"] in ("cancelled", "expired") and o["closed_ms"] is not None:
                last = min(last, int(o["closed_ms"]) - 1)
            ended = self._ended_otherwise(o)
            if ended is not None:
                last = min(last, ended[0] - 1)
            i = bars.first_cross(stop, sell, start, last)
            if i is not None:
                why = "crossed but not filled"
            elif ended is not None and ended[1]["reason"] == "take_profit" and self._live_on(o, ended[0]):
                # stop and take-profit on one bar: the stop first, unless the bar opened beyond the TP
                j, tp = bars.index(ended[0]), self.orders.get(ended[1]["client_order_id"])
                if j is not None and tp is not None and bars.first_cross(stop, sell, ended[0], ended[0]) == j \
                        and not opened_beyond_take_profit(bars, j, float(tp["stop_price"]), sell):
                    why, i = "stop and take-profit on one bar: the stop comes first", j
        if why is None:
            return None
        detail: Row = {"client_order_id": o["client_order_id"], "symbol": o["symbol"], "side": o["side"],
                       "stop_price": stop, "placed_ms": start, "why": why, "state": o["state"],
                       "closed_ms": o["closed_ms"], "expected_time_ms": None, "expected_reference": None,
                       "actual_time_ms": int(own[0]["time_ms"]) if own else None,
                       "actual_price": float(own[0]["price"]) if own else None}
        if i is not None:
            ref = stop_reference(bars, i, stop, sell)
            qty = float(own[0]["quantity"]) if own else float(o["quantity"])
            detail.update(expected_time_ms=int(bars.t[i]), expected_reference=ref,
                          expected_price=market_fill_price(ref, qty, sell, self.spread, self.impact))
        return detail


def _stop_fills(data: dict[str, Any], bars: dict[str, MinuteBars], end_ms: int, spread_bps: float,
                impact: float) -> dict[str, Any]:
    judge = StopJudge(data, bars, end_ms, spread_bps, impact)
    stops = [o for o in data["orders"] if o["type"] == "stop_market" and o["reduce_only"]]
    missed: list[Row] = []
    checked = unchecked = 0
    for o in stops:
        if o["symbol"] not in bars or o["stop_price"] is None:
            unchecked += 1
            continue
        checked += 1
        if (d := judge.judge(o)) is not None:
            missed.append(d)
    stop_cids = {o["client_order_id"] for o in stops}
    for t in data["trades"]:  # a stop fill must belong to a stop order
        if t["reason"] == "stop" and t["client_order_id"] not in stop_cids:
            missed.append({"client_order_id": t["client_order_id"], "symbol": t["symbol"], "side": t["side"],
                           "why": "stop fill without a stop order", "actual_time_ms": int(t["time_ms"]),
                           "actual_price": float(t["price"])})
    return {"missed_stop_fills": len(missed), "missed_stop_details": missed[:10], "stops_checked": checked,
            "stops_unchecked": unchecked,
            "liquidations": sum(1 for t in data["trades"] if t["client_order_id"].startswith("liquidation-"))}


def _protection(data: dict[str, Any], end_ms: int, monitor_ms: int,
                down: Sequence[tuple[int, int]]) -> dict[str, Any]:
    trades: dict[str, list[tuple[int, float]]] = defaultdict(list)
    for t in data["trades"]:
        trades[t["symbol"]].append((int(t["time_ms"]), signed_quantity(t)))
    stops: dict[str, list[tuple[int, int, float]]] = defaultdict(list)
    for o in data["orders"]:
        if o["type"] == "stop_market" and o["reduce_only"]:
            start = int(o["time_ms"])
            end = int(o["closed_ms"]) if o["closed_ms"] is not None else end_ms
            stops[o["symbol"]].append((start, max(start, end), float(o["quantity"])))
    episodes: list[Row] = []
    undersized_ms = 0
    for sym in sorted(trades):
        current: Row | None = None
        for seg in coverage_segments(trades[sym], stops.get(sym, []), end_ms, QTY_TOL):
            if seg.stop_qty > 0 and seg.stop_qty < abs(seg.position) - QTY_TOL:
                undersized_ms += seg.end - seg.start
            if seg.stop_qty > 0:
                continue
            if current is not None and current["end_ms"] == seg.start:
                current["end_ms"] = seg.end
            else:
                current = {"symbol": sym, "start_ms": seg.start, "end_ms": seg.end}
                episodes.append(current)
    for e in episodes:
        e["seconds"] = (e["end_ms"] - e["start_ms"]) / 1000
        e["while_down_seconds"] = overlap_ms(e["start_ms"], e["end_ms"], down) / 1000
    worst = sorted(episodes, key=lambda e: -e["seconds"])
    return {"unprotected_position_seconds": sum(e["seconds"] for e in episodes),
            "unprotected_beyond_interval_seconds": sum(max(0.0, e["seconds"] - monitor_ms / 1000) for e in episodes),
            "unprotected_while_down_seconds": sum(e["while_down_seconds"] for e in episodes),
            "unprotected_episodes": worst[:10], "undersized_stop_seconds": undersized_ms / 1000}


def _duplicates(data: dict[str, Any]) -> dict[str, Any]:
    def extra(keys: Sequence[Any]) -> int:  # occurrences beyond the first
        return sum(n - 1 for n in Counter(keys).values())

    sent = {o["client_order_id"] for o in data["orders"]}
    parts = {
        "venue_orders": extra([o["client_order_id"] for o in data["orders"]]),
        "our_orders": extra([o["client_order_id"] for o in data["our_orders"]]),
        "entries_per_decision": extra([o["decision_id"] for o in data["our_orders"] if o["purpose"] == "entry"
                                       and o["decision_id"] is not None and o["client_order_id"] in sent]),
        "venue_rejected_as_duplicate": sum(1 for o in data["our_orders"] if o["error"] and (
            "duplicat" in o["error"].lower() or "-4116" in o["error"])),
    }
    return {"duplicate_client_ids": sum(parts.values()), "duplicate_parts": parts}


def _lost_fills(data: dict[str, Any]) -> dict[str, Any]:
    ours = {f["trade_id"]: f for f in data["fills"]}
    venue_ids = {str(t["trade_id"]) for t in data["trades"]}
    missing = [t for t in data["trades"] if (f := ours.get(str(t["trade_id"]))) is None or (
        f["client_order_id"] != t["client_order_id"] and not f["client_order_id"].startswith("venue-"))]
    phantom = [f for f in data["fills"] if f["trade_id"] not in venue_ids]
    return {"lost_fills": len(missing) + len(phantom), "venue_trades_not_recorded": len(missing),
            "fills_without_venue_trade": len(phantom),
            "lost_fill_ids": [str(t["trade_id"]) for t in missing[:10]] + [f["trade_id"] for f in phantom[:10]]}


def _equity(data: dict[str, Any], initial: float) -> dict[str, Any]:
    wallet = data["wallet"]
    if wallet is None:
        return {"equity_identity_gap_usd": None, "equity_gap_venue_usd": None, "equity_gap_ledger_usd": None}
    venue = (initial + sum(t["realized_pnl"] for t in data["trades"]) - sum(t["fee"] for t in data["trades"])
             - sum(f["amount"] for f in data["funding"]))
    by_pos: dict[str, list[Row]] = defaultdict(list)
    for f in data["fills"]:
        if f["position_id"] is not None:
            by_pos[f["position_id"]].append(f)
    ledger = 0.0
    for p in data["positions"]:
        if p["status"] == "closed":
            ledger += float(p["net_pnl"])
            continue
        sign, close_side = (1.0, "sell") if p["side"] == "long" else (-1.0, "buy")
        fills = by_pos.get(p["id"], [])
        gross = sum((f["price"] - p["entry_price"]) * f["quantity"] * sign for f in fills if f["side"] == close_side)
        ledger += gross - sum(f["fee"] for f in fills) - float(p["funding"])
    gap_a, gap_b = abs(wallet - venue), abs(ledger - (wallet - initial))
    return {"equity_identity_gap_usd": max(gap_a, gap_b), "equity_gap_venue_usd": gap_a,
            "equity_gap_ledger_usd": gap_b, "wallet_balance": wallet,
            "unlinked_fills": sum(1 for f in data["fills"] if f["position_id"] is None)}


def _funding(data: dict[str, Any], data_dir: Path, shift_ms: int) -> dict[str, Any]:
    rates = {s: load_funding_rates(data_dir, s, shift_ms) for s in {f["symbol"] for f in data["funding"]}}
    trades: dict[str, list[Row]] = defaultdict(list)
    for t in data["trades"]:
        trades[t["symbol"]].append(t)
    published = amount_errors = qty_errors = 0
    for f in data["funding"]:
        t = int(f["time_ms"])
        if rates.get(f["symbol"], {}).get(t) == f["rate"]:
            published += 1
        # held at the funding instant: earlier trades and market orders AT it (a stop/TP/liquidation
        # on the bar opening at it comes after the funding)
        held = sum(signed_quantity(x) for x in trades[f["symbol"]]
                   if int(x["time_ms"]) < t or (int(x["time_ms"]) == t and x["reason"] is None))
        if abs(abs(held) - f["quantity"]) > QTY_TOL * max(1.0, f["quantity"]):
            qty_errors += 1
        sign = 1.0 if held > 0 else -1.0  # a long pays a positive rate
        want = f["mark_price"] * f["quantity"] * f["rate"] * sign
        if abs(f["amount"] - want) > 1e-9 * max(abs(want), 1e-12):
            amount_errors += 1
    n = len(data["funding"])
    return {"funding_events": n, "funding_events_at_published_rate": published, "funding_fallbacks": n - published,
            "funding_amount_errors": amount_errors, "funding_quantity_errors": qty_errors}


async def check_record(database_url: str, *, data_dir: Path, symbols: Sequence[str], start_ms: int,
                       end_ms: int, shift_ms: int = 0, account: str = "paper", mode: str = "paper",
                       initial_capital: float = 1000.0, monitor_ms: int = 60_000,
                       taker_fee: float = 0.0005, spread_bps: float = 1.0, impact_bps_per_100k: float = 2.0,
                       down: Sequence[tuple[int, int]] = ()) -> dict[str, Any]:
    """Judge the record of paper account `account` / mode `mode` over [start_ms, end_ms] (venue
    time) against the real data in `data_dir` (see the module docstring). `down`: windows when the
    service was dead. `taker_fee` is reported, not checked (fees enter the equity identities)."""
    data = await _load(database_url, account, mode)
    data_dir = Path(data_dir)
    times = [int(o["time_ms"]) for o in data["orders"] if o["symbol"] in symbols]
    bars = {}
    if times:
        lo, hi = min([start_ms, *times]), max([end_ms, *times])
        bars = {s: load_minutes(data_dir, s, lo, hi, shift_ms) for s in symbols
                if (data_dir / f"{s}-futures-5m.csv.gz").exists()}
    out: dict[str, Any] = {"account": account, "mode": mode, "start_ms": start_ms, "end_ms": end_ms,
                           "taker_fee": taker_fee}
    out.update(_stop_fills(data, bars, end_ms, spread_bps, impact_bps_per_100k))
    out.update(_protection(data, end_ms, monitor_ms, down))
    out.update(_duplicates(data))
    out.update(_lost_fills(data))
    out.update(_equity(data, initial_capital))
    out.update(_funding(data, data_dir, shift_ms))
    done = [t for t in (int(r["t"]) for r in data["decision_times"]) if start_ms < t <= end_ms]
    out.update({"decision_cycles_done": len(done),
                "decision_cycles_expected": end_ms // DECISION_MS - start_ms // DECISION_MS,
                "trades": sum(1 for p in data["positions"] if p["status"] == "closed"),
                "fills": len(data["trades"])})
    return out


def summary(r: dict[str, Any]) -> str:
    """One line of the figures that must be 0 (or ~0)."""
    gap = r["equity_identity_gap_usd"]
    return (f"stops checked {r['stops_checked']}, missed {r['missed_stop_fills']}; unprotected beyond interval "
            f"{r['unprotected_beyond_interval_seconds']:.0f} s; duplicates {r['duplicate_client_ids']}; lost fills "
            f"{r['lost_fills']}; identity gap {gap if gap is None else round(gap, 6)} USD; funding "
            f"{r['funding_events_at_published_rate']}/{r['funding_events']} at the published rate; cycles "
            f"{r['decision_cycles_done']}/{r['decision_cycles_expected']}")


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--database-url", required=True)
    ap.add_argument("--data-dir", type=Path, required=True)
    ap.add_argument("--symbols", required=True, help="comma-separated")
    ap.add_argument("--start-ms", type=int, required=True)
    ap.add_argument("--end-ms", type=int, required=True)
    ap.add_argument("--shift-ms", type=int, default=0)
    ap.add_argument("--account", default="paper")
    ap.add_argument("--mode", default="paper")
    ap.add_argument("--initial-capital", type=float, default=1000.0)
    a = ap.parse_args(argv)
    try:
        r = asyncio.run(check_record(a.database_url, data_dir=a.data_dir, symbols=a.symbols.split(","),
                                     start_ms=a.start_ms, end_ms=a.end_ms, shift_ms=a.shift_ms, account=a.account,
                                     mode=a.mode, initial_capital=a.initial_capital))
    except (OSError, asyncpg.PostgresError) as exc:
        print(f"soak_check: cannot read the record ({type(exc).__name__}: {exc}); check --database-url",
              file=sys.stderr)
        return 2
    print(json.dumps(r, indent=2, default=str))
    print(summary(r))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
