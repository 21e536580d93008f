"""`quorum decide SYMBOL [--at TIME --data DIR] [--json]`: one consensus, shown in full.

Prints the snapshot summary, every voter's vote or abstention (with the reason), and the
merged consensus. With `--data` (or `--at`) the snapshot comes from candle files (replay);
otherwise from Binance (public market data). Nothing is traded; `--record` also stores the
decision and every call in Postgres.
"""

from __future__ import annotations

import asyncio
import json
import sys
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import typer

from quorum.config import Settings, load_settings, timeframe_seconds


def parse_time(value: str) -> int:
    """ISO date/time (UTC unless an offset is given) or epoch milliseconds → epoch ms."""
    if value.isdigit():
        return int(value)
    try:
        dt = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise typer.BadParameter(f"{value!r} is not a time like 2025-01-31T12:00 or epoch milliseconds") from None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return int(dt.timestamp() * 1000)


class _FixedClock:
    def __init__(self, t: int) -> None:
        self.t = t

    def now_ms(self) -> int:
        return self.t


def _check_replay_files(settings: Settings, symbol: str, data_dir: Path) -> None:
    """One line naming the directory, the symbol or TIMEFRAMES when the files cannot serve."""
    from quorum.foreseen import check_timeframes_buildable
    from quorum.market.data_files import discover

    if not data_dir.is_dir():
        raise ValueError(f"--data {data_dir}: not a directory")
    files = discover(data_dir).get(symbol)
    if files is None:
        raise ValueError(f"{symbol}: no candle files in {data_dir} "
                         f"(expected {symbol}-futures-{settings.execution_timeframe}.csv.gz)")
    check_timeframes_buildable(settings.timeframes, settings.execution_timeframe, "EXECUTION_TIMEFRAME",
                               set(files.candles))


async def _replay_snapshot(settings: Settings, symbol: str, at: int | None, data_dir: Path) -> Any:
    from quorum.market.feeds import ReplayMarketData

    _check_replay_files(settings, symbol, data_dir)
    clock = _FixedClock(2**62)
    feed = ReplayMarketData(data_dir, clock, timeframes=settings.timeframes,
                            base_timeframe=settings.execution_timeframe, symbols=[symbol])
    b = feed.builder(symbol)
    if at is None:
        if b.base is None or not len(b.base):
            raise ValueError(f"no {settings.execution_timeframe} candles for {symbol} in {data_dir}")
        at = int(b.base.open_ms[-1]) + b.base.tf_ms
    dec_ms = timeframe_seconds(settings.decision_timeframe) * 1000
    t = at // dec_ms * dec_ms
    clock.t = t
    snaps = await feed.snapshots(t, [symbol])
    if symbol not in snaps:
        raise ValueError(f"{symbol}: no closed bars at {datetime.fromtimestamp(t / 1000, UTC):%Y-%m-%d %H:%M} UTC")
    return snaps[symbol]


async def _live_snapshot(settings: Settings, symbol: str) -> Any:
    import time

    from quorum.market.binance_rest import Backoff
    from quorum.market.live import LiveMarketData

    # one question, asked now: a read failing three times (0.5 s, then 1 s apart) is one line and
    # exit code 1 (`quorum.foreseen`), not the service's patient retries
    feed = LiveMarketData(settings, use_websocket=False, retry=Backoff(attempts=3))
    try:
        await feed.start([symbol])
        dec_ms = timeframe_seconds(settings.decision_timeframe) * 1000
        t = int(time.time() * 1000) // dec_ms * dec_ms
        await feed.refresh(t, [symbol])
        snaps = await feed.snapshots(t, [symbol])
    finally:
        await feed.close()
    if symbol not in snaps:
        raise ValueError(f"{symbol}: no live data")
    return snaps[symbol]


