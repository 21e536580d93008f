"""The rules analyst: a deterministic trend + momentum + volatility voter (voter name "rules").

One numpy core, two entry points that cannot disagree:

- `rules_signals(close, ema20, ema50, rsi, macd_hist, adx, atr)` evaluates a whole series at
  once (the backtester runs it over ~100k bars);
- `rules_vote(snapshot)` feeds the decision-timeframe view of one snapshot through the same
  function as length-1 arrays and wraps the result in a `Vote`.

Rules (LONG; SHORT mirrors them):
- trend: ema20 > ema50 and close > ema20;
- momentum: MACD histogram > 0 and RSI in (50, `rsi_overbought`);
- strength: ADX ≥ `adx_min`;
- volatility: ATR/close ≤ `max_atr_pct` (too wild → HOLD) and ATR known and positive.
Stop = close ∓ `stop_atr`·ATR (measured from the entry price), take-profit = close ± `tp_atr`·ATR.
Confidence rises with ADX above the threshold and with the EMA separation in ATRs.
Missing indicators (None / NaN) give HOLD.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from quorum.domain.models import Action, Snapshot, Vote

RULES_VOTER = "rules"
RULES_VERSION = "rules-v1"

HOLD_CODE, LONG_CODE, SHORT_CODE = 0, 1, -1
_CODE_ACTION = {HOLD_CODE: Action.HOLD, LONG_CODE: Action.LONG, SHORT_CODE: Action.SHORT}

FloatArray = npt.NDArray[np.float64]
ArrayLike = npt.ArrayLike


@dataclass(frozen=True, slots=True)
class RulesParams:
    adx_min: float = 20.0
    rsi_overbought: float = 70.0
    rsi_oversold: float = 30.0
    max_atr_pct: float = 4.0
    stop_atr: float = 2.0
    tp_atr: float = 3.0
    base_confidence: float = 0.55
    adx_bonus: float = 0.2
    separation_bonus: float = 0.15
    max_confidence: float = 0.9


DEFAULT_PARAMS = RulesParams()


def _arr(x: ArrayLike) -> FloatArray:
    return np.asarray(x, dtype=np.float64)


def rules_signals(
    close: ArrayLike,
    ema20: ArrayLike,
    ema50: ArrayLike,
    rsi: ArrayLike,
    macd_hist: ArrayLike,
    adx: ArrayLike,
    atr: ArrayLike,
    params: RulesParams = DEFAULT_PARAMS,
) -> tuple[npt.NDArray[np.int8], FloatArray, FloatArray, FloatArray]:
    """Evaluate the rules on aligned arrays (NaN = unknown).

    Returns `(action_codes, confidence, stop, take_profit)`: codes 1 LONG, -1 SHORT, 0 HOLD;
    stop and take-profit are NaN on HOLD bars; confidence is 0 on HOLD bars.
    """
    c, e20, e50, r, mh, dx, at = (_arr(a) for a in (close, ema20, ema50, rsi, macd_hist, adx, atr))
    with np.errstate(invalid="ignore", divide="ignore"):
        known = np.isfinite(c) & np.isfinite(e20) & np.isfinite(e50) & np.isfinite(r) & np.isfinite(mh)
        known &= np.isfinite(dx) & np.isfinite(at) & (at > 0) & (c > 0)
        calm = (at / c) * 100.0 <= params.max_atr_pct
        strong = dx >= params.adx_min
        ok = known & calm & strong
        long_ = ok & (e20 > e50) & (c > e20) & (mh > 0) & (r > 50.0) & (r < params.rsi_overbought)
        short = ok & (e20 < e50) & (c < e20) & (mh < 0) & (r < 50.0) & (r > params.rsi_oversold)
        codes = np.where(long_, LONG_CODE, np.where(short, SHORT_CODE, HOLD_CODE)).astype(np.int8)
        adx_part = np.clip((dx - params.adx_min) / params.adx_min, 0.0, 1.0)
        sep_part = np.clip(np.abs(e20 - e50) / (2.0 * at), 0.0, 1.0)
        conf = params.base_confidence + params.adx_bonus * adx_part + params.separation_bonus * sep_part
        conf = np.minimum(conf, params.max_confidence)
        active = codes != HOLD_CODE
        sign = codes.astype(np.float64)
        confidence = np.where(active, conf, 0.0)
        stop = np.where(active, c - sign * params.stop_atr * at, np.nan)
        take_profit = np.where(active, c + sign * params.tp_atr * at, np.nan)
    return codes, confidence, stop, take_profit


def _nan(x: float | None) -> float:
    return float("nan") if x is None else float(x)


def rules_vote(snapshot: Snapshot, timeframe: str | None = None, params: RulesParams = DEFAULT_PARAMS) -> Vote:
    """The rules analyst's vote on one snapshot, from the given timeframe's view (default: the
    snapshot's first view, the decision timeframe). Identical to `rules_signals` bar by bar."""
    view = snapshot.view(timeframe) if timeframe else (snapshot.timeframes[0] if snapshot.timeframes else None)
    if view is None:
        return Vote(voter=RULES_VOTER, symbol=snapshot.symbol, action=Action.HOLD, confidence=0.0,
                    reasoning=f"no {timeframe or 'decision'} timeframe view in the snapshot")
    codes, conf, stop, tp = rules_signals(
        [view.close], [_nan(view.ema20)], [_nan(view.ema50)], [_nan(view.rsi)], [_nan(view.macd_hist)],
        [_nan(view.adx)], [_nan(view.atr)], params,
    )
    action = _CODE_ACTION[int(codes[0])]
    if action is Action.HOLD:
        return Vote(voter=RULES_VOTER, symbol=snapshot.symbol, action=Action.HOLD, confidence=0.0,
                    reasoning=f"{view.timeframe}: no aligned trend, momentum and strength")
    return Vote(
        voter=RULES_VOTER,
        symbol=snapshot.symbol,
        action=action,
        confidence=float(conf[0]),
        leverage=None,
        stop_loss=float(stop[0]),
        take_profits=(float(tp[0]),),
        horizon=view.timeframe,
        reasoning=f"{view.timeframe}: EMA20 {'>' if action is Action.LONG else '<'} EMA50, MACD hist "
        f"{view.macd_hist:.4g}, RSI {view.rsi:.1f}, ADX {view.adx:.1f}",
    )
