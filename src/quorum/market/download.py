"""Download history (symbols × timeframes + funding) through ccxt into a data directory, in the
format `load_candles` / `load_funding` read, resuming where existing files end.

Only CLOSED bars are written. Pages use `limit=499` (klines weight 2: the most bars per unit
of weight). Each batch is validated before it is appended (as a new gzip member, which gzip
readers and pandas concatenate transparently), so an interrupted download leaves valid files
and the next run continues after the last complete row.
"""

from __future__ import annotations

import asyncio
import functools
import gzip
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from itertools import pairwise
from pathlib import Path
from typing import Any

import numpy as np

from quorum.market.binance_rest import Backoff, budgeted_call
from quorum.market.candles import HISTORY_LIMIT
from quorum.market.data_files import (
    CANDLE_COLUMNS,
    FUNDING_COLUMNS,
    CandleSeries,
    DataFileError,
    load_candles,
    load_funding,
    timeframe_ms,
)
from quorum.market.ratelimit import WEIGHTS, WeightBudget, klines_weight

Progress = Callable[[str, int, int], None]  # (task key, rows done, rows expected)


@dataclass
class DownloadReport:
    written: dict[str, int] = field(default_factory=dict)  # file name → rows appended
    files: list[Path] = field(default_factory=list)


def candle_path(data_dir: Path, symbol: str, timeframe: str) -> Path:
    return data_dir / f"{symbol}-futures-{timeframe}.csv.gz"


def funding_path(data_dir: Path, symbol: str) -> Path:
    return data_dir / f"{symbol}-funding.csv.gz"


def _append(path: Path, header: Sequence[str], rows: list[str]) -> None:
    new = not path.exists() or path.stat().st_size == 0
    with gzip.open(path, "at", encoding="ascii", newline="") as f:
        if new:
            f.write(",".join(header) + "\n")
        f.write("".join(r + "\n" for r in rows))


def _num(x: Any) -> str:
    return repr(float(x)).removesuffix(".0") if float(x).is_integer() else repr(float(x))


