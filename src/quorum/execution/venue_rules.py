"""Venue rules shared by the paper exchange and the backtester's venue: the default bracket
table, price-magnitude filters for unconfigured symbols, and the isolated liquidation price
(Binance's formula from `quorum.domain.liquidation`)."""

from __future__ import annotations

import math

from quorum.domain.liquidation import bracket_for as _bracket_for
from quorum.domain.liquidation import liquidation_price
from quorum.domain.models import Bracket, Side, SymbolFilters

DEFAULT_BRACKETS: tuple[Bracket, ...] = (
    Bracket(0, 5_000, 50, 0.01, 0.0), Bracket(5_000, 25_000, 25, 0.025, 75.0),
    Bracket(25_000, 100_000, 20, 0.05, 700.0), Bracket(100_000, 250_000, 10, 0.1, 5_700.0),
    Bracket(250_000, 1_000_000, 5, 0.125, 11_950.0), Bracket(1_000_000, 1e12, 1, 0.5, 386_950.0),
)
EPS = 1e-12


def default_filters(symbol: str, price: float) -> SymbolFilters:
    """Binance-like filters derived from the price's magnitude (used for symbols not configured):
    tick = 10^(⌊log10 price⌋ − 5), step = 10^⌊log10(10 / price)⌋ (one step ≈ ≤ 10 USDT), min
    notional 5 USDT."""
    tick = 10.0 ** (math.floor(math.log10(price)) - 5)
    step = 10.0 ** math.floor(math.log10(10.0 / price))
    return SymbolFilters(symbol, tick, step, step, 5.0, DEFAULT_BRACKETS[0].max_leverage)


def bracket_for(notional: float, brackets: tuple[Bracket, ...]) -> Bracket:
    """The maintenance bracket chosen by the position's notional."""
    return _bracket_for(notional, brackets)


def isolated_liquidation_price(side: Side, qty: float, entry: float, margin: float, mmr: float, cum: float) -> float:
    """LP = (WB + cum − s·Q·EP) / (Q·MMR − s·Q) for one isolated one-way position (WB = margin)."""
    return liquidation_price(side, qty, entry, margin, mmr, cum)
