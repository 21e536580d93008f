"""`quorum run`, `quorum readiness`, `quorum kill`, `quorum demo`.

- `run`: the service (engine + API + notifier). TRADING_MODE=live refuses to start unless the
  go-live gate passes, or `--override-gate --who NAME --why TEXT` is given; the override is
  recorded in `live_overrides` (who, when, why, the failing gate report) and shown on /status.
- `readiness`: the go-live gate on the paper record; exit code 0 pass, 1 fail.
- `kill`: asks the running service to flatten everything (POST /control/kill with API_TOKEN); the
  kill switch leaves a critical alert (`quorum alerts resolve ID` once dealt with).
- `demo`: the newcomer's first run (see `quorum.api.runner`).
"""

from __future__ import annotations

import asyncio
import getpass
import json
import sys
from typing import Any

import httpx
import typer

from quorum.bootstrap import record_pool
from quorum.config import ConfigError, Settings, TradingMode, load_settings
from quorum.domain.gate import GateReport
from quorum.logging import configure_logging
from quorum.operator import record_done
from quorum.risk.gate import GateRefused as GateRefused  # raised by `quorum run` (re-exported)
from quorum.risk.gate import authorize_live_start as authorize_live_start  # the live-start check (re-exported)
from quorum.risk.gate import check_gate, format_gate
from quorum.store.db import DatabaseUnavailable


async def readiness(settings: Settings, mode: str = "paper") -> GateReport:
    async with record_pool(settings) as pool:
        return await check_gate(pool, settings, mode)


async def request_kill(settings: Settings, url: str | None = None, timeout: float = 30.0) -> tuple[int, Any]:
    """POST /control/kill on the running service; returns (status code, JSON body)."""
    if not (settings.api_token and settings.api_token.get_secret_value()):
        raise ConfigError("API_TOKEN is not set: the control API refuses every request without it")
    host = "127.0.0.1" if settings.api_host in ("0.0.0.0", "::") else settings.api_host
    base = url or f"http://{host}:{settings.api_port}"
    async with httpx.AsyncClient(base_url=base, timeout=timeout) as client:
        r = await client.post("/control/kill", json={"who": f"{_user()} (quorum kill)"},
                              headers={"Authorization": f"Bearer {settings.api_token.get_secret_value()}"})
    try:
        body = r.json()
    except ValueError:
        body = {"detail": r.text[:200]}
    return r.status_code, body


async def direct_kill(settings: Settings) -> dict[str, Any]:
    """Flatten without a running service: wire the configured exchange through the composition
    root and engage its kill switch (cancel entries, close every position at market, record it)."""
    from quorum.bootstrap import bootstrap

    async with record_pool(settings) as pool:
        app = await bootstrap(settings, pool=pool)
        try:
            assert app.engine.kill_switch is not None  # bootstrap always wires one
            report = await app.engine.kill_switch.engage("kill requested from the CLI", actor="cli")
        finally:
            await app.close()
        await record_done(pool, settings.trading_mode.value, who=_user(), surface="cli", action="kill",
                          reason="quorum kill --direct", status="done" if report.ok else "failed",
                          result={"closed": len(report.closed), "failed": len(report.failed)})
    return {"ok": bool(report.ok), "reason": report.reason, "cancelled": report.cancelled,
            "closed": report.closed, "failed": report.failed}


def _check_demo_files(data: str, symbols: str) -> None:
    """The demo replays 5m files: a missing directory or symbol is one line on stderr, exit code 2."""
    from pathlib import Path

    missing = [s for s in (x.strip().upper() for x in symbols.split(",")) if s
               and not (Path(data) / f"{s}-futures-5m.csv.gz").is_file()]
    if not Path(data).is_dir() or missing:
        what = "not a directory" if not Path(data).is_dir() else f"no 5m candles for {', '.join(missing)}"
        print(f"error: --data {data}: {what} (expected SYMBOL-futures-5m.csv.gz files, as in the bundled data/)",
              file=sys.stderr)
        raise typer.Exit(2)


def _user() -> str:
    try:
        return getpass.getuser()
    except Exception:
        return "cli"


