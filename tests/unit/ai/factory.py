"""Snapshot/TimeframeView/VoteContext values for tests, built directly (no scanner needed)."""

from __future__ import annotations

import json
from typing import Any

from quorum.ai.context import AccountView, PositionView, VoteContext
from quorum.domain.models import Regime, Side, Snapshot, TimeframeView

T0 = 1_760_000_000_000  # an arbitrary decision time (epoch ms)


def view(timeframe: str = "15m", close: float = 100.0, *, trend: str = "up", **overrides: Any) -> TimeframeView:
    """A view whose indicators describe a clean up-trend ('up'), down-trend ('down') or a flat market."""
    sign = {"up": 1.0, "down": -1.0, "flat": 0.0}[trend]
    values: dict[str, Any] = dict(
        timeframe=timeframe, bars=500, close=close, change_pct=0.8 * sign,
        rsi=50 + 10 * sign, macd=0.5 * sign, macd_signal=0.3 * sign, macd_hist=0.2 * sign if sign else 0.0,
        bb_upper=close * 1.02, bb_middle=close, bb_lower=close * 0.98, bb_pct_b=0.5 + 0.2 * sign, bb_width=0.04,
        atr=close * 0.01, atr_pct=1.0, atr_pct_percentile=0.5,
        ema20=close * (1 - 0.005 * sign), ema50=close * (1 - 0.015 * sign), ema200=close * (1 - 0.03 * sign),
        ema20_slope=0.1 * sign, ema50_slope=0.05 * sign, ema200_slope=0.01 * sign,
        adx=30.0 if sign else 12.0, plus_di=25 + 5 * sign, minus_di=25 - 5 * sign,
        obv_slope=0.1 * sign, volume_ratio=1.2, range_high=close * 1.05, range_low=close * 0.95,
        regime={1.0: Regime.TRENDING_UP, -1.0: Regime.TRENDING_DOWN, 0.0: Regime.RANGING}[sign],
        recent_closes=(close * 0.99, close * 0.995, close),
    )
    values.update(overrides)
    return TimeframeView(**values)


def snapshot(symbol: str = "BTCUSDT", price: float = 100.0, *, trend: str = "up", time_ms: int = T0,
             **overrides: Any) -> Snapshot:
    views = tuple(view(tf, price, trend=trend) for tf in ("15m", "1h", "4h"))
    values: dict[str, Any] = dict(symbol=symbol, time_ms=time_ms, price=price, timeframes=views,
                                  regime=views[0].regime, funding_rate=0.0001, next_funding_ms=time_ms + 3_600_000)
    values.update(overrides)
    return Snapshot(**values)


def context(snap: Snapshot | None = None, *, position: bool = False, equity: float = 1000.0) -> VoteContext:
    snap = snap or snapshot()
    positions: tuple[PositionView, ...] = ()
    if position:
        positions = (PositionView(snap.symbol, Side.LONG, snap.price * 0.98, snap.price, 0.5, 3.0,
                                  snap.price * 0.01, 2.5, snap.price * 0.96, snap.price * 0.7),)
    return VoteContext(snap, AccountView(equity, equity * 0.8, 12.5, len(positions)), positions)


def vote_json(action: str = "LONG", confidence: float = 0.8, price: float = 100.0, symbol: str = "BTCUSDT",
              **overrides: Any) -> str:
    sign = {"LONG": 1, "SHORT": -1}.get(action, 0)
    body: dict[str, Any] = {
        "symbol": symbol, "action": action, "confidence": confidence, "leverage": 3,
        "stop_loss": price * (1 - 0.02 * sign) if sign else None,
        "take_profits": [price * (1 + 0.04 * sign)] if sign else [],
        "horizon": "4h", "reasoning": "test",
    }
    body.update(overrides)
    return json.dumps(body)
