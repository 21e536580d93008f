"""Which symbols to scan.

- Replay: the symbols with candle files in the data directory (optionally restricted to
  `SYMBOLS`), minus `BLOCKED_SYMBOLS`.
- Live: the top `UNIVERSE_SIZE` USDT-margined perpetuals by 24 h quote volume, each with at
  least `MIN_QUOTE_VOLUME_USD`, minus the blocklist; `SYMBOLS`, when set, is used as given
  (still minus the blocklist). See `quorum.market.live.LiveMarketData.universe`.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from quorum.market.data_files import discover


@dataclass(frozen=True)
class MarketInfo:
    """What the live universe needs to know about one market (from exchangeInfo + 24 h ticker)."""

    symbol: str  # exchange id, e.g. BTCUSDT
    quote: str
    settle: str
    perpetual: bool
    active: bool
    quote_volume: float


def normalize_symbol(symbol: str) -> str:
    """'BTC/USDT:USDT' / 'btcusdt' → 'BTCUSDT'."""
    return symbol.upper().replace(":USDT", "").replace("/", "")


def select_universe(
    markets: Iterable[MarketInfo],
    size: int,
    min_quote_volume: float,
    blocked: Sequence[str] = (),
    symbols: Sequence[str] = (),
) -> list[str]:
    """Top `size` active USDT perpetuals by quote volume ≥ `min_quote_volume`, minus `blocked`.
    Ties are broken by symbol so the result is deterministic. If `symbols` is non-empty it
    fixes the universe (only existing, active, unblocked ones are kept, in the given order)."""
    block = {normalize_symbol(s) for s in blocked}
    ok = {m.symbol: m for m in markets if m.active and m.perpetual and m.quote == "USDT" and m.settle == "USDT"}
    if symbols:
        return [s for s in (normalize_symbol(x) for x in symbols) if s in ok and s not in block]
    ranked = sorted(
        (m for m in ok.values() if m.symbol not in block and m.quote_volume >= min_quote_volume),
        key=lambda m: (-m.quote_volume, m.symbol),
    )
    return [m.symbol for m in ranked[:size]]


def replay_universe(
    data_dir: Path | str,
    symbols: Sequence[str] = (),
    blocked: Sequence[str] = (),
    timeframe: str | None = None,
) -> list[str]:
    """Symbols with candle files in `data_dir` (having `timeframe` files, if given)."""
    block = {normalize_symbol(s) for s in blocked}
    found = [s for s, ds in discover(data_dir).items() if ds.candles and (timeframe is None or timeframe in ds.candles)]
    if symbols:
        wanted = [normalize_symbol(s) for s in symbols]
        found = [s for s in wanted if s in found]
    return [s for s in found if s not in block]
