"""Funding at the instant on the paper venue in Postgres (issue 14, item 4), driven as the paper
engine drives it: at each close t the bar closing at t (`on_bar`), the price at t (`on_price`),
then the position's sync (funding first) and the orders at t. An entry filled at a funding time
does not pay it; a close filled at a funding time does, and the record of the position has it."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from quorum.execution.protection import Executor
from quorum.execution.reconcile import Reconciler

from .helpers import T0, Clock, bar, open_intent, paper

H8 = 8 * 3_600_000
TF = 300_000
T1 = T0 + H8  # the next funding time (T0 is one too)


class RecordingFunding:
    """Published rates by funding time; records what the venue asked to prefetch."""

    def __init__(self, rates: dict[int, float]) -> None:
        self.rates = rates
        self.asked: list[tuple[str, int, int]] = []

    async def prefetch(self, symbol: str, start_ms: int, end_ms: int) -> None:
        self.asked.append((symbol, start_ms, end_ms))

    def rate(self, symbol: str, time_ms: int) -> float | None:
        return self.rates.get(time_ms)


async def _session(pool, funding: RecordingFunding):  # type: ignore[no-untyped-def]
    clock = Clock(T0)
    ex = paper(pool, clock, funding_source=funding, funding_rate=None)
    await ex.on_price("BTCUSDT", 50_000.0, T0 - 3 * TF)  # known (and flat) before T0
    for t in range(T0 - 2 * TF, T0 + 1, TF):
        await _step(ex, t, flat({}))
    executor = Executor(ex, pool, "paper", clock=clock)
    assert (await Reconciler(executor).run()).ok
    return clock, ex, executor


def flat(at: dict[int, float]) -> Callable[[int], float]:
    """A price path: the bar opening at t is flat at `at[t]` (50,000 unless given)."""
    return lambda t: at.get(t, 50_000.0)


async def _step(ex, t: int, path: Callable[[int], float]) -> None:  # type: ignore[no-untyped-def]
    """The engine's phase A–B at the close t: the bar closing at t, then the price at t (the open
    of the bar opening at t, as the replay feed shows it)."""
    p = path(t - TF)
    await ex.on_bar("BTCUSDT", bar(t - TF, p, p, p, p))
    await ex.on_price("BTCUSDT", path(t), t)


async def test_entry_at_a_funding_time_pays_the_next_one_only(pool) -> None:  # type: ignore[no-untyped-def]
    funding = RecordingFunding({T0: 0.001, T1: 0.002})
    _clock, ex, executor = await _session(pool, funding)
    res = await executor.execute(open_intent(qty=0.01, stop=45_000.0))  # filled at T0, just after its funding
    assert res.status == "opened"
    for t in range(T0 + TF, T1 + TF + 1, TF):  # through the bar opening at T1
        await _step(ex, t, flat({T1: 51_000.0}))
    # held at T1 only: 0.01 × 51,000 (the price at T1) × 0.002 = 1.02
    rows = await pool.fetch("SELECT time_ms, quantity, mark_price, amount FROM paper_funding ORDER BY time_ms")
    assert [(r["time_ms"], float(r["quantity"]), float(r["mark_price"])) for r in rows] == [(T1, 0.01, 51_000.0)]
    assert float(rows[0]["amount"]) == pytest.approx(1.02)
    # the rate was asked for before it was settled, for T1 alone
    assert funding.asked == [("BTCUSDT", T1 - 1, T1)]


async def test_close_at_a_funding_time_pays_it_and_the_record_has_it(pool) -> None:  # type: ignore[no-untyped-def]
    funding = RecordingFunding({T0: 0.001, T1: 0.002})
    clock, ex, executor = await _session(pool, funding)
    res = await executor.execute(open_intent(qty=0.01, stop=45_000.0))
    pid = res.position_id
    assert pid is not None
    for t in range(T0 + TF, T1 + 1, TF):
        await _step(ex, t, flat({T1: 52_000.0}))
    # the price at T1 settled T1's funding on the 0.01 held, and it is stored before anything fills at T1
    assert float(await pool.fetchval("SELECT amount FROM paper_funding WHERE time_ms=$1", T1)) == \
        pytest.approx(0.01 * 52_000.0 * 0.002)  # 1.04
    clock.t = T1
    pos = await executor.positions.get(pid)
    assert pos is not None
    await executor.sync_funding(pos)  # the engine syncs the position (funding first), then acts at T1
    closed = await executor.close(pid, "consensus_close")
    assert closed.status == "closed"
    row = await pool.fetchrow("SELECT funding, fees, gross_pnl, net_pnl FROM positions WHERE id=$1", pid)
    assert float(row["funding"]) == pytest.approx(1.04)
    assert float(row["net_pnl"]) == pytest.approx(float(row["gross_pnl"]) - float(row["fees"]) - 1.04)
    # a restarted venue knows T1 is settled: the bar opening at T1 charges nothing more
    ex2 = paper(pool, clock, funding_source=funding, funding_rate=None)
    await ex2.on_bar("BTCUSDT", bar(T1, 52_000.0, 52_000.0, 52_000.0, 52_000.0))
    assert [(f.time_ms, f.amount) for f in await ex2.funding_history("BTCUSDT")] == [(T1, pytest.approx(1.04))]
