"""Position sizing and leverage selection (pure).

Size = risk budget / stop distance, where the risk budget is RISK_PER_TRADE_PCT of equity,
scaled DOWN by volatility (ATR % against its own percentile) and optionally UP by consensus
confidence (capped), and capped by a fractional Kelly bound from the track record. Exchange
rounding (step, tick, min notional) only ever reduces risk: quantities round down, stops round
toward the entry, take-profits round toward the entry.

Leverage: the lowest leverage whose margin fits the per-position margin budget, never above
MAX_LEVERAGE, the regime/confidence table, the proposal's own request, the exchange's and the
bracket's maximum — and only if the liquidation price lies beyond the stop by
LIQUIDATION_BUFFER_MULTIPLE × the stop distance.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from quorum.domain.liquidation import bracket_for, isolated_margin, liquidation_price
from quorum.domain.models import Bracket, Regime, Side


def _decimals(increment: float) -> int:
    return max(0, -int(math.floor(math.log10(increment))) + 2)


def floor_to_step(value: float, step: float) -> float:
    """Round DOWN to a multiple of `step` (a quantity step), tolerant of float noise such as
    0.3/0.1, and printed clean (0.003, not 0.0030000000000000005). The one rounding of
    quantities: sizing, every venue and the backtest use it."""
    if step <= 0:
        return value
    n = math.floor(value / step + 1e-9)
    return float(round(n * step, _decimals(step)))


def round_to_tick(value: float, tick: float) -> float:
    """Round to the nearest multiple of `tick` (a price tick), printed clean."""
    if tick <= 0:
        return value
    return float(round(round(value / tick) * tick, _decimals(tick)))


def round_stop(stop: float, side: Side, tick: float) -> float:
    """Round a stop TOWARD the entry (long: up, short: down): never a wider stop."""
    if tick <= 0:
        return stop
    n = math.ceil(stop / tick - 1e-9) if side is Side.LONG else math.floor(stop / tick + 1e-9)
    return float(round(n * tick, 12))


def round_target(target: float, side: Side, tick: float) -> float:
    """Round a take-profit TOWARD the entry (long: down, short: up): never a rosier target."""
    if tick <= 0:
        return target
    n = math.floor(target / tick + 1e-9) if side is Side.LONG else math.ceil(target / tick - 1e-9)
    return float(round(n * tick, 12))


def volatility_scale(atr_pct_percentile: float | None) -> float:
    """1.0 up to the median of the symbol's own ATR % history, then linearly down to 0.5 at the
    top (high volatility → smaller). Accepts a percentile in [0, 1] or [0, 100]; unknown → 1."""
    if atr_pct_percentile is None or not math.isfinite(atr_pct_percentile):
        return 1.0
    p = atr_pct_percentile / 100.0 if atr_pct_percentile > 1.0 else atr_pct_percentile
    p = min(max(p, 0.0), 1.0)
    return 1.0 if p <= 0.5 else 1.0 - (p - 0.5)


def confidence_scale(confidence: float, min_confidence: float, cap: float) -> float:
    """1.0 at the minimum consensus confidence, linearly up to `cap` at confidence 1."""
    if cap <= 1.0 or not math.isfinite(confidence) or confidence <= min_confidence or min_confidence >= 1:
        return 1.0
    frac = (min(confidence, 1.0) - min_confidence) / (1.0 - min_confidence)
    return min(cap, 1.0 + (cap - 1.0) * frac)


def kelly_risk_fraction(win_rate: float, payoff: float, fraction: float) -> float | None:
    """Fractional Kelly: fraction × (W − (1 − W)/b) of equity at risk, None when unusable.
    May be ≤ 0 (no edge in the record). b = +inf (a record without a loss) gives fraction × W."""
    if fraction <= 0 or not (0 <= win_rate <= 1) or math.isnan(payoff) or payoff <= 0:
        return None
    return fraction * (win_rate - (1.0 - win_rate) / payoff)


# Regime/confidence leverage table: the cap before the liquidation rule.
REGIME_LEVERAGE_CAP: dict[Regime, int] = {
    Regime.TRENDING_UP: 125,
    Regime.TRENDING_DOWN: 125,
    Regime.RANGING: 125,
    Regime.VOLATILE: 2,
    Regime.UNKNOWN: 3,
}


def leverage_cap(max_leverage: int, regime: Regime, confidence: float) -> int:
    """MAX_LEVERAGE, then ≤ 2x when volatile, ≤ 3x when the regime is unknown or confidence is
    below 0.7, ≤ 5x below 0.8."""
    cap = min(max_leverage, REGIME_LEVERAGE_CAP.get(regime, 3))
    if not math.isfinite(confidence) or confidence < 0.7:
        cap = min(cap, 3)
    elif confidence < 0.8:
        cap = min(cap, 5)
    return max(1, cap)


@dataclass(frozen=True, slots=True)
class LeverageChoice:
    leverage: int
    notional: float
    liquidation_price: float
    bracket: Bracket
    margin_limited: bool


def liquidation_ok(side: Side, entry: float, stop: float, liq: float, buffer_multiple: float) -> bool:
    """The liquidation price lies beyond the stop with distance ≥ buffer × stop distance
    (a liquidation price of 0 means the position cannot be liquidated)."""
    stop_dist = abs(entry - stop)
    if side is Side.LONG:
        return liq <= 0 or (liq < stop and entry - liq >= buffer_multiple * stop_dist)
    return liq <= 0 or (liq > stop and liq - entry >= buffer_multiple * stop_dist)


def isolated_liquidation(side: Side, notional: float, entry: float, leverage: float,
                         brackets: Sequence[Bracket]) -> tuple[float, Bracket]:
    qty = notional / entry
    b = bracket_for(notional, brackets)
    lp = liquidation_price(side, qty, entry, isolated_margin(notional, leverage), b.maint_margin_rate, b.maint_amount)
    return lp, b


def choose_leverage(
    side: Side,
    entry: float,
    stop: float,
    notional: float,
    cap: int,
    margin_budget: float,
    brackets: Sequence[Bracket],
    buffer_multiple: float,
) -> LeverageChoice | None:
    """Lowest leverage (≤ cap) whose margin fits `margin_budget` and whose liquidation price
    keeps the buffer; if even the highest passing leverage needs more margin, the notional is
    reduced to fit (margin_limited). None when no leverage ≥ 1 keeps the buffer.

    The estimate uses the isolated margin (notional / leverage) as the wallet balance; in cross
    mode the whole wallet backs the position, so the true liquidation price is farther away."""
    best: int | None = None
    b = bracket_for(notional, brackets)  # the bracket depends on the notional only
    for lev in range(max(1, cap), 0, -1):
        if lev > b.max_leverage:
            continue
        # = isolated_liquidation(side, notional, entry, lev, brackets), without re-finding b
        lp = liquidation_price(side, notional / entry, entry, isolated_margin(notional, lev), b.maint_margin_rate,
                               b.maint_amount)
        if liquidation_ok(side, entry, stop, lp, buffer_multiple):
            best = lev
            break
    if best is None:
        return None
    ratio = notional / margin_budget if margin_budget > 0 else math.inf
    needed = math.ceil(ratio - 1e-9) if math.isfinite(ratio) else best + 1
    margin_limited = needed > best
    lev = min(best, max(1, needed))
    if margin_limited:
        notional = margin_budget * best
    lp, b = isolated_liquidation(side, notional, entry, lev, brackets) if notional > 0 else (0.0, brackets[0])
    return LeverageChoice(lev, notional, lp, b, margin_limited)
