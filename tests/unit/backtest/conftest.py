"""Shared helpers for backtest tests: small slices of the real shared data."""

from __future__ import annotations

from pathlib import Path

from quorum.backtest.request import BacktestRequest, MarketInput, load_market, parse_time
from quorum.config import Settings, load_settings


def market(data: Path, symbols: tuple[str, ...], start: str, end: str, **kw: object) -> MarketInput:
    return load_market(BacktestRequest(data, symbols, parse_time(start, "start"), parse_time(end, "end"), **kw))  # type: ignore[arg-type]


def settings(**overrides: object) -> Settings:
    return load_settings(**overrides)
