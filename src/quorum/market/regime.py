"""Market regime per bar (vectorised) and market breadth across the universe.

Rules, in order (thresholds in `RegimeThresholds`):
1. UNKNOWN   — ADX, EMA20/50 or the ATR-% percentile not yet available.
2. VOLATILE  — ATR % is in the top `volatile_percentile` of its recent window.
3. TRENDING_UP   — ADX ≥ `trend_adx`, +DI > −DI, EMA20 > EMA50 (> EMA200 when known), close > EMA50.
4. TRENDING_DOWN — mirror image.
5. RANGING   — everything else (weak ADX or mixed EMA alignment).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from quorum.domain.models import Breadth, Regime, Snapshot

REGIME_CODES: tuple[Regime, ...] = (
    Regime.UNKNOWN, Regime.RANGING, Regime.TRENDING_UP, Regime.TRENDING_DOWN, Regime.VOLATILE,
)
CODE = {r: i for i, r in enumerate(REGIME_CODES)}


@dataclass(frozen=True)
class RegimeThresholds:
    trend_adx: float = 25.0
    volatile_percentile: float = 0.9


def classify_regimes(
    close: np.ndarray, adx: np.ndarray, plus_di: np.ndarray, minus_di: np.ndarray,
    ema20: np.ndarray, ema50: np.ndarray, ema200: np.ndarray, atr_percentile: np.ndarray,
    thresholds: RegimeThresholds | None = None,
) -> np.ndarray:
    """Regime code (index into `REGIME_CODES`) for every bar; see the module doc for the rules."""
    t = thresholds or RegimeThresholds()
    with np.errstate(invalid="ignore"):
        known = np.isfinite(adx) & np.isfinite(ema20) & np.isfinite(ema50) & np.isfinite(atr_percentile)
        has200 = np.isfinite(ema200)
        strong = adx >= t.trend_adx
        up = strong & (plus_di > minus_di) & (ema20 > ema50) & (close > ema50) & (~has200 | (ema50 > ema200))
        down = strong & (minus_di > plus_di) & (ema20 < ema50) & (close < ema50) & (~has200 | (ema50 < ema200))
        volatile = atr_percentile >= t.volatile_percentile
    out = np.full(close.shape[0], CODE[Regime.RANGING], dtype=np.int8)
    out[up] = CODE[Regime.TRENDING_UP]
    out[down] = CODE[Regime.TRENDING_DOWN]
    out[volatile] = CODE[Regime.VOLATILE]
    out[~known] = CODE[Regime.UNKNOWN]
    return out


def regime_of(code: int) -> Regime:
    return REGIME_CODES[int(code)]


def market_breadth(snapshots: Sequence[Snapshot], ema_timeframe: str | None = None) -> Breadth:
    """Share of symbols whose close is above their EMA50 (on `ema_timeframe`, default each
    snapshot's first view) and the average 24 h change across the snapshots given."""
    above = counted = 0
    changes: list[float] = []
    for s in snapshots:
        view = s.view(ema_timeframe) if ema_timeframe else (s.timeframes[0] if s.timeframes else None)
        if view is None:
            continue
        if view.ema50 is not None:
            counted += 1
            above += view.close > view.ema50
        if view.change_pct is not None:
            changes.append(view.change_pct)
    return Breadth(
        symbols=len(snapshots),
        share_above_ema50=above / counted if counted else 0.0,
        avg_change_24h_pct=float(np.mean(changes)) if changes else 0.0,
    )
