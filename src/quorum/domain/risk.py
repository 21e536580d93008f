"""The risk verdict for a proposal (pure): approved, resized or rejected, with reason codes.

`evaluate(proposal, ctx)` never raises on bad input: a stop on the wrong side, zero/negative or
non-finite prices, a leverage of 0 or above MAX_LEVERAGE, a NaN ATR, equity ≤ 0 … all become a
rejected verdict with a reason code. Order of the checks:

1. input validity → 2. breakers → 3. exposure → 4. stop distance (MIN/MAX_STOP_LOSS_PCT) →
5. take-profit and expectancy gate (fees + expected funding × FEE_COVER_MULTIPLE, reward:risk ≥
MIN_REWARD_RISK) → 6. size (risk budget / stop distance, volatility, confidence, Kelly) →
7. notional caps (per trade and total) → 8. leverage (table + liquidation buffer, margin budget)
→ 9. exchange rounding (step/tick/min notional; never increases risk) → 10. expected profit:
quantity × the distance to the final take-profit (the proposal's, else the default target at
max(MIN_REWARD_RISK, 2) R), minus the estimated round-trip fees and funding, must reach
MIN_EXPECTED_PROFIT_USD (0 = off).

"resized" means the size is below what the risk budget alone asked for because a cap bound it
(notional cap, total notional, margin budget) or the stop was widened to the minimum.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from quorum.domain import breakers as brk
from quorum.domain.exposure import ExposurePolicy, ExposureState, exposure_check, max_positions
from quorum.domain.liquidation import liquidation_price_for
from quorum.domain.models import Action, Bracket, PositionState, Proposal, Regime, Side, SymbolFilters
from quorum.domain.sizing import (
    choose_leverage,
    confidence_scale,
    floor_to_step,
    isolated_liquidation,
    kelly_risk_fraction,
    leverage_cap,
    round_stop,
    round_target,
    volatility_scale,
)

APPROVED, RESIZED, REJECTED = "approved", "resized", "rejected"


@dataclass(frozen=True, slots=True)
class RiskPolicy:
    max_leverage: int = 5
    risk_per_trade_pct: float = 1.0
    max_notional_pct: float = 200.0
    min_stop_loss_pct: float = 0.4
    max_stop_loss_pct: float = 8.0
    liquidation_buffer_multiple: float = 2.0
    min_reward_risk: float = 1.5
    fee_cover_multiple: float = 3.0
    taker_fee_rate: float = 0.0005
    min_confidence: float = 0.65
    confidence_size_cap: float = 1.5
    kelly_fraction: float = 0.0
    kelly_min_trades: int = 30
    min_expected_profit_usd: float = 0.0
    default_stop_atr_multiple: float = 2.0
    expected_hold_hours: float = 8.0
    funding_interval_hours: float = 8.0
    exposure: ExposurePolicy = field(default_factory=ExposurePolicy)
    breakers: brk.BreakerPolicy = field(default_factory=brk.BreakerPolicy)

    @classmethod
    def from_settings(cls, settings: Any, **overrides: Any) -> RiskPolicy:
        values: dict[str, Any] = {
            "max_leverage": int(settings.max_leverage),
            "risk_per_trade_pct": float(settings.risk_per_trade_pct),
            "max_notional_pct": float(settings.max_notional_pct),
            "min_stop_loss_pct": float(settings.min_stop_loss_pct),
            "max_stop_loss_pct": float(settings.max_stop_loss_pct),
            "liquidation_buffer_multiple": float(settings.liquidation_buffer_multiple),
            "min_reward_risk": float(settings.min_reward_risk),
            "fee_cover_multiple": float(settings.fee_cover_multiple),
            "taker_fee_rate": float(settings.taker_fee_pct) / 100.0,
            "min_confidence": float(settings.min_ai_confidence),
            "confidence_size_cap": float(settings.confidence_size_cap),
            "kelly_fraction": float(settings.kelly_fraction),
            "min_expected_profit_usd": float(settings.min_expected_profit_usd),
            "expected_hold_hours": min(float(settings.time_stop_hours) or 24.0, 24.0),
            "exposure": ExposurePolicy.from_settings(settings),
            "breakers": brk.BreakerPolicy.from_settings(settings),
        }
        values.update(overrides)
        return cls(**values)


@dataclass(frozen=True, slots=True)
class TrackRecord:
    """Calibrated record for the Kelly cap: closed trades, win rate, average win / average loss."""

    trades: int
    win_rate: float
    payoff: float

    @classmethod
    def from_totals(cls, trades: int, wins: int, won: float, lost: float) -> TrackRecord:
        """From closed-trade totals: `wins` trades with net P&L > 0 summing `won`, the others
        losing `lost` (≥ 0) in all. payoff = average win / average loss (+inf without a loss;
        1 without a win, where any payoff means no edge)."""
        losses = trades - wins
        if trades <= 0:
            return cls(0, 0.0, 1.0)
        if wins <= 0:
            return cls(trades, 0.0, 1.0)
        if losses <= 0 or lost <= 0:
            return cls(trades, 1.0 if losses <= 0 else wins / trades, math.inf)
        return cls(trades, wins / trades, (won / wins) / (lost / losses))


@dataclass(frozen=True, slots=True)
class RiskContext:
    """Everything `evaluate` needs besides the proposal. Prices in USDT, times UTC ms."""

    equity: float
    now_ms: int
    brackets: Sequence[Bracket]
    available_balance: float | None = None
    filters: SymbolFilters | None = None
    atr: float | None = None
    atr_pct_percentile: float | None = None
    regime: Regime = Regime.UNKNOWN
    funding_rate: float | None = None
    exposure: ExposureState = field(default_factory=ExposureState)
    breakers: brk.BreakerBook = field(default_factory=brk.BreakerBook)
    record: TrackRecord | None = None
    policy: RiskPolicy = field(default_factory=RiskPolicy)


@dataclass(frozen=True, slots=True)
class RiskVerdict:
    status: str  # approved | resized | rejected
    reasons: tuple[str, ...]
    symbol: str
    side: Side | None = None
    quantity: float = 0.0
    notional: float = 0.0
    leverage: float | None = None
    entry_price: float | None = None
    stop_price: float | None = None
    take_profit: float | None = None
    take_profits: tuple[float, ...] = ()
    liquidation_price: float | None = None
    risk_usd: float = 0.0
    margin: float = 0.0
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def accepted(self) -> bool:
        return self.status in (APPROVED, RESIZED)


def _reject(p: Proposal, *reasons: str, **details: Any) -> RiskVerdict:
    side = p.action.side if isinstance(p.action, Action) else None
    return RiskVerdict(REJECTED, tuple(reasons), p.symbol, side, details=dict(details))


def _num_ok(x: Any) -> bool:
    return isinstance(x, int | float) and not isinstance(x, bool) and math.isfinite(x)


def evaluate(proposal: Proposal, ctx: RiskContext) -> RiskVerdict:
    """The verdict for one proposal (see the module docstring). Never raises."""
    try:
        return _evaluate(proposal, ctx)
    except Exception as exc:  # a bug or absurd input must reject the trade, not stop the engine
        return _reject(proposal, "internal_error", error=f"{type(exc).__name__}: {exc}")


def _evaluate(p: Proposal, ctx: RiskContext) -> RiskVerdict:
    pol = ctx.policy
    side = p.action.side if isinstance(p.action, Action) else None
    if side is None:
        return _reject(p, "not_an_entry", action=str(p.action))
    # 1. input validity
    bad: list[str] = []
    if not (_num_ok(ctx.equity) and ctx.equity > 0):
        bad.append("equity_not_positive")
    entry = p.reference_price
    if not (_num_ok(entry) and entry > 0):
        bad.append("invalid_price")
    if p.leverage is not None and not (_num_ok(p.leverage) and p.leverage > 0):
        bad.append("invalid_leverage")
    elif p.leverage is not None and p.leverage > pol.max_leverage:
        bad.append("leverage_above_max")
    if ctx.atr is not None and not (_num_ok(ctx.atr) and ctx.atr > 0):
        bad.append("invalid_atr")
    if not (_num_ok(p.confidence) and 0 <= p.confidence <= 1):
        bad.append("invalid_confidence")
    if p.stop_loss is not None and not (_num_ok(p.stop_loss) and p.stop_loss > 0):
        bad.append("invalid_stop")
    if any(not (_num_ok(tp) and tp > 0) for tp in p.take_profits):
        bad.append("invalid_take_profit")
    if not ctx.brackets:
        bad.append("no_brackets")
    if bad:
        return _reject(p, *bad)
    s = side.sign
    if p.stop_loss is not None and s * (entry - p.stop_loss) <= 0:
        return _reject(p, "stop_wrong_side", stop=p.stop_loss, entry=entry)
    if any(s * (tp - entry) <= 0 for tp in p.take_profits):
        return _reject(p, "take_profit_wrong_side", take_profits=list(p.take_profits), entry=entry)

    # 2. breakers, 3. exposure
    blocking = list(brk.entry_block_reasons(ctx.breakers, p.symbol, ctx.now_ms))
    exp_reasons, notional_room = exposure_check(p.symbol, side, ctx.equity, ctx.now_ms, ctx.exposure, pol.exposure)
    blocking.extend(exp_reasons)
    if blocking:
        return _reject(p, *blocking)

    notes: list[str] = []
    resized: list[str] = []
    tick = ctx.filters.tick_size if ctx.filters else 0.0
    # 4. stop distance
    if p.stop_loss is None:
        if ctx.atr is None:
            return _reject(p, "missing_stop")
        stop = entry - s * pol.default_stop_atr_multiple * ctx.atr
        notes.append("stop_from_atr")
    else:
        stop = p.stop_loss
    stop_pct = abs(entry - stop) / entry * 100.0
    if stop_pct > pol.max_stop_loss_pct:
        return _reject(p, "stop_too_wide", stop_pct=round(stop_pct, 4), max_pct=pol.max_stop_loss_pct)
    if stop_pct < pol.min_stop_loss_pct:
        stop = entry * (1 - s * pol.min_stop_loss_pct / 100.0)
        resized.append("stop_widened_to_min")
    stop = round_stop(stop, side, tick)
    if s * (entry - stop) <= 0:
        return _reject(p, "stop_wrong_side", stop=stop, entry=entry)
    stop_dist = abs(entry - stop)

    # 5. take-profit and expectancy gate
    if p.take_profits:
        targets = sorted(p.take_profits, key=lambda tp: s * (tp - entry))
    else:
        targets = [entry + s * max(pol.min_reward_risk, 2.0) * stop_dist]
        notes.append("take_profit_default")
    targets = [round_target(t, side, tick) for t in targets]
    final_tp = targets[-1]
    tp_dist = s * (final_tp - entry)
    if tp_dist <= 0:
        return _reject(p, "take_profit_wrong_side")
    reward_risk = tp_dist / stop_dist
    fees = 2.0 * pol.taker_fee_rate * entry
    rate = ctx.funding_rate if ctx.funding_rate is not None and _num_ok(ctx.funding_rate) else 0.0
    funding = max(0.0, s * rate) * entry * (pol.expected_hold_hours / pol.funding_interval_hours)
    costs = fees + funding
    gate: list[str] = []
    if reward_risk < pol.min_reward_risk:
        gate.append("reward_risk_below_min")
    if tp_dist < pol.fee_cover_multiple * costs:
        gate.append("target_does_not_cover_costs")
    details: dict[str, Any] = {"reward_risk": round(reward_risk, 4), "stop_pct": round(stop_dist / entry * 100, 4),
                               "cost_per_unit": costs, "tp_distance": tp_dist}
    if gate:
        return _reject(p, *gate, **details)

    # 6. size
    v_scale = volatility_scale(ctx.atr_pct_percentile)
    c_scale = confidence_scale(p.confidence, pol.min_confidence, pol.confidence_size_cap)
    base_risk = ctx.equity * pol.risk_per_trade_pct / 100.0
    risk_budget = base_risk * v_scale * c_scale
    details.update(vol_scale=round(v_scale, 4), confidence_scale=round(c_scale, 4))
    if ctx.record is not None and pol.kelly_fraction > 0 and ctx.record.trades >= pol.kelly_min_trades:
        k = kelly_risk_fraction(ctx.record.win_rate, ctx.record.payoff, pol.kelly_fraction)
        if k is not None:
            if k <= 0:
                return _reject(p, "no_edge_in_record", kelly=round(k, 6), **details)
            if ctx.equity * k < risk_budget:
                risk_budget = ctx.equity * k
                notes.append("kelly_capped")
    qty = risk_budget / stop_dist
    wanted_notional = qty * entry
    notional = wanted_notional

    # 7. notional caps
    cap_trade = ctx.equity * pol.max_notional_pct / 100.0
    if notional > cap_trade:
        notional = cap_trade
        resized.append("notional_cap")
    if notional > notional_room:
        notional = notional_room
        resized.append("total_notional_cap")
    if notional <= 0:
        return _reject(p, "no_notional_room", **details)

    # 8. leverage
    exchange_max = ctx.filters.max_leverage if ctx.filters else pol.max_leverage
    lev_cap = min(leverage_cap(pol.max_leverage, ctx.regime, p.confidence), exchange_max)
    if p.leverage is not None:
        lev_cap = min(lev_cap, max(1, int(p.leverage)))  # Binance leverage is a whole number ≥ 1
    free_slots = max(1, max_positions(ctx.equity, pol.exposure) - len(ctx.exposure.open_positions))
    margin_budget = ctx.equity / max(1, max_positions(ctx.equity, pol.exposure))
    if ctx.available_balance is not None and _num_ok(ctx.available_balance):
        margin_budget = min(margin_budget, max(0.0, ctx.available_balance) / free_slots)
    if margin_budget <= 0:
        return _reject(p, "no_margin_available", **details)
    choice = choose_leverage(side, entry, stop, notional, lev_cap, margin_budget, ctx.brackets,
                             pol.liquidation_buffer_multiple)
    if choice is None:
        return _reject(p, "liquidation_too_close", leverage_cap=lev_cap, **details)
    if choice.margin_limited:
        resized.append("margin_budget")
    notional = choice.notional
    details.update(leverage_cap=lev_cap, margin_budget=round(margin_budget, 6))

    # 9. exchange rounding (down only)
    qty = notional / entry
    if ctx.filters is not None:
        qty = floor_to_step(qty, ctx.filters.step_size)
        if qty < ctx.filters.min_qty or qty * entry < ctx.filters.min_notional:
            return _reject(p, "below_min_notional", quantity=qty, min_notional=ctx.filters.min_notional, **details)
    if qty <= 0:
        return _reject(p, "below_min_notional", **details)
    notional = qty * entry
    # 10. expected profit at the take-profit, net of the estimated costs
    expected_profit = qty * (tp_dist - costs)
    if pol.min_expected_profit_usd > 0 and expected_profit < pol.min_expected_profit_usd:
        return _reject(p, "expected_profit_below_min", expected_profit_usd=round(expected_profit, 6),
                       min_expected_profit_usd=pol.min_expected_profit_usd, quantity=qty, **details)
    risk_usd = qty * stop_dist
    liq = choice.liquidation_price
    if notional != choice.notional:
        liq, _ = isolated_liquidation(side, notional, entry, choice.leverage, ctx.brackets)
    details.update(wanted_notional=round(wanted_notional, 6), risk_budget=round(risk_budget, 6))
    status = RESIZED if resized else APPROVED
    return RiskVerdict(
        status=status, reasons=tuple(resized + notes), symbol=p.symbol, side=side, quantity=qty,
        notional=notional, leverage=float(choice.leverage), entry_price=entry, stop_price=stop,
        take_profit=final_tp, take_profits=tuple(targets), liquidation_price=liq if liq > 0 else None,
        risk_usd=risk_usd, margin=notional / choice.leverage, details=details,
    )


def position_from_verdict(
    verdict: RiskVerdict,
    *,
    fill_price: float,
    quantity: float,
    opened_ms: int,
    position_id: str,
    atr: float | None = None,
    decision_id: str | None = None,
    brackets: Sequence[Bracket] | None = None,
) -> PositionState:
    """The risk state of a freshly filled entry. The stop keeps the verdict's DISTANCE from the
    entry, re-anchored at the actual fill (a stop is measured from the entry, never from the
    reference price or a peak); the take-profit stays where the verdict put it. The liquidation
    price is recomputed for the fill (isolated margin = notional / leverage) when brackets are
    given. Raises ValueError for a rejected verdict or an unusable fill."""
    if not verdict.accepted or verdict.side is None or verdict.stop_price is None or verdict.entry_price is None:
        raise ValueError(f"verdict for {verdict.symbol} is {verdict.status}; nothing to open")
    if not (_num_ok(fill_price) and fill_price > 0 and _num_ok(quantity) and quantity > 0):
        raise ValueError(f"unusable fill for {verdict.symbol}: price={fill_price} quantity={quantity}")
    s = verdict.side.sign
    stop = fill_price - s * abs(verdict.entry_price - verdict.stop_price)
    leverage = verdict.leverage or 1.0
    liq = verdict.liquidation_price
    if brackets:
        lp = liquidation_price_for(verdict.side, quantity, fill_price, quantity * fill_price / leverage, brackets)
        liq = lp if lp > 0 else None
    return PositionState(
        symbol=verdict.symbol, side=verdict.side, entry_price=fill_price, quantity=quantity,
        initial_quantity=quantity, initial_stop=stop, stop_price=stop, take_profit=verdict.take_profit,
        leverage=leverage, opened_ms=opened_ms, peak_price=fill_price, liquidation_price=liq,
        atr=atr, position_id=position_id, decision_id=decision_id,
    )
