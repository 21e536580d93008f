"""Funding at the instant through the backtest runner (issue 14, item 4): on a real slice where
entries and exits fall on funding times, every trade's funding is recomputed by hand from the
data — at each funding time T after its entry and up to its exit, the quantity still held at T
(exit fills AT T come after T's funding) × the open of the bar opening at T (the price at T) ×
the recorded rate — and must be exactly what the backtest charged."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from quorum.backtest.runner import run_backtest
from quorum.domain.fills import funding_times

from .conftest import market, settings

SYMS = ("BNBUSDT", "BTCUSDT", "DOGEUSDT", "ETHUSDT", "SOLUSDT", "XRPUSDT")
H8 = 8 * 3_600_000


def test_backtest_charges_funding_to_what_is_held_at_each_funding_time(shared_data: Path) -> None:
    cfg = settings(min_ai_confidence=0.55)
    # ends at 04:00, not on a funding time: the end-of-data close has no bar opening at its time
    m = market(shared_data, SYMS, "2025-03-01", "2025-03-11T04:00")
    run = run_backtest(m, cfg).run
    paid = {(sym, t): a for sym, t, a in run.venue.funding_payments}
    assert len(paid) == len(run.venue.funding_payments)  # once per symbol and funding time

    expected: dict[tuple[str, int], float] = {}
    entries_at_t = exits_at_t = 0
    for tr in run.trades:
        candles, funding = m.candles[tr.symbol], m.funding[tr.symbol]
        exits = [f for f in run.fills if f.symbol == tr.symbol and f.reduce_only
                 and tr.entry_ms <= f.time_ms <= tr.exit_ms]
        entries_at_t += tr.entry_ms % H8 == 0
        exits_at_t += any(f.time_ms % H8 == 0 for f in exits)
        total = 0.0
        for t in funding_times(tr.entry_ms, tr.exit_ms):  # entry_ms < t <= exit_ms
            held = tr.quantity - sum(f.quantity for f in exits if f.time_ms < t)
            if held <= 1e-12:
                continue  # all of it had gone before t
            i = int(np.searchsorted(candles.open_ms, t))
            assert int(candles.open_ms[i]) == t  # the bar opening at t: its open is the price at t
            rate = funding.last_rate(t) if funding is not None else None
            amount = held * float(candles.open[i]) * (rate if rate is not None else cfg.paper_funding_rate)
            expected[(tr.symbol, t)] = amount * tr.side.sign  # longs pay a positive rate
            total += expected[(tr.symbol, t)]
        assert tr.funding == pytest.approx(total, abs=1e-9), tr
    # the slice has what the rule is about: entries at a funding time, exits filled at one
    assert entries_at_t >= 3 and exits_at_t >= 1
    assert sorted(paid) == sorted(expected)
    for key, amount in expected.items():
        assert paid[key] == pytest.approx(amount, abs=1e-9), key
