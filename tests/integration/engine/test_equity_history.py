"""The mark-to-market equity history, written by the engine of a real paper run (the service's
wiring against the fake Binance serving the real candles): a row at every execution-bar close and
after every fill, and drawdown everywhere — the go-live gate, the report, /status, /metrics —
counts an open losing position. The hourly retention runs from the engine."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg

from quorum.api.metrics_view import render
from quorum.api.status import build_status
from quorum.backtest.request import parse_time
from quorum.commands.report import build_report
from quorum.domain.models import IntentKind, OrderIntent, Side
from quorum.domain.statistics import max_drawdown_pct
from quorum.market.data_files import load_candles
from quorum.risk.gate import load_gate_record
from tests.integration.engine.live_paper import paper_app, settings_for, start_fake

SYMBOL = "BTCUSDT"
MIN = 60_000
QTY = 0.008


def _ms(text: str) -> int:
    t = parse_time(text, "t")
    assert t is not None
    return t


async def test_drawdown_counts_an_open_losing_position(pool: asyncpg.Pool, shared_data: Path) -> None:
    t0, end = _ms("2025-10-10T19:00"), _ms("2025-10-10T22:30")  # a long through the 21:15 cascade, still open
    # two hours of history from nine days before, as written at full resolution: the engine compacts them
    old = datetime.fromtimestamp(t0 / 1000, tz=UTC) - timedelta(days=9)
    old_rows = [(old + timedelta(minutes=5 * i), 1000.0 - (5.0 if i == 7 else 0.0)) for i in range(24)]
    for at, eq in old_rows:
        await pool.execute(
            "INSERT INTO equity_snapshots (mode, at, equity, wallet_balance) VALUES ('paper', $1, $2, $2)", at, eq)
    fake = await start_fake(shared_data, [SYMBOL], t0 - 10 * MIN)
    # min_ai_confidence=1: the voters never trade on their own, only the position below exists
    settings = settings_for([SYMBOL], paper_funding_rate=0.0, min_ai_confidence=1.0)
    try:
        app = await paper_app(settings, pool, fake)
        await app.engine.start()
        await app.clock.sleep_until(t0)
        await app.venue_feed.price_now(SYMBOL, t0)
        price = await app.market.last_price(SYMBOL)
        assert price is not None
        res = await app.executor.open_position(OrderIntent(
            IntentKind.OPEN, SYMBOL, Side.LONG, QTY, "entry", price_hint=price, stop_price=round(price * 0.75, 1),
            leverage=2), position_id="p-equity-1")
        assert res.status == "opened"
        await app.engine.run(until_ms=end)

        pos = await pool.fetchrow("SELECT status, entry_price FROM positions WHERE id = 'p-equity-1'")
        assert pos["status"] == "open"  # nothing realised: any drawdown is unrealised
        gate = await load_gate_record(pool, settings, "paper")
        report = await build_report(pool, settings, "paper")
        status = await build_status(app.runtime, pool)

        # independent: the account marked at each 5m close of the real candles
        five = load_candles(shared_data / f"{SYMBOL}-futures-5m.csv.gz").between(t0, end)
        entry = float(pos["entry_price"])
        wallet = 1000.0 - float(await pool.fetchval("SELECT sum(fee) FROM fills WHERE mode = 'paper'"))
        marked = [wallet + (float(five.close[k]) - entry) * QTY for k in range(len(five))]
        expected_dd = max_drawdown_pct([1000.0, *marked])
        assert expected_dd > 8.0  # the cascade: a position losing about 11 % of the account at its worst close
        assert abs(gate.max_drawdown_pct - expected_dd) < 1e-6
        assert abs(report["summary"]["max_drawdown_pct"] - expected_dd) < 1e-6

        bars = await pool.fetch("SELECT at, equity, wallet_balance, unrealized_pnl, open_positions, gross_exposure "
                                "FROM equity_snapshots WHERE mode = 'paper' AND kind = 'bar' ORDER BY at")
        assert len(bars) == len(five)  # one row per 5m close in (t0, end]
        assert int(bars[-1]["at"].timestamp() * 1000) == end
        last = bars[-1]
        assert abs(float(last["unrealized_pnl"]) - (float(five.close[-1]) - entry) * QTY) < 1e-6
        assert abs(float(last["equity"]) - marked[-1]) < 1e-6 and last["open_positions"] == 1
        assert abs(float(last["gross_exposure"]) - QTY * float(five.close[-1])) < 1e-6
        fills = await pool.fetch("SELECT fill_id, at FROM equity_snapshots WHERE mode = 'paper' AND kind = 'fill'")
        fill_ids = await pool.fetch("SELECT id, at FROM fills WHERE mode = 'paper'")
        assert sorted((r["fill_id"], r["at"]) for r in fills) == sorted((r["id"], r["at"]) for r in fill_ids)

        current = (max(1000.0, *marked) - marked[-1]) / max(1000.0, *marked) * 100.0
        assert status["drawdown"]["max_pct"] >= expected_dd - 1e-6
        assert abs(status["drawdown"]["current_pct"] - current) < 1e-6 and current > 2.0
        # /metrics renders the /status body: the engine's drawdown is the history's
        assert abs(status["drawdown_pct"] - current) < 1e-6
        exposition = render(status, None, lambda: []).decode()
        gauge = next(line for line in exposition.splitlines() if line.startswith("quorum_drawdown_pct "))
        assert abs(float(gauge.split()[1]) - current) < 1e-6

        # the old hours were compacted by the engine, their lows kept
        hours = await pool.fetch("SELECT kind, samples, equity_min, equity_max FROM equity_snapshots "
                                 "WHERE mode = 'paper' AND at < $1 ORDER BY at", old + timedelta(days=1))
        assert [(r["kind"], r["samples"]) for r in hours] == [("hour", 12), ("hour", 12)]
        assert float(hours[0]["equity_min"]) == 995.0 and float(hours[0]["equity_max"]) == 1000.0
        await app.close()
    finally:
        await fake.stop()