def register(app: typer.Typer) -> None:
    @app.command("readiness")
    def readiness_cmd(
        mode: str = typer.Option("paper", help="Which record to judge (paper by default)."),
        as_json: bool = typer.Option(False, "--json", help="Print the gate report as JSON."),
    ) -> None:
        """Go-live gate on the paper record: each criterion with value and threshold; exit 0 pass, 1 fail."""
        settings = load_settings()
        configure_logging(settings)
        try:
            report = asyncio.run(readiness(settings, mode))
        except DatabaseUnavailable as exc:
            print(f"error: {exc}", file=sys.stderr)
            raise typer.Exit(1) from None
        print(json.dumps(report.to_dict(), indent=2) if as_json else format_gate(report))
        raise typer.Exit(0 if report.passed else 1)

    @app.command("kill")
    def kill_cmd(
        url: str = typer.Option(None, help="Service URL (default http://API_HOST:API_PORT)."),
        direct: bool = typer.Option(False, "--direct", help="No service running: flatten through the exchange "
                                                            "adapter directly."),
    ) -> None:
        """Flatten everything now: asks the running service (POST /control/kill with API_TOKEN),
        or with --direct, engages the kill switch on the configured exchange itself."""
        settings = load_settings()
        configure_logging(settings)
        if direct:
            result = asyncio.run(direct_kill(settings))
            print(json.dumps(result, indent=2, default=str))
            raise typer.Exit(0 if result["ok"] else 1)
        try:
            status, body = asyncio.run(request_kill(settings, url))
        except httpx.HTTPError as exc:
            print(f"error: the service did not answer ({type(exc).__name__}). If it is not running, use "
                  "`quorum kill --direct` to flatten through the exchange adapter.", file=sys.stderr)
            raise typer.Exit(1) from None
        print(json.dumps({"status": status, **(body if isinstance(body, dict) else {"body": body})}, indent=2))
        raise typer.Exit(0 if status == 200 else 1)

    @app.command("run")
    def run_cmd(
        override_gate: bool = typer.Option(False, "--override-gate", help="Start live trading over a failing gate."),
        who: str = typer.Option(None, "--who", help="Who overrides the gate (recorded)."),
        why: str = typer.Option(None, "--why", help="Why the gate is overridden (recorded)."),
    ) -> None:
        """Run the service: engine + API (+ Telegram when configured). Live needs the gate."""
        from quorum.api.process import ApiStartError
        from quorum.api.runner import StartupStopped, run_service

        settings = load_settings()
        configure_logging(settings)
        _check_analysts(settings)  # a broken ANALYSTS file: one line now, not after the database is up
        if settings.trading_mode is TradingMode.BACKTEST:
            print("error: TRADING_MODE=backtest is for `quorum backtest`; use paper or live", file=sys.stderr)
            raise typer.Exit(2)
        settings.check_can_start()
        try:
            code = asyncio.run(run_service(settings, override_gate=override_gate, who=who, why=why))
        except GateRefused as exc:
            print(str(exc), file=sys.stderr)
            raise typer.Exit(1) from None
        except (DatabaseUnavailable, ApiStartError) as exc:
            print(f"error: {exc}", file=sys.stderr)
            raise typer.Exit(1) from None
        except StartupStopped:
            raise typer.Exit(0) from None
        raise typer.Exit(code)

    @app.command("demo")
    def demo_cmd(
        data: str = typer.Option("data", help="Directory with the bundled candles and funding."),
        symbols: str = typer.Option("BTCUSDT,ETHUSDT,SOLUSDT", help="Symbols to replay."),
        speed: float = typer.Option(0.0, help="Simulated seconds per wall second; 0 = as fast as possible."),
        port: int = typer.Option(None, help="Health server port (default API_PORT)."),
        keep_serving: float = typer.Option(0.0, help="Seconds to keep the API up after the replay."),
        days: float = typer.Option(7.0, help="Days to replay after the 35-day indicator warm-up "
                                              "(7 covers the 2025-10-10 cascade; 0 = all of the data)."),
        allow_contaminated: bool = typer.Option(
            False, "--allow-contaminated",
            help="Let configured models vote on a period their training data covers (refused otherwise); "
                 "their votes and the output are labelled."),
    ) -> None:
        """First run: an accelerated paper session on the bundled real data, API up, record in Postgres."""
        from quorum.api.process import ApiStartError
        from quorum.api.runner import StartupStopped, run_demo

        settings = load_settings()
        configure_logging(settings)
        settings.check_bind()  # before the demo database is touched
        _check_analysts(settings)
        _check_demo_files(data, symbols)
        from quorum.market.data_files import DataFileError
        from quorum.market.quality import DataQualityError, QualityRule, check_replay, enforce, summary_lines

        rule = QualityRule.from_settings(settings)
        try:  # every gap and outlier in the files replayed, before anything starts
            flags, files = check_replay(data, [x.strip().upper() for x in symbols.split(",") if x.strip()],
                                        settings.timeframes, settings.execution_timeframe, rule)
            enforce(flags, rule)
        except (DataFileError, DataQualityError) as exc:
            print(f"error: {exc}", file=sys.stderr)
            raise typer.Exit(2) from None
        print("\n".join(summary_lines(flags, files)), flush=True)
        try:
            code = asyncio.run(run_demo(settings, data_dir=data, symbols=symbols, speed=speed, port=port,
                                        keep_serving_s=keep_serving, days=days or None,
                                        allow_contaminated=allow_contaminated))
        except (DatabaseUnavailable, ApiStartError) as exc:
            print(f"error: {exc}", file=sys.stderr)
            raise typer.Exit(1) from None
        except StartupStopped:
            raise typer.Exit(0) from None
        raise typer.Exit(code)


def _check_analysts(settings: Settings) -> None:
    """Load the user's analysts (ANALYSTS) once before anything starts: `UserAnalystError` is a
    configuration error (one line, exit 2)."""
    if settings.analysts:
        from quorum.ai.user_analysts import load_user_analysts

        load_user_analysts(settings.analysts)
