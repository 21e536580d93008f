"""The API in its own process (as `quorum run` / `quorum demo` serve it): the mirrored runtime,
control requests executed on the engine's loop, and a silent engine turning /health to 503."""

from __future__ import annotations

import asyncio

import asyncpg
import httpx

from quorum.api.app import create_app
from quorum.api.process import ApiProcess, apply_snapshot, snapshot
from quorum.engine.runtime import RuntimeState, wall_ms
from tests.integration.service.conftest import API_TOKEN, make_settings

AUTH = {"Authorization": f"Bearer {API_TOKEN}"}


async def test_api_process_mirrors_runtime_and_forwards_controls(pool: asyncpg.Pool, pg_url: str) -> None:
    settings = make_settings()
    runtime = RuntimeState(mode="paper", scan_interval_s=60)
    runtime.mark_scan()
    runtime.mark_market_data()
    runtime.equity = 1234.5
    runtime.positions = [{"symbol": "SOLUSDT", "side": "short", "entry_price": 150.0, "quantity": 2.0}]
    kills: list[int] = []
    engine_loop = asyncio.get_running_loop()

    async def on_kill() -> dict[str, object]:
        assert asyncio.get_running_loop() is engine_loop  # runs in the engine process, on its loop
        kills.append(1)
        return {"closed": ["SOLUSDT"]}

    runtime.on_kill = on_kill
    api = ApiProcess(settings, runtime, pg_url, host="127.0.0.1", port=0, interval_s=0.05)
    port = await api.start()
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=10) as c:
            status = (await c.get("/status")).json()
            assert status["equity"] == 1234.5 and status["open_positions"][0]["symbol"] == "SOLUSDT"
            health = (await c.get("/health")).json()
            assert health["status"] == "ok" and health["components"]["engine"]["ok"] is True
            runtime.equity = 1300.0  # the next snapshot carries it over
            for _ in range(100):
                if (await c.get("/status")).json()["equity"] == 1300.0:
                    break
                await asyncio.sleep(0.05)
            assert (await c.get("/status")).json()["equity"] == 1300.0
            assert (await c.post("/control/pause")).status_code == 401
            r = await c.post("/control/pause", headers=AUTH)
            assert r.status_code == 200 and runtime.paused is True  # the ENGINE's runtime
            r = await c.post("/control/kill", headers=AUTH)
            assert r.status_code == 200 and r.json()["result"] == {"closed": ["SOLUSDT"]}
            assert kills == [1] and runtime.kill_requested
    finally:
        await api.stop()
    assert not api._proc.is_alive()


async def test_silent_engine_turns_health_503(pool: asyncpg.Pool) -> None:
    engine_side = RuntimeState(mode="paper", scan_interval_s=60)
    engine_side.mark_scan()
    engine_side.mark_market_data()
    mirror = RuntimeState()
    body = snapshot(engine_side)
    body["heartbeat_ms"] = wall_ms() - 60_000
    apply_snapshot(mirror, body)
    app = create_app(make_settings(), mirror, pool, None)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as c:
        r = await c.get("/health")
    assert r.status_code == 503 and r.json()["failing"] == ["engine"]
    assert "engine silent" in r.json()["components"]["engine"]["detail"]


