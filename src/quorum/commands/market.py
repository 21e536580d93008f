"""`quorum download` (history into the data directory) and `quorum scan` (print snapshots)."""

from __future__ import annotations

import asyncio
import json
import sys
from datetime import UTC, datetime
from pathlib import Path

import typer

from quorum.config import load_settings
from quorum.logging import configure_logging


def _parse_day(value: str) -> int:
    try:
        dt = datetime.fromisoformat(value)
    except ValueError:
        raise typer.BadParameter(f"{value!r} is not a date like 2025-01-31 or 2025-01-31T12:00") from None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return int(dt.timestamp() * 1000)


def _csv(value: str | None) -> list[str]:
    return [v.strip() for v in (value or "").split(",") if v.strip()]


def run_download(
    symbols: list[str], timeframes: list[str], since_ms: int, until_ms: int | None, data_dir: Path,
    funding: bool, rest_url: str | None, share: float,
) -> dict[str, int]:
    """Download with a rich progress bar; returns rows appended per file."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn, TimeRemainingColumn

    from quorum.market.download import download
    from quorum.market.live import make_exchange
    from quorum.market.ratelimit import WeightBudget

    async def go() -> dict[str, int]:
        ex = make_exchange(rest_url)
        try:
            with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                          TimeRemainingColumn(), transient=False) as bar:
                tasks: dict[str, TaskID] = {}

                def progress(key: str, done: int, total: int) -> None:
                    if key not in tasks:
                        tasks[key] = bar.add_task(key, total=total or None)
                    bar.update(tasks[key], completed=done, total=max(total, done) or None)

                report = await download(ex, data_dir, symbols, timeframes, since_ms, until_ms, funding=funding,
                                        budget=WeightBudget(share), progress=progress)
            return report.written
        finally:
            await ex.close()

    return asyncio.run(go())


def register(app: typer.Typer) -> None:
    @app.command("download")
    def download_cmd(
        symbols: str = typer.Option(None, help="Comma-separated, e.g. BTCUSDT,ETHUSDT (default: SYMBOLS)"),
        timeframes: str = typer.Option(None, help="Default: EXECUTION_TIMEFRAME + TIMEFRAMES"),
        since: str = typer.Option(..., help="Start date (UTC), e.g. 2025-01-01"),
        until: str = typer.Option(None, help="End date (UTC, exclusive); default: now (closed bars only)"),
        data_dir: Path = typer.Option(None, help="Default: DATA_DIR"),
        funding: bool = typer.Option(True, help="Also download funding rates"),
        rest_url: str = typer.Option(None, hidden=True, help="REST root overriding BINANCE_FAPI_URL"),
    ) -> None:
        """Download Binance USDⓈ-M candles (+ funding) into the data directory, resuming where files end."""
        from quorum.market.binance_rest import MarketDataUnavailable
        from quorum.market.data_files import DataFileError

        s = load_settings()
        configure_logging(s)  # logs on stderr, secrets redacted
        syms = [x.upper() for x in _csv(symbols)] or list(s.symbols)
        if not syms:
            print("error: no symbols (pass --symbols or set SYMBOLS)", file=sys.stderr)
            raise typer.Exit(2)
        tfs = _csv(timeframes) or list(dict.fromkeys([s.execution_timeframe, *s.timeframes]))
        try:
            written = run_download(syms, tfs, _parse_day(since), _parse_day(until) if until else None,
                                   data_dir or s.data_dir, funding, rest_url or s.binance_fapi_url,
                                   s.weight_budget_share)
        except DataFileError as exc:  # a bad file already in the data directory: bad input
            print(f"error: {exc}", file=sys.stderr)
            raise typer.Exit(2) from None
        except MarketDataUnavailable as exc:  # files hold every complete batch: a rerun resumes
            print(f"error: {exc}; check BINANCE_FAPI_URL and the network, then run again to resume",
                  file=sys.stderr)
            raise typer.Exit(1) from None
        for name, n in written.items():
            print(f"{name}: +{n} rows")

    @app.command("scan")
    def scan_cmd(
        at: str = typer.Option(None, help="Replay time (UTC); default: the latest time common to the files"),
        symbols: str = typer.Option(None, help="Comma-separated (default: every symbol in DATA_DIR)"),
        data_dir: Path = typer.Option(None, help="Default: DATA_DIR"),
        as_json: bool = typer.Option(False, "--json", help="Print the prompt JSON instead of text"),
    ) -> None:
        """Print the snapshots (as the analysts see them) from the files in the data directory."""
        from quorum.market.data_files import DataFileError
        from quorum.market.feeds import ReplayMarketData
        from quorum.market.render import render_prompt_json, render_prompt_text

        s = load_settings()
        configure_logging(s)  # logs on stderr, secrets redacted

        class _Fixed:
            def __init__(self, t: int) -> None:
                self.t = t

            def now_ms(self) -> int:
                return self.t

        clock = _Fixed(2**62)
        try:
            feed = ReplayMarketData(data_dir or s.data_dir, clock, timeframes=s.timeframes,
                                    base_timeframe=s.execution_timeframe, symbols=_csv(symbols),
                                    blocked=s.blocked_symbols)
        except (DataFileError, ValueError, KeyError) as exc:  # bad input: a file, a symbol, the directory
            print(f"error: {exc}", file=sys.stderr)
            raise typer.Exit(2) from None
        if at:
            t = _parse_day(at)
        else:
            ends = [int(b.base.open_ms[-1]) + b.base.tf_ms for b in feed.builders.values() if b.base is not None
                    and len(b.base)]
            t = min(ends)
        dec = s.decision_timeframe
        from quorum.market.data_files import timeframe_ms

        t = t // timeframe_ms(dec) * timeframe_ms(dec)
        clock.t = t
        from quorum.market.quality import (
            DataQualityError,
            QualityRule,
            closed_by,
            detect,
            enforce,
            file_series,
            summary_lines,
        )

        rule = QualityRule.from_settings(s)
        loaded = file_series(x for b in feed.builders.values() for x in (b.base, *b.series.values()))
        flags = [f for series in loaded for f in closed_by(detect(series, rule), t)]
        try:
            enforce(flags, rule)
        except DataQualityError as exc:
            print(f"error: {exc}", file=sys.stderr)
            raise typer.Exit(2) from None
        snaps = asyncio.run(feed.snapshots(t))
        if not snaps:  # e.g. --at before the files begin: say so rather than print nothing
            print(f"error: no closed bars at {datetime.fromtimestamp(t / 1000, UTC):%Y-%m-%d %H:%M} UTC in "
                  f"{data_dir or s.data_dir} for {', '.join(feed.builders) or 'any symbol'}; check --at",
                  file=sys.stderr)
            raise typer.Exit(2)
        for snap in snaps.values():
            if as_json:
                print(json.dumps({"hash": snap.hash, "prompt": json.loads(render_prompt_json(snap))}))
            else:
                print(f"# {snap.symbol} snapshot {snap.hash[:16]}")
                print(render_prompt_text(snap))
                print()
        if as_json:  # after the snapshots: one more JSON line, every flag of the files read
            print(json.dumps({"data_flags": [f.as_dict() for f in flags]}))
        else:
            print("\n".join(summary_lines(flags, len(loaded), limit=50)))
