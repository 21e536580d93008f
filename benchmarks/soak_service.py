"""The soak's world and its supervisor (see benchmarks/soak_paper.py).

`Soak` (async context manager) owns everything that is not Quorum: its own Postgres and Redis
(tests/outages.py), the live-style fake Binance following the shared `ScaledClock`, and two fake
models (OpenAI and Anthropic wire formats) whose votes come from the prompt's symbol and price,
so they agree with each other and a consensus can form.

`ServiceRunner` runs `python -m quorum run` as the service's own process, polls /health, injects
the scheduled faults, SIGKILLs and restarts the process as a supervisor would, samples its memory,
and at the end stops it with SIGTERM.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import signal
import statistics
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import psutil
from benchmarks.soak_faults import Fault
from tests.fakes.anthropic_server import FakeAnthropicServer
from tests.fakes.binance_live import LiveBinanceMarket, one_minute_path
from tests.fakes.openai_server import FakeOpenAIServer, Reply
from tests.fakes.voters import anthropic_reply, openai_reply
from tests.outages import PrivatePostgres, PrivateRedis, free_port

from quorum.clock import TEST_CLOCK_ENV, ScaledClock
from quorum.store.migrate import apply_migrations

ROOT = Path(__file__).resolve().parents[1]
BOOT_S = 15.0  # wall seconds between the soak's start and the simulated start (the service boots)
MODEL_TIMEOUT_S = 3.0
MINUTE_MS = 60_000
# a burst of REST errors or late answers lasts at most this many wall seconds (a server that is sick
# for a while), so bursts that fall while the service is down do not pile up for its return
BURST_S = 30.0
DRAIN_TIMEOUT_S = 900.0  # wall seconds a lagging service gets to finish the judged window


def decide(symbol: str, price: float, text: str) -> str:
    """A deterministic 'opinion' from the symbol and price: ~30 % long, ~30 % short, ~40 % hold."""
    h = hashlib.sha256(f"{symbol}:{price:.6g}".encode()).digest()[0]
    return "LONG" if h < 77 else "SHORT" if h < 154 else "HOLD"


@dataclass
class Soak:
    data: Path
    symbols: tuple[str, ...]
    start_ms: int
    end_ms: int
    speed: float
    outage_s: float
    work_dir: Path
    faults: list[Fault]
    initial_capital: float = 1000.0
    keep: bool = False  # leave the Postgres running (its URL is in the report) to inspect the record
    clock: ScaledClock = field(init=False)

    async def __aenter__(self) -> Soak:
        self.clock = ScaledClock(self.start_ms, time.time() + BOOT_S, self.speed)
        self.pg = PrivatePostgres()
        await self.pg.start()
        await self.pg.execute("CREATE DATABASE quorum")
        self.database_url = self.pg.url_for("quorum")
        conn = await asyncpg.connect(self.database_url)
        try:
            await apply_migrations(conn)
        finally:
            await conn.close()
        self.redis = PrivateRedis()
        await self.redis.start()
        self.exchange = LiveBinanceMarket(self.clock, partial_every_s=None)
        self.exchange.load(self.data, self.symbols)
        await self.exchange.start()
        self.openai = await FakeOpenAIServer(default=openai_reply(decide)).start()
        self.anthropic = await FakeAnthropicServer(default=anthropic_reply(decide)).start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        closers = [self.openai.stop, self.anthropic.stop, self.exchange.stop, self.redis.close]
        for closer in closers if self.keep else [*closers, self.pg.close]:
            with contextlib.suppress(Exception):
                await closer()

    def wall_at(self, sim_ms: int) -> float:
        """time.time() at which the shared clock reads `sim_ms`."""
        return self.clock.wall0_s + (sim_ms - self.clock.sim0_ms) / 1000.0 / self.speed

    def service_env(self, port: int) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("QUORUM_", "BINANCE_", "OPENAI_",
                                                                        "ANTHROPIC_"))}
        env.update({
            "TRADING_MODE": "paper", "DATABASE_URL": self.database_url, "REDIS_URL": self.redis.url,
            "SYMBOLS": ",".join(self.symbols), "INITIAL_CAPITAL": str(self.initial_capital),
            "MODELS": "openai:soak-gpt,anthropic:soak-claude", "RULES_VOTER": "always",
            "OPENAI_API_KEY": "sk-soak-openai-0000", "OPENAI_BASE_URL": self.openai.base_url,
            "ANTHROPIC_API_KEY": "sk-ant-soak-0000", "ANTHROPIC_BASE_URL": self.anthropic.base_url,
            "MODEL_TIMEOUT_SECONDS": str(MODEL_TIMEOUT_S), "MODEL_RETRY_ATTEMPTS": "2",
            "MODEL_RETRY_INITIAL_SECONDS": "0.2", "CONSENSUS_DEADLINE_SECONDS": "8",
            "DAILY_AI_BUDGET_USD": "100000", "MIN_AI_CONFIDENCE": "0.6", "MAX_DRAWDOWN_PCT": "95",
            "BINANCE_FAPI_URL": self.exchange.rest_root, "BINANCE_FSTREAM_URL": self.exchange.fstream_root,
            TEST_CLOCK_ENV: self.clock.spec(), "API_HOST": "127.0.0.1", "API_PORT": str(port),
            "API_TOKEN": "soak-token", "LOG_FORMAT": "json", "LOG_LEVEL": "INFO",
            "VAR_DIR": str(self.work_dir / "var"),
        })
        return env

    async def fault(self, f: Fault) -> None:
        """Inject one scheduled fault (SIGKILLs are the runner's)."""
        p, ex = f.params, self.exchange
        if f.kind == "rest_5xx":
            await ex.rest_errors(status=p["status"], count=p["count"], for_s=BURST_S)
        elif f.kind == "rest_timeout":
            await ex.rest_timeouts(count=p["count"], delay_s=12.0, for_s=BURST_S)  # ccxt gives up after 10 s
        elif f.kind == "rate_limit":  # a 429, then a 418 ban (Binance escalates repeated 429s)
            ex.fail_next(429, retry_after=p["retry_after_s"], count=1)
            ex.fail_next(418, retry_after=p["ban_s"], count=1)
        elif f.kind == "ws_drop":
            await ex.drop_websockets()
        elif f.kind == "llm_5xx":
            self.openai.push(*[Reply(status=500, error_message="upstream error")] * p["count"])
            self.anthropic.push(*[Reply(status=529, error_type="overloaded_error")] * p["count"])
        elif f.kind == "llm_timeout":
            self.openai.push(*[Reply(text="{}", delay=MODEL_TIMEOUT_S + 2)] * p["count"])
            self.anthropic.push(*[Reply(text="{}", delay=MODEL_TIMEOUT_S + 2)] * p["count"])
        elif f.kind == "postgres_outage":
            await self.pg.stop()
            await asyncio.sleep(self.outage_s)
            await self.pg.start()
        elif f.kind == "redis_outage":
            await self.redis.stop()
            await asyncio.sleep(self.outage_s)
            await self.redis.start()

    def next_stop_crossing(self, stops: list[asyncpg.Record], now_ms: int, horizon_ms: int) -> tuple[int, Any] | None:
        """(time, order) of the first 1m bar within the horizon that crosses a live stop (the fake's path)."""
        best: tuple[int, Any] | None = None
        for o in stops:
            five = self.exchange.five[o["symbol"]]
            k0 = max(0, int(five.open_ms.searchsorted(now_ms, side="right")) - 1)
            k1 = int(five.open_ms.searchsorted(now_ms + horizon_ms))
            sell, stop = o["side"] == "sell", float(o["stop_price"])
            for k in range(k0, k1):
                bars = one_minute_path(*(float(a[k]) for a in (five.open, five.high, five.low, five.close,
                                                               five.volume)))
                for i, (_o, hi, lo, _c, _v) in enumerate(bars):
                    t = int(five.open_ms[k]) + i * MINUTE_MS
                    if t > now_ms and (lo <= stop if sell else hi >= stop):
                        if best is None or t < best[0]:
                            best = (t, o)
                        break
                else:
                    continue
                break
        return best


class ServiceRunner:
    """See the module docstring."""

    def __init__(self, soak: Soak) -> None:
        self.soak = soak
        self.port = free_port()
        self.log_path = soak.work_dir / "service.log"
        self.proc: asyncio.subprocess.Process | None = None
        self.expected_exit = False
        self.unexpected_exits = 0
        self.exits: list[dict[str, Any]] = []  # exits that were not our kills (pid, code, when)
        self.killed_pids: set[int] = set()
        self.kills: list[dict[str, Any]] = []
        self.restart_windows: list[list[float | None]] = []  # wall [killed, answering again]
        self.polls = 0
        self.dark_s = 0.0
        self.dark_polls: list[dict[str, Any]] = []  # the first unanswered polls (when, why)
        self.health_codes: dict[str, int] = {}
        self.faults_done: dict[str, int] = {f.kind: 0 for f in soak.faults}
        self.rss: list[tuple[int, int, float]] = []  # (pid, sim ms, MB)
        self.starts: dict[int, int] = {}  # pid → sim ms started
        self.sigterm_code: int | None = None
        self.launched_wall = 0.0
        self.stop_cross: dict[str, Any] | None = None
        self._background: set[asyncio.Task[None]] = set()
        self.loop_metrics: dict[str, Any] = {}
        self.lags_s: list[float] = []  # the engine's lag behind the clock (simulated s), sampled from /status
        self.drain_wall_s: float | None = None
        self.caught_up = False

    # --- the process -----------------------------------------------------------------------------
    async def _launch(self) -> None:
        with self.log_path.open("a") as log:
            log.write(f"\n===== soak: starting quorum run at {time.strftime('%H:%M:%S')} =====\n")
            log.flush()
            self.proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "quorum", "run", cwd=self.soak.work_dir, env=self.soak.service_env(self.port),
                stdout=log, stderr=asyncio.subprocess.STDOUT)
        self.starts[self.proc.pid] = self.soak.clock.now_ms()
        self.launched_wall = time.time()

    async def _supervise(self) -> None:
        """Restart the service when it exits (a SIGKILL of ours, or on its own: counted)."""
        while True:
            assert self.proc is not None
            code = await self.proc.wait()
            if self.expected_exit:
                return
            if self.proc.pid not in self.killed_pids:  # it ended on its own
                self.unexpected_exits += 1
                self.exits.append({"pid": self.proc.pid, "code": code, "sim_ms": self.soak.clock.now_ms()})
                if not self._down():
                    self.restart_windows.append([time.time(), None])
            await self._launch()

    def _down(self) -> bool:
        return bool(self.restart_windows) and self.restart_windows[-1][1] is None

    async def sigkill(self, reason: str) -> None:
        assert self.proc is not None
        if not self._down():  # a kill during a restart extends the same dark window
            self.restart_windows.append([time.time(), None])
        self.killed_pids.add(self.proc.pid)
        self.kills.append({"reason": reason, "sim_ms": self.soak.clock.now_ms(), "pid": self.proc.pid})
        with contextlib.suppress(ProcessLookupError):
            self.proc.send_signal(signal.SIGKILL)

    # --- watching --------------------------------------------------------------------------------
    async def _poll_health(self) -> None:
        async with httpx.AsyncClient(timeout=1.0) as client:
            last = time.time()
            answered_once = False
            while True:
                await asyncio.sleep(0.25)
                now = time.time()
                try:
                    r = await client.get(f"http://127.0.0.1:{self.port}/health")
                    body = r.json()
                    code = str(r.status_code)
                    if r.status_code == 503:
                        code += ":" + ",".join(body.get("failing", []))
                    self.health_codes[code] = self.health_codes.get(code, 0) + 1
                    answered_once = True
                    # a restart is over when the NEW process answers (the killed one's API child can
                    # answer for a moment before it notices its parent is gone)
                    started = now - float(body.get("uptime_s") or 0.0)
                    fresh = self.proc is not None and self.proc.pid not in self.killed_pids
                    if self._down() and fresh and started >= self.launched_wall - 0.5:
                        self.restart_windows[-1][1] = now
                except httpx.HTTPError as exc:
                    if answered_once and not self._down():
                        self.dark_s += now - last
                        if len(self.dark_polls) < 20:
                            self.dark_polls.append({"sim_ms": self.soak.clock.now_ms(), "error": type(exc).__name__})
                self.polls += 1
                last = now

    async def _sample_memory(self) -> None:
        while True:
            await asyncio.sleep(2.0)
            if self.proc is not None and self.proc.returncode is None:
                with contextlib.suppress(psutil.Error):
                    mb = psutil.Process(self.proc.pid).memory_info().rss / 1e6
                    self.rss.append((self.proc.pid, self.soak.clock.now_ms(), round(mb, 1)))

    async def _faults(self) -> None:
        for f in self.soak.faults:
            await asyncio.sleep(max(0.0, self.soak.wall_at(f.at_ms) - time.time()))
            if f.kind == "sigkill":
                await self.sigkill("scheduled")
            elif f.kind == "sigkill_stop_cross":
                self._background.add(asyncio.create_task(self._kill_while_stop_crossed()))
            else:
                self._background.add(asyncio.create_task(self.soak.fault(f)))
            self.faults_done[f.kind] += 1

    async def _kill_while_stop_crossed(self) -> None:
        """Wait for a live stop the price will cross within the hour, kill the service a minute
        before, and let the restarted service find it crossed."""
        clock, deadline = self.soak.clock, self.soak.end_ms - 3 * 3_600_000
        while clock.now_ms() < deadline:
            with contextlib.suppress(OSError, asyncpg.PostgresError, asyncpg.InterfaceError):
                conn = await asyncpg.connect(self.soak.database_url, timeout=2)
                try:
                    stops = await conn.fetch("SELECT client_order_id, symbol, side, stop_price FROM paper_orders "
                                             "WHERE state='accepted' AND type='stop_market'")
                finally:
                    await conn.close()
                found = self.soak.next_stop_crossing(list(stops), clock.now_ms(), 3_600_000)
                if found is not None and found[0] - clock.now_ms() > 3 * MINUTE_MS:
                    cross_ms, order = found
                    await asyncio.sleep(max(0.0, self.soak.wall_at(cross_ms - 90_000) - time.time()))
                    await self.sigkill("while a stop is crossed")
                    self.stop_cross = {"client_order_id": order["client_order_id"], "symbol": order["symbol"],
                                       "stop_price": float(order["stop_price"]), "cross_ms": cross_ms,
                                       "killed_ms": clock.now_ms()}
                    return
            await asyncio.sleep(0.5)

    # --- the run ---------------------------------------------------------------------------------
    async def run(self) -> None:
        await self._launch()
        tasks = [asyncio.create_task(c) for c in (self._supervise(), self._poll_health(), self._sample_memory(),
                                                   self._faults(), self._sample_lag())]
        await asyncio.sleep(max(0.0, self.soak.wall_at(self.soak.end_ms) - time.time()))
        await self._drain()
        tasks[1].cancel()  # no more polls: what follows is the stop we ask for
        self.loop_metrics = await self._loop_metrics()
        self.expected_exit = True
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.sigterm_code = await asyncio.wait_for(self.proc.wait(), 60)
        except TimeoutError:
            self.proc.kill()
            self.sigterm_code = await self.proc.wait()
        for t in [*tasks, *self._background]:
            t.cancel()
        await asyncio.gather(*tasks, *self._background, return_exceptions=True)

    async def _engine_lag_s(self, client: httpx.AsyncClient) -> float | None:
        try:
            body = (await client.get(f"http://127.0.0.1:{self.port}/status")).json()
            return float((body.get("engine") or {})["lag_s"])
        except (httpx.HTTPError, ValueError, KeyError, TypeError):
            return None

    async def _sample_lag(self) -> None:
        async with httpx.AsyncClient(timeout=2.0) as client:
            while True:
                await asyncio.sleep(5.0)
                if not self._down() and (lag := await self._engine_lag_s(client)) is not None:
                    self.lags_s.append(lag)

    async def _drain(self) -> None:
        """Let a service that runs behind the accelerated clock finish the judged window: wait (at
        most DRAIN_TIMEOUT_S) until it has stepped past end_ms, so the record is judged on every bar
        of the window. The lag itself is reported (`engine_lag_s_*`, `drain_wall_s`)."""
        t0 = time.time()
        async with httpx.AsyncClient(timeout=2.0) as client:
            while time.time() - t0 < DRAIN_TIMEOUT_S:
                lag = None if self._down() else await self._engine_lag_s(client)
                if lag is not None and self.soak.clock.now_ms() - lag * 1000 >= self.soak.end_ms + MINUTE_MS:
                    self.caught_up = True
                    break
                await asyncio.sleep(1.0)
        self.drain_wall_s = round(time.time() - t0, 1)

    async def _loop_metrics(self) -> dict[str, Any]:
        """The last process's loop counters and funding sources, as /status shows them."""
        try:
            async with httpx.AsyncClient(timeout=5.0) as client:
                body = (await client.get(f"http://127.0.0.1:{self.port}/status")).json()
        except (httpx.HTTPError, ValueError) as exc:
            return {"error": type(exc).__name__}
        return {"engine": body.get("engine"), "funding": body.get("funding")}

    def down_windows(self) -> list[tuple[int, int]]:
        """Simulated-time windows the service was dead (killed → answering again)."""
        c = self.soak.clock
        out = []
        for killed, back in self.restart_windows:
            assert killed is not None
            end = back if back is not None else time.time()
            out.append((int(c.sim0_ms + (killed - c.wall0_s) * c.speed * 1000),
                        int(c.sim0_ms + (end - c.wall0_s) * c.speed * 1000)))
        return out

    def report(self, record: dict[str, Any], *, simulated_days: float, wall_seconds: float) -> dict[str, Any]:
        last_pid = self.rss[-1][0] if self.rss else None
        life = [(t, mb) for pid, t, mb in self.rss if pid == last_pid]
        start_sim = self.starts.get(last_pid or -1, self.soak.start_ms)
        after_day = [mb for t, mb in life if t >= start_sim + 86_400_000] or [mb for _, mb in life[len(life) // 10:]]
        rss_start, rss_end = (after_day[0], life[-1][1]) if after_day and life else (None, None)
        missed = {d.get("client_order_id") for d in record.get("missed_stop_details", [])}
        return {
            "simulated_days": simulated_days, "symbols": list(self.soak.symbols), "speed": self.soak.speed,
            "wall_seconds": round(wall_seconds, 1),
            "decision_cycles_expected": record["decision_cycles_expected"],
            "decision_cycles_done": record["decision_cycles_done"],
            "faults_injected": {**self.faults_done, "sigkill": len(self.kills)},
            "unexpected_exits": self.unexpected_exits, "unexpected_exit_details": self.exits,
            "health_dark_seconds": round(self.dark_s, 2), "health_polls": self.polls,
            "health_answers": dict(sorted(self.health_codes.items())), "health_dark_polls": self.dark_polls,
            "unprotected_position_seconds": record["unprotected_position_seconds"],
            "unprotected_position_seconds_beyond_interval": record["unprotected_beyond_interval_seconds"],
            "duplicate_client_ids": record["duplicate_client_ids"], "lost_fills": record["lost_fills"],
            "missed_stop_fills": record["missed_stop_fills"],
            "equity_identity_gap_usd": record["equity_identity_gap_usd"],
            "equity_identity_parts": {k: record.get(k) for k in ("equity_gap_venue_usd", "equity_gap_ledger_usd",
                                                                 "unlinked_fills")},
            "funding_events": record["funding_events"],
            "funding_events_at_published_rate": record["funding_events_at_published_rate"],
            "rss_mb_start": rss_start, "rss_mb_end": rss_end,
            "rss_growth_pct": None if not rss_start else round((rss_end - rss_start) / rss_start * 100, 1),
            "sigterm_exit_code": self.sigterm_code, "last_status": self.loop_metrics,
            "engine_lag_s_p50": statistics.median(self.lags_s) if self.lags_s else None,
            "engine_lag_s_max": max(self.lags_s, default=None), "lag_samples": len(self.lags_s),
            "drain_wall_s": self.drain_wall_s, "caught_up_at_end": self.caught_up,
            "kill_while_stop_crossed": None if self.stop_cross is None else {
                **self.stop_cross, "filled_at_its_bar": self.stop_cross["client_order_id"] not in missed},
            "kills": self.kills, "down_windows_sim_ms": self.down_windows(),
            "trades": record.get("trades"), "venue_fills": record.get("fills"),
            "stops_checked": record.get("stops_checked"), "missed_stop_details": record.get("missed_stop_details"),
            "service_log": str(self.log_path),
        }