class Downloader:
    """Fetches through a ccxt binanceusdm (`exchange`) within a `WeightBudget`."""

    def __init__(self, exchange: Any, budget: WeightBudget | None = None, now_ms: Callable[[], int] | None = None,
                 retry: Backoff | None = None):
        import time

        self.exchange = exchange
        self.budget = budget or WeightBudget(0.5)
        self.now_ms = now_ms or (lambda: int(time.time() * 1000))
        self.retry = retry or Backoff(attempts=6)

    async def _call(self, weight: int, fn: Callable[[], Awaitable[Any]]) -> Any:
        """A read within the budget; 429/418 and transient failures are retried (`self.retry`),
        then `MarketDataUnavailable` names host, call and reason."""
        return await budgeted_call(self.exchange, self.budget, weight, fn, self.retry)

    async def candles(self, data_dir: Path, symbol: str, timeframe: str, start_ms: int,
                      end_ms: int | None = None, progress: Progress | None = None) -> int:
        """Append closed `timeframe` bars of `symbol` from `start_ms` (or the file's end) to `end_ms`."""
        path = candle_path(data_dir, symbol, timeframe)
        tf = timeframe_ms(timeframe)
        since = start_ms // tf * tf if start_ms % tf == 0 else (start_ms // tf + 1) * tf
        if path.exists():
            existing = load_candles(path, symbol, timeframe)  # validates; a corrupt file stops here
            if len(existing):
                since = max(since, int(existing.open_ms[-1]) + tf)
        stop = min(end_ms if end_ms is not None else 2**62, self.now_ms() // tf * tf)  # first open NOT wanted
        expected = max(0, (stop - since) // tf)
        unified = self.exchange.market(symbol)["symbol"]
        done = 0
        while since < stop:
            limit = int(min(HISTORY_LIMIT, (stop - since) // tf))
            rows = await self._call(klines_weight(limit), functools.partial(
                self.exchange.fetch_ohlcv, unified, timeframe, since=since, limit=limit))
            rows = [r for r in rows if since <= int(r[0]) < stop]
            if not rows:
                break
            arr = np.array([r[1:6] for r in rows], dtype=np.float64)
            batch = CandleSeries.from_arrays(symbol, timeframe, [r[0] for r in rows], arr[:, 0], arr[:, 1],
                                             arr[:, 2], arr[:, 3], arr[:, 4], source=f"{path} (download)")
            _append(path, CANDLE_COLUMNS, [
                f"{int(t)},{_num(o)},{_num(h)},{_num(lo)},{_num(c)},{_num(v)}"
                for t, o, h, lo, c, v in zip(batch.open_ms, batch.open, batch.high, batch.low, batch.close,
                                              batch.volume, strict=True)
            ])
            done += len(rows)
            since = int(batch.open_ms[-1]) + tf
            if progress:
                progress(f"{symbol} {timeframe}", done, int(expected))
        return done

    async def funding(self, data_dir: Path, symbol: str, start_ms: int, end_ms: int | None = None,
                      progress: Progress | None = None) -> int:
        """Append funding events of `symbol` from `start_ms` (or the file's end)."""
        path = funding_path(data_dir, symbol)
        since = start_ms
        if path.exists():
            existing = load_funding(path, symbol)
            if len(existing):
                since = max(since, int(existing.time_ms[-1]) + 1)
        stop = min(end_ms if end_ms is not None else 2**62, self.now_ms() + 1)
        unified = self.exchange.market(symbol)["symbol"]
        done = 0
        while since < stop:
            rows = await self._call(WEIGHTS["fundingRate"], functools.partial(
                self.exchange.fetch_funding_rate_history, unified, since=since, limit=1000))
            rows = sorted((r for r in rows if since <= int(r["timestamp"]) < stop), key=lambda r: r["timestamp"])
            if not rows:
                break
            ts = [int(r["timestamp"]) for r in rows]
            if any(b <= a for a, b in pairwise(ts)):
                raise DataFileError(f"{path}: exchange returned duplicate/unsorted funding times")
            _append(path, FUNDING_COLUMNS, [f"{t},{_num(r['fundingRate'])}" for t, r in zip(ts, rows, strict=True)])
            done += len(rows)
            since = ts[-1] + 1
            if progress:
                progress(f"{symbol} funding", done, 0)
        return done


async def download(
    exchange: Any,
    data_dir: Path,
    symbols: Sequence[str],
    timeframes: Sequence[str],
    start_ms: int,
    end_ms: int | None = None,
    *,
    funding: bool = True,
    budget: WeightBudget | None = None,
    progress: Progress | None = None,
    now_ms: Callable[[], int] | None = None,
    retry: Backoff | None = None,
) -> DownloadReport:
    """Download every symbol × timeframe (+ funding) into `data_dir`; returns rows appended.
    Reads that keep failing raise `MarketDataUnavailable` (files stay valid; a rerun resumes)."""
    await asyncio.to_thread(data_dir.mkdir, parents=True, exist_ok=True)
    d = Downloader(exchange, budget, now_ms, retry)
    # the first call finds out whether the host answers at all: three attempts (0.5 s, then 1 s
    # apart), so an unreachable host is one line within seconds; batches get the full retries
    await budgeted_call(exchange, d.budget, WEIGHTS["exchangeInfo"], exchange.load_markets, d.retry,
                        attempts=min(3, d.retry.attempts))
    unknown = [s for s in symbols if s not in (getattr(exchange, "markets_by_id", None) or {})
               and s not in (getattr(exchange, "markets", None) or {})]
    if unknown:
        from quorum.config import ConfigError
        from quorum.market.binance_rest import rest_host

        raise ConfigError(f"--symbols: not USDⓈ-M perpetuals on {rest_host(exchange)}: {', '.join(unknown)}")
    report = DownloadReport()
    for sym in symbols:
        for tf in timeframes:
            n = await d.candles(data_dir, sym, tf, start_ms, end_ms, progress)
            report.written[candle_path(data_dir, sym, tf).name] = n
            report.files.append(candle_path(data_dir, sym, tf))
        if funding:
            n = await d.funding(data_dir, sym, start_ms, end_ms, progress)
            report.written[funding_path(data_dir, sym).name] = n
            report.files.append(funding_path(data_dir, sym))
    return report
