"""Retention of the equity history on the real Postgres: hours older than 7 days become one row
each that keeps the hour's lowest and highest equity, so drawdown is the same before and after
(a close-only hourly series would understate it); the rows of the last 7 days stay as written."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import asyncpg

from quorum.domain.equity import Segment, drawdown
from quorum.domain.statistics import max_drawdown_pct
from quorum.store.equity import EquityRepository, drawdown_since

START = datetime(2026, 1, 5, tzinfo=UTC)
DAYS = 15
STEP = timedelta(minutes=5)


def _path() -> list[tuple[datetime, float, str]]:
    """15 days of 5m equity (a random walk) with a fill row now and then, and on day 1 a dip
    to 880 inside one hour that has recovered by the hour's end."""
    rng = random.Random(12)
    out, eq = [], 1000.0
    for i in range(DAYS * 288):
        at = START + STEP * i
        eq *= 1 + rng.gauss(0, 0.0005)
        out.append((at, eq, "bar"))
        if i % 37 == 5:
            out.append((at + timedelta(seconds=20), eq * 0.999, "fill"))
    dip = START + timedelta(days=1, hours=3)
    return [(at, 880.0 if at == dip + timedelta(minutes=20) else 1000.0 if dip <= at < dip + timedelta(hours=1)
             else eq, kind) for at, eq, kind in out]


async def test_compaction_keeps_each_hours_low_and_high(pool: asyncpg.Pool) -> None:
    repo = EquityRepository(pool, "paper")
    path = _path()
    for n, (at, eq, kind) in enumerate(path):
        await repo.record(at, eq, eq - 5, 5.0, 1, gross_exposure=300.0, kind=kind,
                          fill_id=n if kind == "fill" else None)
    now_ms = int((START + timedelta(days=DAYS)).timestamp() * 1000)
    before = await drawdown_since(pool, "paper", start_peak=1000.0)
    # Postgres's figure is the domain's, and the plain peak-to-trough of the raw points
    assert abs(before.max_pct - drawdown([Segment.point(0, eq) for _, eq, _ in path], 1000.0).max_pct) < 1e-9
    assert abs(before.max_pct - max_drawdown_pct([1000.0, *(eq for _, eq, _ in path)])) < 1e-9
    assert before.rows == len(path)

    removed, written = await repo.compact(now_ms)
    cutoff = START + timedelta(days=DAYS - 7)
    old = [p for p in path if p[0] < cutoff]
    assert removed == len(old) and written == (DAYS - 7) * 24
    rows = await pool.fetch("SELECT * FROM equity_snapshots WHERE mode = 'paper' ORDER BY at, id")
    hours = [r for r in rows if r["kind"] == "hour"]
    assert len(hours) == written and all(r["at"] < cutoff for r in hours)
    assert len(rows) - len(hours) == len(path) - len(old)  # the last 7 days untouched
    by_hour: dict[datetime, list[float]] = {}
    for at, eq, _ in old:
        by_hour.setdefault(at.replace(minute=0, second=0), []).append(eq)
    for r in hours:
        values = by_hour[r["at"].replace(minute=0, second=0)]
        assert float(r["equity_min"]) == min(values) and float(r["equity_max"]) == max(values)
        assert r["samples"] == len(values) and float(r["equity"]) == values[-1]
        assert float(r["wallet_balance"]) == values[-1] - 5 and float(r["gross_exposure"]) == 300.0
    # a week older than the window is 168 rows, whatever it held
    week = [r for r in hours if r["at"] < START + timedelta(days=7)]
    assert len(week) == 168

    after = await drawdown_since(pool, "paper", start_peak=1000.0)
    assert abs(after.max_pct - before.max_pct) < 1e-9 and after.max_pct >= 12.0 - 1e-9
    assert after.peak == before.peak and after.equity == before.equity
    assert abs(after.current_pct - before.current_pct) < 1e-12
    closes_only = max_drawdown_pct([1000.0, *(float(r["equity"]) for r in rows)])
    assert closes_only < after.max_pct - 5.0  # what keeping only each hour's last equity would claim

    assert await repo.compact(now_ms) == (0, 0)  # idempotent
    assert await repo.last_fill_id() == max(n for n, p in enumerate(path) if p[2] == "fill")
    # measured from a later time (a drawdown breaker reset re-bases the peak), the dip is gone
    later = await drawdown_since(pool, "paper", int((START + timedelta(days=2)).timestamp() * 1000))
    assert later.max_pct < after.max_pct and later.rows < after.rows
