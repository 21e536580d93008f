"""The real 2025-10-10 21:15 UTC liquidation cascade (Binance 5m bars) replayed through the exits:
every long opened before it is closed by its stop (or, when its leverage was unsafe, by the
liquidation rule) — none silently survives a move through its stop."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from quorum.domain.exits import Bar, ExitPolicy, run_exits, step_bar
from quorum.domain.liquidation import liquidation_price_for
from quorum.domain.models import Action, PositionState, Proposal, Regime, Side, SymbolFilters
from quorum.domain.risk import RiskContext, RiskPolicy, evaluate, position_from_verdict
from quorum.risk.brackets import BracketTable

SYMBOLS = ["BTCUSDT", "ETHUSDT", "SOLUSDT", "BNBUSDT", "XRPUSDT", "DOGEUSDT"]
ENTRY_MS = int(pd.Timestamp("2025-10-10 21:00", tz="UTC").value // 1_000_000)
END_MS = int(pd.Timestamp("2025-10-10 22:30", tz="UTC").value // 1_000_000)
STOP_PCTS = [1.0, 2.0, 4.0, 7.5]
STOP_REASONS = {"stop_loss", "trailing_stop", "break_even_stop"}


def load_window(shared_data: Path, symbol: str) -> dict[str, np.ndarray]:
    df = pd.read_csv(shared_data / f"{symbol}-futures-5m.csv.gz")
    w = df[(df.timestamp_ms >= ENTRY_MS) & (df.timestamp_ms < END_MS)]
    assert len(w) == 18 and int(w.timestamp_ms.iloc[0]) == ENTRY_MS
    return {c: w[c].to_numpy(dtype=np.int64 if c == "timestamp_ms" else np.float64)
            for c in ("timestamp_ms", "open", "high", "low", "close")}


@pytest.fixture(scope="module")
def windows(shared_data: Path) -> dict[str, dict[str, np.ndarray]]:
    return {s: load_window(shared_data, s) for s in SYMBOLS}


def replay(p: PositionState, w: dict[str, np.ndarray], policy: ExitPolicy) -> tuple[PositionState, list]:
    return run_exits(p, w["timestamp_ms"], w["open"], w["high"], w["low"], w["close"], policy)


def test_cascade_closes_every_long_through_its_stop(windows: dict[str, dict[str, np.ndarray]]) -> None:
    table = BracketTable()
    policy = ExitPolicy()  # defaults: trailing, break-even, partials, time stop
    closed = 0
    for sym, w in windows.items():
        entry = float(w["open"][0])
        tick = 10 ** np.floor(np.log10(entry) - 5)
        filters = SymbolFilters(sym, tick_size=float(tick), step_size=1e-6, min_qty=1e-6, min_notional=5.0)
        for pct in STOP_PCTS:
            stop = entry * (1 - pct / 100)
            prop = Proposal(sym, Action.LONG, 0.9, entry, stop, (entry * (1 + 3 * pct / 100),), None, 3, 0, 1.0,
                            "cascade", "h", ENTRY_MS)
            ctx = RiskContext(equity=10_000.0, now_ms=ENTRY_MS, brackets=table.for_symbol(sym), filters=filters,
                              atr=entry * 0.004, atr_pct_percentile=0.5, regime=Regime.TRENDING_UP,
                              policy=RiskPolicy(max_leverage=10))
            verdict = evaluate(prop, ctx)
            assert verdict.accepted, (sym, pct, verdict.reasons)
            pos = position_from_verdict(verdict, fill_price=entry, quantity=verdict.quantity, opened_ms=ENTRY_MS,
                                        position_id=f"{sym}-{pct}", brackets=table.for_symbol(sym))
            assert pos.liquidation_price is None or pos.liquidation_price < pos.stop_price
            final, events = replay(pos, w, policy)
            low = float(w["low"].min())
            if low <= pos.initial_stop:
                assert final.quantity == 0, f"{sym} {pct}% stop survived a low of {low}"
                idx, intents = events[-1]
                close = intents[-1]
                assert close.reason in STOP_REASONS, (sym, pct, close.reason)
                # filled at its stop, or at the open when the bar gapped through it; never liquidated
                assert close.price_hint is not None
                assert close.price_hint >= min(final.stop_price, float(w["open"][idx])) - 1e-12
                if pos.liquidation_price is not None:
                    assert close.price_hint > pos.liquidation_price
                # the stop that fired was measured from the entry or moved up from there, never below
                assert final.stop_price >= pos.initial_stop
                closed += 1
            else:
                assert final.quantity > 0 or any(i.reason == "take_profit" for _, its in events for i in its)
            # bar-by-bar stepping gives the same outcome
            state = pos
            for k in range(len(w["open"])):
                state, _ = step_bar(state, Bar(int(w["timestamp_ms"][k]), w["open"][k], w["high"][k],
                                               w["low"][k], w["close"][k]), policy)
                if state.quantity <= 0:
                    break
            assert state == final
    assert closed >= 20  # the cascade went through most stops in all six symbols


def test_cascade_liquidates_unsafe_leverage(windows: dict[str, dict[str, np.ndarray]]) -> None:
    """A 25x long with an 8 % stop (its liquidation lies INSIDE the stop; the verdict would never
    allow it) is closed by the liquidation rule, not left open and not 'stopped' below its
    liquidation price."""
    table = BracketTable()
    policy = ExitPolicy(trailing_enabled=False, partial_exits=(), break_even_at_r=0)
    for sym, w in windows.items():
        entry = float(w["open"][0])
        qty = 1000.0 / entry
        liq = liquidation_price_for(Side.LONG, qty, entry, qty * entry / 25, table.for_symbol(sym))
        stop = entry * 0.92
        assert stop < liq < entry
        pos = PositionState(symbol=sym, side=Side.LONG, entry_price=entry, quantity=qty, initial_quantity=qty,
                            initial_stop=stop, stop_price=stop, take_profit=None, leverage=25, opened_ms=ENTRY_MS,
                            peak_price=entry, liquidation_price=liq, position_id=sym)
        final, events = replay(pos, w, policy)
        assert final.quantity == 0
        (_, (close,)) = events[-1]
        assert close.reason == "liquidation" and close.price_hint == pytest.approx(liq)
