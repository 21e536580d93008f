"""Run a backtest from validated market input and write its outputs.

`run_backtest(market, settings)` → `BacktestResult` (trades, decisions, fills, equity curve,
summary); `write_outputs(result, out_dir)` writes summary.json, trades.csv, equity.csv and
report.html; `run_and_write` does both with an optional rich progress bar.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from quorum.backtest.analysts import (
    ProposalTable,
    model_table,
    replay_table,
    table_fn,
    table_rows,
    table_voters,
)
from quorum.backtest.fast import FastBacktest
from quorum.backtest.halts import active_fraction, halts, max_drawdown_between_resets, statement
from quorum.backtest.inputs import SymbolInput, prepare_symbol
from quorum.backtest.outputs import iso, write_equity, write_summary, write_trades
from quorum.backtest.records import RunResult
from quorum.backtest.report import write_report
from quorum.backtest.request import CUSTOM, MarketInput, format_duration
from quorum.backtest.warmup import start_after_warmup, warmup_summary
from quorum.config import Settings
from quorum.domain.statistics import all_breakdowns, compute_stats
from quorum.engine.shared import LoopConfig
from quorum.market.data_files import timeframe_ms


@dataclass
class BacktestResult:
    run: RunResult
    equity: list[tuple[int, float]]
    summary: dict[str, Any]
    breakdowns: dict[str, dict[str, dict[str, Any]]]
    prices: dict[str, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)  # report: bar close ms, close


def prepare_inputs(market: MarketInput, settings: Settings, *, keep_builders: bool = False) -> list[SymbolInput]:
    req = market.request
    ctx = [tf for tf in settings.timeframes if tf != req.decision_timeframe]
    inputs = [
        prepare_symbol(market.candles[sym], market.first_index[sym], market.start_ms, market.end_ms,
                       req.decision_timeframe, market.funding.get(sym), context_timeframes=ctx,
                       keep_builder=keep_builders)
        for sym in req.symbols
    ]
    # no decision before every symbol's indicators are defined: the start moves past the warm-up
    return start_after_warmup(inputs, market.start_ms, market.end_ms, timeframe_ms(req.timeframe))[0]


def equity_curve(run: RunResult, inputs: list[SymbolInput], initial: float, tf_ms: int,
                 start_ms: int) -> list[tuple[int, float]]:
    """Mark-to-market equity at every execution-bar close: wallet (fills, fees, funding as they
    happen) plus open positions valued at the bar's close."""
    end_close = max(int(s.open_ms[s.last]) + tf_ms for s in inputs)
    first_close = min(int(s.open_ms[s.first]) + tf_ms for s in inputs)
    grid = np.arange(max(first_close, start_ms + tf_ms), end_close + 1, tf_ms, dtype=np.int64)
    cash = sorted(run.venue.cash_events)
    ct = np.array([c[0] for c in cash], dtype=np.int64)
    cv = np.cumsum(np.array([c[1] for c in cash], dtype=np.float64)) if cash else np.zeros(0)
    idx = np.searchsorted(ct, grid, side="right") - 1
    wallet = initial + np.where(idx >= 0, cv[np.clip(idx, 0, None)] if len(cv) else 0.0, 0.0)
    upnl = np.zeros(len(grid))
    closes: dict[str, np.ndarray] = {}
    for sym, sign, qty, entry, t0, t1 in run.segments:
        if sym not in closes:
            s = next(x for x in inputs if x.symbol == sym)
            k = np.clip(np.searchsorted(s.open_ms, grid - tf_ms, side="right") - 1, 0, len(s.close) - 1)
            closes[sym] = s.close[k]
        a = int(np.searchsorted(grid, t0, side="left"))
        b = int(np.searchsorted(grid, t1, side="left"))
        if b > a:
            upnl[a:b] += sign * qty * (closes[sym][a:b] - entry)
    eq = wallet + upnl
    return list(zip(grid.tolist(), eq.tolist(), strict=True))