async def test_api_process_metrics_are_the_engine_process_state_record_and_counters(pool: asyncpg.Pool,
                                                                                    pg_url: str) -> None:
    """The API child's /metrics: equity and positions from the engine's state (= /status), the
    record's totals from Postgres (= /status `record`), and the counters of the ENGINE process
    (this one) — not the child's own empty registry."""
    from prometheus_client.parser import text_string_to_metric_families

    from quorum import metrics
    from tests.integration.service.record import insert_trades

    await insert_trades(pool, [5.0, -2.0, 3.0], days=1.0)
    runtime = RuntimeState(mode="paper", scan_interval_s=60)
    runtime.mark_scan()
    runtime.mark_market_data()
    runtime.equity, runtime.wallet_balance, runtime.unrealized_pnl, runtime.drawdown_pct = 1016.58, 1020.08, -3.5, 1.25
    runtime.positions = [{"symbol": "SOLUSDT", "side": "short", "entry_price": 150.0, "quantity": 2.0, "pnl": -3.5}]
    runtime.breakers = {"symbol_cooldown:BTCUSDT": "stop-out", "symbol_cooldown:ETHUSDT": "stop-out"}
    metrics.CACHE_MISSES.inc(64)
    misses = metrics.CACHE_MISSES._value.get()
    api = ApiProcess(make_settings(), runtime, pg_url, host="127.0.0.1", port=0, interval_s=0.05)
    port = await api.start()
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=10) as c:
            status = (await c.get("/status")).json()
            text = (await c.get("/metrics")).text
            metrics.CACHE_MISSES.inc()  # published with the next snapshot
            for _ in range(100):
                later = (await c.get("/metrics")).text
                if f"quorum_cache_misses_total {misses + 1}" in later:
                    break
                await asyncio.sleep(0.05)
    finally:
        await api.stop()
    got = {(s.name, tuple(sorted(s.labels.items()))): s.value
           for f in text_string_to_metric_families(text) for s in f.samples}
    assert got[("quorum_equity_usd", ())] == status["equity"] == 1016.58
    assert got[("quorum_unrealized_pnl_usd", ())] == status["unrealized_pnl"] == -3.5
    assert got[("quorum_drawdown_pct", ())] == status["drawdown_pct"] == 1.25
    assert got[("quorum_open_positions", ())] == len(status["open_positions"]) == 1
    assert got[("quorum_last_scan_timestamp_seconds", ())] == status["last_scan_ms"] / 1000
    assert got[("quorum_breaker_tripped", (("breaker", "symbol_cooldown"),))] == 2
    assert got[("quorum_breaker_tripped", (("breaker", "drawdown"),))] == 0
    assert got[("quorum_cache_misses_total", ())] == misses  # the engine process's counter
    assert f"quorum_cache_misses_total {misses + 1}" in later
    record = status["record"]
    assert record["trades"] == 3 and record["wins"] == 2 and record["realized_pnl"] == 6.0
    assert got[("quorum_realized_pnl_usd", ())] == 6.0 and abs(got[("quorum_win_rate", ())] - 2 / 3) < 1e-12
    trades = {k[1]: v for k, v in got.items() if k[0] == "quorum_trades_total"}
    assert sum(trades.values()) == 3 and trades[(("side", "short"), ("symbol", "BTCUSDT"))] == 1


async def test_api_process_keeps_serving_while_the_published_metrics_are_large(pool: asyncpg.Pool,
                                                                               pg_url: str) -> None:
    """A snapshot larger than the socket's buffer arrives in pieces. The child once read it with a
    blocking call on a descriptor its event loop (uvloop) had made non-blocking: EAGAIN in the middle
    of the message ended the API process as soon as the engine's metrics grew, and /health went dark."""
    from quorum import metrics

    voters = [f"bulk-voter-{i:04d}" for i in range(400)]
    for v in voters:  # ~16 samples each: a dump of several hundred kB
        metrics.MODEL_LATENCY.labels(voter=v).observe(1.5)
    runtime = RuntimeState(mode="paper", scan_interval_s=60)
    runtime.mark_scan()
    runtime.mark_market_data()
    api = ApiProcess(make_settings(), runtime, pg_url, host="127.0.0.1", port=0, interval_s=0.02,
                     metrics_interval_s=0.0)
    try:
        port = await api.start()
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=10) as c:
            for _ in range(40):  # two seconds of snapshots, each carrying every family
                assert (await c.get("/health")).status_code == 200
                await asyncio.sleep(0.05)
            text = (await c.get("/metrics")).text
        assert api._proc.is_alive() and api.restarts == 0
        assert 'quorum_model_latency_seconds_count{voter="bulk-voter-0399"} 1.0' in text
    finally:
        await api.stop()
        for v in voters:
            metrics.MODEL_LATENCY.remove(v)


async def test_a_dead_api_process_is_reported_once_and_started_again_on_its_port(pool: asyncpg.Pool,
                                                                                pg_url: str) -> None:
    import os
    import signal

    from structlog.testing import capture_logs

    runtime = RuntimeState(mode="paper", scan_interval_s=60)
    runtime.mark_scan()
    runtime.mark_market_data()
    api = ApiProcess(make_settings(), runtime, pg_url, host="127.0.0.1", port=0, interval_s=0.02,
                     restart_backoff_s=(0.2, 1.0))
    try:
        port = await api.start()
        first = api._proc.pid
        with capture_logs() as logs:
            os.kill(first, signal.SIGKILL)
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=2) as c:
                for _ in range(300):
                    try:
                        if api._proc.pid != first and (await c.get("/health")).status_code == 200:
                            break
                    except httpx.TransportError:
                        pass
                    await asyncio.sleep(0.05)
                assert (await c.get("/health")).status_code == 200
            await asyncio.sleep(0.5)  # publishing goes on; nothing more is logged about the dead child
        gone = [e for e in logs if e["event"] == "api.process_gone"]
        assert len(gone) == 1 and gone[0]["exit_code"] == -signal.SIGKILL and gone[0]["port"] == port
        assert api.restarts == 1 and api._proc.pid != first and api._proc.is_alive()
    finally:
        await api.stop()
    assert not api._proc.is_alive()
