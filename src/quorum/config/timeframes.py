"""Candle timeframes: the lengths Binance serves klines in, and their seconds."""

from __future__ import annotations

KNOWN_TIMEFRAMES = ("1m", "3m", "5m", "15m", "30m", "1h", "2h", "4h", "6h", "8h", "12h", "1d")


def timeframe_seconds(tf: str) -> int:
    """Seconds in a timeframe such as '5m', '1h' or '1d'."""
    units = {"m": 60, "h": 3600, "d": 86400}
    if len(tf) < 2 or tf[-1] not in units or not tf[:-1].isdigit():
        raise ValueError(f"unknown timeframe {tf!r}")
    return int(tf[:-1]) * units[tf[-1]]