def run_backtest(market: MarketInput, settings: Settings, *, progress: Callable[[int], None] | None = None,
                 analyst: str | None = None, inputs: list[SymbolInput] | None = None,
                 proposals: ProposalTable | None = None, analyst_info: dict[str, Any] | None = None
                 ) -> BacktestResult:
    """Run the fast backtest. `proposals` (from `backtest.analysts`) replaces the rules analyst."""
    t0 = time.perf_counter()
    req = market.request
    initial = float(req.initial_equity or settings.initial_capital)
    cfg = LoopConfig.from_settings(settings, initial)
    inputs = inputs if inputs is not None else prepare_inputs(market, settings)
    inputs, start_ms = start_after_warmup(inputs, market.start_ms, market.end_ms, cfg.exec_tf_ms)
    reset_after = req.breaker_reset_after_ms
    if proposals is not None:
        bt = FastBacktest(inputs, cfg, proposal_fn=table_fn(proposals), rows=table_rows(proposals),
                          progress=progress, voters_fn=table_voters(proposals), breaker_reset_after_ms=reset_after)
    else:
        bt = FastBacktest(inputs, cfg, progress=progress, breaker_reset_after_ms=reset_after)
    run = bt.run()
    equity = equity_curve(run, inputs, initial, cfg.exec_tf_ms, start_ms)
    seconds = time.perf_counter() - t0
    stats = compute_stats(run.trades, equity, initial)
    stats["final_equity"] = run.venue.wallet  # everything is closed at the end: wallet = equity
    stats["total_return_pct"] = (run.venue.wallet / initial - 1.0) * 100.0
    exit_counts: dict[str, int] = {}
    for t in run.trades:
        exit_counts[t.exit_reason] = exit_counts.get(t.exit_reason, 0) + 1
    summary: dict[str, Any] = {
        "contaminated": list((analyst_info or {}).get("contaminated") or []),  # first in every output
        "analyst": analyst or req.analyst,
        "analyst_info": analyst_info or {},
        "symbols": list(req.symbols),
        "period": f"{iso(start_ms)} → {iso(market.end_ms)}",
        "start_ms": start_ms,
        "effective_start": iso(start_ms),
        "warmup": warmup_summary(inputs, req.start_ms, market.start_ms, start_ms, iso),
        **halt_summary(run.breaker_events, bt.simulated_resets, reset_after, equity, initial, start_ms,
                       market.end_ms),
        "end_ms": market.end_ms,
        "timeframe": req.timeframe,
        "decision_timeframe": req.decision_timeframe,
        "data_flags": [f.as_dict() for f in market.data_flags],  # gaps/outliers in the bars used
        **stats,
        "net_pnl_sum": sum(t.net_pnl for t in run.trades),
        "exit_reasons": exit_counts,
        "breaker_trip_counts": _trip_counts(run.breaker_events),
        "breaker_trips": [e for e in run.breaker_events if e["event"] == "trip"][:200],
        "decisions": len(run.decisions),
        "fills": len(run.fills),
        "bars_processed": run.bars_processed,
        "events": run.events,
        "seconds": seconds,
        "bar_steps_per_second": run.bars_processed / seconds if seconds > 0 else None,
        "assumptions": [
            "decisions at a decision-bar close fill at the next execution bar's open (market, slippage, taker fee)",
            "stops / take-profits trigger on execution-bar ranges; a gap fills at the bar's open; stop first "
            "when a bar touches both",
            "funding from the recorded rates at each funding time, charged at that bar's open price",
            "isolated margin; liquidation at the paper venue's liquidation price with the taker fee",
            "open positions are closed at the last close at the end (exit reason end_of_data)",
            "no decision before every timeframe's indicators are defined (warm-up): the run starts at "
            "effective_start",
            "halts: trips of the breakers that stop new entries on every symbol (drawdown, daily_loss, "
            "loss_streak); active_fraction = share of effective_start → end in which none of them blocked "
            "new entries (per-symbol cool-downs are counted in breaker_trip_counts only)",
            "a drawdown trip blocks new entries until an operator resets it; nobody does in a backtest unless "
            "--breaker-reset-after simulates that reset (re-basing the peak at the equity then, as "
            "`quorum reset-breaker` does)",
        ],
    }
    prices = {s.symbol: (s.open_ms[s.first:s.last + 1] + cfg.exec_tf_ms, s.close[s.first:s.last + 1]) for s in inputs}
    return BacktestResult(run, equity, summary, all_breakdowns(run.trades), prices)


def halt_summary(events: list[dict[str, Any]], resets: list[int], reset_after_ms: int | None,
                 equity: list[tuple[int, float]], initial: float, start_ms: int, end_ms: int) -> dict[str, Any]:
    """summary.json's halts, active_fraction, simulated_resets, max_drawdown_between_resets_pct and
    halt_statement (see `backtest.halts`)."""
    hs = halts(events, start_ms, end_ms)
    fraction = active_fraction(hs, start_ms, end_ms)
    sim = None if reset_after_ms is None else {"after": format_duration(reset_after_ms), "after_ms": reset_after_ms,
                                                "count": len(resets), "at": [iso(t) for t in resets]}
    return {
        "halts": hs,
        "active_fraction": fraction,
        "simulated_resets": sim,
        "max_drawdown_between_resets_pct": max_drawdown_between_resets(equity, initial, resets),
        "halt_statement": statement(hs, fraction, start_ms, end_ms, sim),
    }


def _trip_counts(events: list[dict[str, Any]]) -> dict[str, int]:
    out: dict[str, int] = {}
    for e in events:
        if e["event"] == "trip":
            out[e["breaker"]] = out.get(e["breaker"], 0) + 1
    return out


