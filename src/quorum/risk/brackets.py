"""Maintenance-margin brackets: a bundled default table and loaders for live data.

The bundled tiers are a snapshot of Binance's published USDⓈ-M tiers (notional floor, cap, max
leverage, maintenance margin rate) for BTCUSDT and ETHUSDT plus a deliberately conservative
generic table for every other symbol. The maintenance amounts are derived with Binance's
formula (`maint_amounts`), so the table cannot contradict itself. In paper/live mode call
`fetch_brackets(exchange, symbols)` (ccxt `fetch_leverage_tiers`) and pass the result on; the
bundled table is the fallback and what tests use.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import structlog

from quorum.domain.liquidation import maint_amounts
from quorum.domain.models import Bracket

log = structlog.get_logger(__name__)

# (notional floor, notional cap, max leverage, maintenance margin rate)
_RAW: dict[str, list[tuple[float, float, int, float]]] = {
    "BTCUSDT": [
        (0, 50_000, 125, 0.004), (50_000, 600_000, 100, 0.005), (600_000, 3_000_000, 75, 0.0065),
        (3_000_000, 12_000_000, 50, 0.01), (12_000_000, 70_000_000, 25, 0.02),
        (70_000_000, 100_000_000, 20, 0.025), (100_000_000, 230_000_000, 10, 0.05),
        (230_000_000, 480_000_000, 5, 0.10), (480_000_000, 600_000_000, 4, 0.125),
        (600_000_000, 800_000_000, 3, 0.15), (800_000_000, 1_200_000_000, 2, 0.25),
        (1_200_000_000, 1_800_000_000, 1, 0.50),
    ],
    "ETHUSDT": [
        (0, 50_000, 125, 0.004), (50_000, 600_000, 100, 0.005), (600_000, 3_000_000, 75, 0.0065),
        (3_000_000, 12_000_000, 50, 0.01), (12_000_000, 50_000_000, 25, 0.02),
        (50_000_000, 65_000_000, 20, 0.025), (65_000_000, 150_000_000, 10, 0.05),
        (150_000_000, 320_000_000, 5, 0.10), (320_000_000, 400_000_000, 4, 0.125),
        (400_000_000, 530_000_000, 3, 0.15), (530_000_000, 800_000_000, 2, 0.25),
        (800_000_000, 1_200_000_000, 1, 0.50),
    ],
    # Every other symbol: conservative (higher maintenance rates than the large caps).
    "DEFAULT": [
        (0, 5_000, 50, 0.01), (5_000, 50_000, 25, 0.02), (50_000, 250_000, 20, 0.025),
        (250_000, 1_000_000, 10, 0.05), (1_000_000, 2_000_000, 5, 0.10),
        (2_000_000, 5_000_000, 4, 0.125), (5_000_000, 10_000_000, 3, 0.15),
        (10_000_000, 20_000_000, 2, 0.25), (20_000_000, 50_000_000, 1, 0.50),
    ],
}


def make_brackets(rows: Sequence[tuple[float, float, int, float]],
                  cums: Sequence[float] | None = None) -> tuple[Bracket, ...]:
    """Brackets from (floor, cap, max leverage, MMR) rows; maintenance amounts derived unless given."""
    rows = sorted(rows, key=lambda r: r[0])
    amounts = list(cums) if cums is not None else maint_amounts([r[0] for r in rows], [r[3] for r in rows])
    return tuple(Bracket(float(f), float(c), int(lev), float(mmr), float(cum))
                 for (f, c, lev, mmr), cum in zip(rows, amounts, strict=True))


BUNDLED: dict[str, tuple[Bracket, ...]] = {sym: make_brackets(rows) for sym, rows in _RAW.items()}


def normalize_symbol(symbol: str) -> str:
    """'BTC/USDT:USDT' → 'BTCUSDT'."""
    return symbol.upper().replace(":USDT", "").replace("/", "")


class BracketTable:
    """Brackets per symbol with the bundled generic table as the fallback."""

    def __init__(self, table: Mapping[str, Sequence[Bracket]] | None = None) -> None:
        self._table: dict[str, tuple[Bracket, ...]] = dict(BUNDLED)
        for sym, brackets in (table or {}).items():
            if brackets:
                self._table[normalize_symbol(sym)] = tuple(brackets)

    def for_symbol(self, symbol: str) -> tuple[Bracket, ...]:
        return self._table.get(normalize_symbol(symbol), self._table["DEFAULT"])

    def update(self, table: Mapping[str, Sequence[Bracket]]) -> None:
        for sym, brackets in table.items():
            if brackets:
                self._table[normalize_symbol(sym)] = tuple(brackets)

    def symbols(self) -> list[str]:
        return sorted(self._table)


def _num(value: Any) -> float | None:
    try:
        f = float(value)
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) else None


def brackets_from_ccxt(tiers: Mapping[str, Iterable[Mapping[str, Any]]]) -> dict[str, tuple[Bracket, ...]]:
    """Convert ccxt `fetch_leverage_tiers()` output ({symbol: [{minNotional, maxNotional,
    maxLeverage, maintenanceMarginRate, info: {cum, ...}}, ...]}) — or Binance's raw
    `leverageBracket` items ({notionalFloor, notionalCap, initialLeverage, maintMarginRatio,
    cum}) — into brackets. A symbol with an unusable tier is skipped (and logged), never half
    loaded."""
    out: dict[str, tuple[Bracket, ...]] = {}
    for symbol, items in tiers.items():
        rows: list[tuple[float, float, int, float]] = []
        cums: list[float | None] = []
        ok = True
        for item in items:
            info = item.get("info") if isinstance(item.get("info"), Mapping) else {}
            floor = _num(item.get("minNotional", item.get("notionalFloor")))
            cap = _num(item.get("maxNotional", item.get("notionalCap")))
            lev = _num(item.get("maxLeverage", item.get("initialLeverage")))
            mmr = _num(item.get("maintenanceMarginRate", item.get("maintMarginRatio")))
            cum = _num((info or {}).get("cum", item.get("cum")))
            if floor is None or cap is None or lev is None or mmr is None or cap <= floor or not 0 <= mmr < 1:
                ok = False
                break
            rows.append((floor, cap, int(lev), mmr))
            cums.append(cum)
        if not ok or not rows:
            log.warning("leverage_tiers_skipped", symbol=symbol, reason="unusable tier")
            continue
        given = None if any(c is None for c in cums) else [float(c) for c in cums if c is not None]
        order = sorted(range(len(rows)), key=lambda i: rows[i][0])
        rows = [rows[i] for i in order]
        out[normalize_symbol(symbol)] = make_brackets(rows, None if given is None else [given[i] for i in order])
    return out


async def fetch_brackets(exchange: Any, symbols: Sequence[str] | None = None) -> dict[str, tuple[Bracket, ...]]:
    """Live tiers through a ccxt (async) binanceusdm exchange; {} on failure (the caller keeps
    the bundled table and the failure is logged)."""
    try:
        tiers = await exchange.fetch_leverage_tiers(list(symbols) if symbols else None)
    except Exception as exc:  # network / auth / exchange errors must not stop the engine
        log.warning("leverage_tiers_fetch_failed", error=str(exc))
        return {}
    return brackets_from_ccxt(tiers)