async def run_decide(settings: Settings, symbol: str, at: int | None, data_dir: Path | None,
                     record: bool, *, allow_contaminated: bool = False) -> dict[str, Any]:
    """Build the snapshot, ask every voter, merge; returns a JSON-ready report. A past snapshot
    (`--at`/`--data`) that a model's training data covers is refused (`ContaminatedPeriod`) unless
    `allow_contaminated`: then the report and the recorded votes carry the label."""
    from quorum.ai.analysts import vote_to_dict
    from quorum.ai.context import AccountView, VoteContext
    from quorum.bootstrap import consensus_session

    if data_dir is not None or at is not None:
        snap = await _replay_snapshot(settings, symbol, at, data_dir or settings.data_dir)
    else:
        snap = await _live_snapshot(settings, symbol)
    labels = _contamination(settings, snap.time_ms, allow_contaminated) if data_dir is not None or at is not None \
        else {}
    # the consensus the engine gets (the composition root builds both), with its own cache and pool
    async with consensus_session(settings, record=record) as engine:
        engine.contamination = labels
        cap = settings.initial_capital
        ctx = VoteContext(snap, AccountView(cap, cap, 0.0, 0), ())
        result = await engine.decide(ctx, persist=record)
    p = result.proposal
    return {
        "contaminated": list(labels.values()),
        "snapshot": {
            "symbol": snap.symbol, "time_ms": snap.time_ms,
            "time": datetime.fromtimestamp(snap.time_ms / 1000, UTC).isoformat(), "price": snap.price,
            "regime": snap.regime.value, "hash": p.snapshot_hash, "flags": list(snap.flags),
            "timeframes": {v.timeframe: {"close": v.close, "rsi": v.rsi, "adx": v.adx, "atr_pct": v.atr_pct,
                                         "regime": v.regime.value} for v in snap.timeframes},
            "funding_rate": snap.funding_rate,
        },
        "account": {"equity": settings.initial_capital, "positions": [], "note": "INITIAL_CAPITAL, no positions"},
        "voters": [
            {**({"vote": vote_to_dict(v)} if (v := next((x for x in result.votes if x.voter == r.voter), None))
                else {"abstained": r.abstain_reason}),
             "voter": r.voter, "latency_ms": r.latency_ms, "cached": r.cached, "tokens_in": r.tokens_in,
             "tokens_out": r.tokens_out, "cost_usd": r.cost_usd, "prompt_version": r.prompt_version,
             "error": r.error, "notes": list(r.notes), "usage_anomaly": r.usage_anomaly}
            for r in result.records
        ],
        "weights": result.weights,
        "consensus": {**{k: (v.value if hasattr(v, "value") else v) for k, v in asdict(p).items()},
                      "take_profits": list(p.take_profits)},
        "recorded": record,
        "wall_ms": round(result.wall_ms, 1),
    }


def _contamination(settings: Settings, time_ms: int, allow: bool) -> dict[str, str]:
    """voter → label for the configured models that knew `time_ms`; refused unless `allow`."""
    from quorum.ai.cutoffs import checked_period

    return checked_period(list(settings.models), time_ms, allow)


def _num(x: Any) -> str:
    from quorum.ai.prompts import fmt

    return fmt(x) if isinstance(x, int | float) else "-"