def write_outputs(result: BacktestResult, out_dir: Path) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    summary = dict(result.summary)
    summary["breakdowns"] = result.breakdowns
    write_summary(out_dir / "summary.json", summary)
    write_trades(out_dir / "trades.csv", result.run.trades)
    write_equity(out_dir / "equity.csv", result.equity)
    write_report(out_dir / "report.html", result.summary, result.equity, result.breakdowns, trades=result.run.trades,
                 prices=result.prices)


def models_contamination(market: MarketInput, settings: Settings) -> dict[str, str]:
    """voter → label for every configured model whose training data covers the period; refused
    (`BacktestInputError`, one line) unless the request allows it (`--allow-contaminated`)."""
    from quorum.ai.cutoffs import checked_period
    from quorum.backtest.request import BacktestInputError

    try:
        return checked_period(list(settings.models), market.start_ms, market.request.allow_contaminated)
    except ValueError as exc:  # ContaminatedPeriod or a bad <PROVIDER>_KNOWLEDGE_CUTOFF: one line, exit 2
        raise BacktestInputError(str(exc)) from None


async def _own_analysts_table(market: MarketInput, settings: Settings, inputs: list[SymbolInput],
                              progress: Callable[[int], None] | None) -> tuple[ProposalTable, dict[str, Any]]:
    """Proposals of the user's analysts (`--analyst PATH.py:ClassName`), with the rules analyst
    when `--analyst rules` is given too, merged by the consensus rule; no model is asked."""
    from quorum.bootstrap import build_consensus

    req = market.request
    own = settings.model_copy(update={"models": [], "analysts": list(req.user_analysts),
                                      "rules_voter": "always" if req.analyst == "rules" else "auto"})
    consensus = await build_consensus(own, cache=None, pool=None)
    voters = [a.name for a in consensus.analysts]
    table = await model_table(inputs, consensus, float(req.initial_equity or settings.initial_capital), progress,
                              content_hash=False)
    return table, {"kind": "custom", "voters": voters, "sources": list(req.user_analysts)}


async def analyst_proposals(market: MarketInput, settings: Settings, inputs: list[SymbolInput],
                            progress: Callable[[int], None] | None = None
                            ) -> tuple[ProposalTable, dict[str, Any]]:
    """Proposals of the `replay` (recorded votes) or `models` (live calls) analyst."""
    from quorum.bootstrap import build_consensus, open_record_pool

    req = market.request
    labels = models_contamination(market, settings) if req.analyst == "models" else {}
    if req.analyst in ("rules", CUSTOM):  # your own analysts (with the rules analyst or alone): no database
        return await _own_analysts_table(market, settings, inputs, progress)
    if req.user_analysts:  # next to the models
        settings = settings.model_copy(update={"analysts": list(req.user_analysts)})
    pool = await open_record_pool(settings)
    try:
        if req.analyst == "replay":
            table, counts = await replay_table(inputs, pool, LoopConfig.from_settings(settings).consensus, progress)
            return table, {"kind": "replay", **counts}
        consensus = await build_consensus(settings, cache=None, pool=pool)
        consensus.contamination = labels
        voters = [a.name for a in consensus.analysts]
        table = await model_table(inputs, consensus, float(req.initial_equity or settings.initial_capital), progress)
        info: dict[str, Any] = {"kind": "models", "voters": voters,
                                "warning": "language models may know what happened after their training data"}
        if labels:
            info["contaminated"] = list(labels.values())
        return table, info
    finally:
        await pool.close()


def run_and_write(market: MarketInput, settings: Settings, *, progress: bool = True) -> dict[str, Any]:
    """`quorum backtest`'s work: run (with a progress bar over simulated time) and write."""
    import asyncio

    out = market.request.out_dir or Path("var/backtest")
    kw: dict[str, Any] = {}
    if market.request.analyst != "rules" or market.request.user_analysts:
        inputs = prepare_inputs(market, settings, keep_builders=True)
        table, info = asyncio.run(analyst_proposals(market, settings, inputs))
        kw = {"inputs": inputs, "proposals": table, "analyst_info": info,
              "analyst": "+".join(info["voters"]) if info.get("kind") == "custom" else None}
    if not progress:
        result = run_backtest(market, settings, **kw)
    else:
        from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

        span = max(1, market.end_ms - market.start_ms)
        with Progress(TextColumn("[bold]backtest"), BarColumn(), TextColumn("{task.percentage:>3.0f}%"),
                      TimeElapsedColumn(), transient=True) as bar:
            task = bar.add_task("run", total=span)
            result = run_backtest(market, settings, **kw,
                                  progress=lambda t: bar.update(task, completed=min(span, t - market.start_ms)))
            bar.update(task, completed=span)
    write_outputs(result, out)
    return result.summary
