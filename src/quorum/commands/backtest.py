"""`quorum backtest`: a fast, lookahead-free backtest over candle files with honest statistics."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from quorum.config import ConfigError, load_settings

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
        analyst: str = typer.Option("rules", "--analyst", help="rules | replay | models."),
        allow_model_calls: bool = typer.Option(False, "--allow-model-calls",
                                               help="Required with --analyst models (lookahead, cost)."),
        out: Path = typer.Option(Path("var/backtest"), "--out", help="Output directory."),
        initial_equity: float = typer.Option(None, "--initial-equity", help="Default: INITIAL_CAPITAL."),
        quiet: bool = typer.Option(False, "--quiet", help="No progress bar."),
    ) -> None:
        """Replay candle files through the engine's decision, risk and fill logic; write
        summary.json, trades.csv, equity.csv and report.html into --out."""
        # numpy and pandas only when a backtest runs: `quorum --help` stays fast
        from quorum.backtest.request import BacktestInputError, BacktestRequest, load_market, parse_time

        try:
            req = BacktestRequest(
                data_dir=data,
                symbols=tuple(s.strip().upper().replace("/", "") for s in symbols.split(",") if s.strip()),
                start_ms=parse_time(start, "start"),
                end_ms=parse_time(end, "end"),
                timeframe=timeframe,
                decision_timeframe=decision_timeframe,
                analyst=analyst,
                allow_model_calls=allow_model_calls,
                out_dir=out,
                initial_equity=initial_equity,
            )
            if initial_equity is not None and initial_equity <= 0:
                raise BacktestInputError("--initial-equity must be > 0")
            settings = load_settings(decision_timeframe=req.decision_timeframe, execution_timeframe=req.timeframe) \
                if _timeframes_ok(req) else load_settings()
            market = load_market(req)
        except (BacktestInputError, ConfigError) as exc:
            print(f"error: {exc}", file=sys.stderr)
            raise typer.Exit(2) from None

        from quorum.backtest.runner import run_and_write

        summary = run_and_write(market, settings, progress=not quiet)
        wr = summary.get("win_rate")
        ci = summary.get("win_rate_ci95") or [0.0, 1.0]
        wr_text = "n/a" if wr is None else f"{wr * 100:.1f} % (95 % CI {ci[0] * 100:.1f}–{ci[1] * 100:.1f} %)"
        print(
            f"analyst={summary['analyst']} trades={summary['trades']} win_rate={wr_text} "
            f"return={summary['total_return_pct']:.2f} % max_dd={summary['max_drawdown_pct']:.2f} % "
            f"final_equity={summary['final_equity']:.2f} → {out}"
        )


def _timeframes_ok(req: BacktestRequest) -> bool:
    from quorum.config import KNOWN_TIMEFRAMES, timeframe_seconds

    return (
        req.timeframe in KNOWN_TIMEFRAMES
        and req.decision_timeframe in KNOWN_TIMEFRAMES
        and timeframe_seconds(req.decision_timeframe) % timeframe_seconds(req.timeframe) == 0
    )
