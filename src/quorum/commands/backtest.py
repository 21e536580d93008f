"""`quorum backtest`: a fast, lookahead-free backtest over candle files with honest statistics."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from quorum.config import ConfigError, load_settings
from quorum.logging import configure_logging

if TYPE_CHECKING:
    from quorum.backtest.request import BacktestRequest


def register(app: typer.Typer) -> None:
    @app.command("backtest")
    def backtest(
        data: Path = typer.Option(Path("data"), "--data", help="Directory with SYMBOL-futures-TF.csv.gz files."),
        symbols: str = typer.Option(..., "--symbols", help="Comma-separated symbols, e.g. BTCUSDT,ETHUSDT."),
        start: str = typer.Option(None, "--start", help="UTC start (YYYY-MM-DD[THH:MM] or epoch ms); "
                                                         "default: first common bar."),
        end: str = typer.Option(None, "--end", help="UTC end (exclusive); default: last common bar."),
        timeframe: str = typer.Option("5m", "--timeframe", help="Data / execution timeframe."),
        decision_timeframe: str = typer.Option("15m", "--decision-timeframe", help="Decision timeframe."),
        analyst: list[str] = typer.Option(
            None, "--analyst",
            help="rules | replay | models, and/or your own analyst PATH.py:ClassName (repeatable; see "
                 "examples/ema_cross.py). Default: rules. Own analysts alone vote alone; with rules or models "
                 "they vote next to them."),
        allow_model_calls: bool = typer.Option(False, "--allow-model-calls",
                                               help="Required with --analyst models (lookahead, cost)."),
        allow_contaminated: bool = typer.Option(
            False, "--allow-contaminated",
            help="Run --analyst models over a period a model's training data covers (refused otherwise); "
                 "every output is labelled 'contaminated: MODEL knew this period'."),
        out: Path = typer.Option(Path("var/backtest"), "--out", help="Output directory."),
        initial_equity: float = typer.Option(None, "--initial-equity", help="Default: INITIAL_CAPITAL."),
        quiet: bool = typer.Option(False, "--quiet", help="No progress bar."),
        breaker_reset_after: str = typer.Option(
            None, "--breaker-reset-after",
            help="Simulate an operator who resets a breaker only an operator can reset (drawdown) this long "
                 "after it tripped (e.g. 7d, 12h), re-basing its peak like `quorum reset-breaker`; the summary "
                 "labels the record as such. Default: never (a tripped drawdown breaker halts entries to the end)."),
    ) -> None:
        """Replay candle files through the engine's decision, risk and fill logic; write
        summary.json, trades.csv, equity.csv and report.html into --out."""
        # numpy and pandas only when a backtest runs: `quorum --help` stays fast
        from quorum.backtest.request import (
            BacktestInputError,
            BacktestRequest,
            load_market,
            parse_duration,
            parse_time,
        )

        try:
            kind, users = _analysts(analyst or ["rules"])
            req = BacktestRequest(
                data_dir=data,
                symbols=tuple(s.strip().upper().replace("/", "") for s in symbols.split(",") if s.strip()),
                start_ms=parse_time(start, "start"),
                end_ms=parse_time(end, "end"),
                timeframe=timeframe,
                decision_timeframe=decision_timeframe,
                analyst=kind,
                user_analysts=users,
                allow_model_calls=allow_model_calls,
                allow_contaminated=allow_contaminated,
                out_dir=out,
                initial_equity=initial_equity,
                breaker_reset_after_ms=parse_duration(breaker_reset_after, "breaker-reset-after"),
            )
            if initial_equity is not None and initial_equity <= 0:
                raise BacktestInputError("--initial-equity must be > 0")
            settings = load_settings(decision_timeframe=req.decision_timeframe, execution_timeframe=req.timeframe) \
                if _timeframes_ok(req) else load_settings()
            configure_logging(settings)  # logs on stderr (the summary line is stdout), secrets redacted
            from quorum.market.quality import QualityRule

            market = load_market(req, QualityRule.from_settings(settings))
            _check_foreseen(req, settings.timeframes)
        except (BacktestInputError, ConfigError) as exc:
            print(f"error: {exc}", file=sys.stderr)
            raise typer.Exit(2) from None

        from quorum.backtest.runner import run_and_write

        try:
            summary = run_and_write(market, settings, progress=not quiet)
        except BacktestInputError as exc:  # e.g. the range ends before the indicators' warm-up
            print(f"error: {exc}", file=sys.stderr)
            raise typer.Exit(2) from None
        wr = summary.get("win_rate")
        ci = summary.get("win_rate_ci95") or [0.0, 1.0]
        wr_text = "n/a" if wr is None else f"{wr * 100:.1f} % (95 % CI {ci[0] * 100:.1f}–{ci[1] * 100:.1f} %)"
        halted = summary.get("halt_statement")
        between = summary.get("max_drawdown_between_resets_pct")
        between_text = f" (between resets {between:.2f} %)" if summary.get("simulated_resets") else ""
        contaminated = "; ".join(summary.get("contaminated") or [])
        print(
            (f"{contaminated.replace('contaminated:', 'CONTAMINATED:')} · " if contaminated else "") +
            (f"{halted} · " if halted else "") +
            f"analyst={summary['analyst']} trades={summary['trades']} win_rate={wr_text} "
            f"from={summary['effective_start']} "
            f"return={summary['total_return_pct']:.2f} % max_dd={summary['max_drawdown_pct']:.2f} %{between_text} "
            f"final_equity={summary['final_equity']:.2f} "
            f"data flags: {len(summary['data_flags'])}{' (see summary.json)' if summary['data_flags'] else ''} → {out}"
        )


def _timeframes_ok(req: BacktestRequest) -> bool:
    from quorum.config import KNOWN_TIMEFRAMES, timeframe_seconds

    return (
        req.timeframe in KNOWN_TIMEFRAMES
        and req.decision_timeframe in KNOWN_TIMEFRAMES
        and timeframe_seconds(req.decision_timeframe) % timeframe_seconds(req.timeframe) == 0
    )


def _check_foreseen(req: BacktestRequest, timeframes: list[str]) -> None:
    """Before any work: TIMEFRAMES buildable from --timeframe bars, --out writable (one line each)."""
    from quorum.backtest.request import BacktestInputError
    from quorum.foreseen import check_timeframes_buildable

    check_timeframes_buildable(timeframes, req.timeframe, "--timeframe")
    out = req.out_dir or Path("var/backtest")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise BacktestInputError(f"--out {out}: cannot create the directory ({exc.strerror or exc})") from None
    if not os.access(out, os.W_OK):
        raise BacktestInputError(f"--out {out}: the directory is not writable")


def _analysts(values: list[str]) -> tuple[str, tuple[str, ...]]:
    """`--analyst` values → (rules | replay | models | custom, the user analysts' specs), each user
    analyst loaded once here so a broken file is one line before any data is read."""
    from quorum.ai.user_analysts import load_user_analysts
    from quorum.backtest.request import ANALYSTS, CUSTOM, BacktestInputError

    kinds = [v.strip() for v in values if v.strip() in ANALYSTS]
    users = tuple(v.strip() for v in values if v.strip() and v.strip() not in ANALYSTS)
    if len(set(kinds)) > 1:
        raise BacktestInputError(f"--analyst: choose one of {', '.join(ANALYSTS)} (got {', '.join(kinds)}); "
                                 "your own analysts (PATH.py:ClassName) may be added to it")
    if users and not all(u.endswith(".py") or ".py:" in u for u in users):
        bad = next(u for u in users if ".py" not in u)
        raise BacktestInputError(f"--analyst {bad!r}: must be one of {', '.join(ANALYSTS)} or PATH.py:ClassName "
                                 "(your own analyst)")
    load_user_analysts(users)
    return (kinds[0] if kinds else CUSTOM), users