def render_text(report: dict[str, Any]) -> str:
    s = report["snapshot"]
    lines = [label.replace("contaminated:", "CONTAMINATED:", 1) for label in report.get("contaminated") or []]
    lines.append(f"{s['symbol']} at {s['time']} — price {_num(s['price'])}, regime {s['regime']}, "
                 f"snapshot {s['hash'][:16]}")
    for tf, v in s["timeframes"].items():
        lines.append(f"  {tf:>4}: close {_num(v['close'])}  RSI {_num(v['rsi'])}  ADX {_num(v['adx'])}  "
                     f"ATR% {_num(v['atr_pct'])}  {v['regime']}")
    if s["flags"]:
        lines.append(f"  flags: {', '.join(s['flags'])}")
    lines.append("voters:")
    for r in report["voters"]:
        head = f"  {r['voter']:<32}"
        if "vote" in r:
            v = r["vote"]
            tps = ",".join(_num(t) for t in v["take_profits"]) or "-"
            lines.append(f"{head} {v['action']:<5} conf {v['confidence']:.2f}  stop {_num(v['stop_loss'])}  "
                         f"tp {tps}  lev {_num(v['leverage'])}  ({r['latency_ms']} ms"
                         f"{', cached' if r['cached'] else ''})")
            if v.get("reasoning"):
                lines.append(f"      {v['reasoning'][:160]}")
        else:
            lines.append(f"{head} ABSTAIN  {r['abstained']}")
        if r.get("usage_anomaly"):
            lines.append(f"      {r['usage_anomaly'][:200]}")
    c = report["consensus"]
    tps = ",".join(_num(t) for t in c["take_profits"]) or "-"
    lines.append(f"consensus: {c['action']} conf {c['confidence']:.2f} agreement {c['agreement']:.2f} "
                 f"({c['valid_votes']} valid, {c['abstentions']} abstained) stop {_num(c['stop_loss'])} tp {tps} "
                 f"lev {_num(c['leverage'])}")
    lines.append(f"  reason: {c['reason']}")
    lines.append("  (a proposal only: the risk manager decides size, leverage and stops; nothing was traded)")
    return "\n".join(lines)


def register(app: typer.Typer) -> None:
    @app.command("decide")
    def decide_cmd(
        symbol: str = typer.Argument(..., help="e.g. BTCUSDT"),
        at: str = typer.Option(None, "--at", help="Replay time (UTC ISO or epoch ms); default: latest in the files"),
        data: Path = typer.Option(None, "--data", help="Replay from candle files in this directory"),
        as_json: bool = typer.Option(False, "--json", help="Print JSON"),
        record: bool = typer.Option(False, "--record", help="Store the decision and every call in Postgres"),
        allow_contaminated: bool = typer.Option(
            False, "--allow-contaminated",
            help="Ask models about a past time their training data covers (refused otherwise); the output "
                 "and the recorded votes are labelled 'contaminated: MODEL knew this period'."),
    ) -> None:
        """Ask every configured voter about one symbol and print the votes and the consensus."""
        import asyncpg

        from quorum.ai.cutoffs import ContaminatedPeriod
        from quorum.foreseen import one_line
        from quorum.logging import configure_logging
        from quorum.market.data_files import DataFileError
        from quorum.store.db import DatabaseUnavailable

        settings = load_settings()
        configure_logging(settings)
        if settings.analysts:  # a broken file: one line (a configuration error) before any data is read
            from quorum.ai.user_analysts import load_user_analysts

            load_user_analysts(settings.analysts)
        sym = symbol.upper().replace("/", "").replace(":USDT", "")
        try:
            report = asyncio.run(run_decide(settings, sym, parse_time(at) if at else None, data, record,
                                            allow_contaminated=allow_contaminated))
        except ContaminatedPeriod as exc:  # bad input: a period the models already know
            print(f"error: {exc}", file=sys.stderr)
            raise typer.Exit(2) from None
        except (DataFileError, ValueError, KeyError) as exc:  # bad input: the files, the symbol, the time
            print(f"error: {one_line(str(exc))}", file=sys.stderr)
            raise typer.Exit(2) from None
        except (DatabaseUnavailable, OSError, asyncpg.PostgresError,
                asyncpg.InterfaceError) as exc:  # the database lost mid-way: nothing could be recorded
            print(f"error: {one_line(str(exc)) or type(exc).__name__}", file=sys.stderr)
            raise typer.Exit(1) from None
        from quorum.scrub import scrub_value

        report = scrub_value(report)  # provider errors and replies can echo a key
        print(json.dumps(report, indent=2, default=str) if as_json else render_text(report))
