"""What a backtest is asked to do, validated before any work: symbols, files, range, timeframes.

`validate_request` raises `BacktestInputError` with one clear line per problem (missing files
for a requested symbol, start after end, decision timeframe not a multiple of the data
timeframe, an empty range, `--analyst models` without `--allow-model-calls`, ...).
`load_market` then reads and slices the files (errors name the file and row).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from quorum.config import KNOWN_TIMEFRAMES, timeframe_seconds
from quorum.market.data_files import (
    CandleSeries,
    DataFileError,
    FundingSeries,
    discover,
    load_candles,
    load_funding,
)
from quorum.market.quality import DataFlag, DataQualityError, QualityRule, closed_by, detect, enforce

ANALYSTS = ("rules", "replay", "models")
CUSTOM = "custom"  # only the user's own analysts vote (`--analyst PATH.py:ClassName`)


class BacktestInputError(ValueError):
    """The backtest request is unusable; the message says what and where."""


@dataclass(frozen=True)
class BacktestRequest:
    data_dir: Path
    symbols: tuple[str, ...]
    start_ms: int | None
    end_ms: int | None
    timeframe: str = "5m"
    decision_timeframe: str = "15m"
    analyst: str = "rules"
    allow_model_calls: bool = False
    allow_contaminated: bool = False  # models over a period their training data covers (labelled)
    user_analysts: tuple[str, ...] = ()  # PATH.py:ClassName voters, next to `analyst` (rules | models | custom)
    out_dir: Path | None = None
    initial_equity: float | None = None
    breaker_reset_after_ms: int | None = None  # simulated operator resets (None: none, as unattended)


@dataclass
class MarketInput:
    """Loaded, sliced series: the execution series per symbol (bars in [start, end)) with the
    warm-up history before `start_ms` kept so indicators are ready at the first decision."""

    request: BacktestRequest
    candles: dict[str, CandleSeries]
    funding: dict[str, FundingSeries | None]
    start_ms: int
    end_ms: int
    first_index: dict[str, int] = field(default_factory=dict)  # first bar with open_ms >= start
    data_flags: list[DataFlag] = field(default_factory=list)  # gaps/outliers in the bars used (kept as they are)


def parse_time(value: str | None, name: str) -> int | None:
    """'2025-10-10', '2025-10-10T21:15', '2025-10-10 21:15:00' (UTC) or epoch ms → epoch ms."""
    if value is None or value == "":
        return None
    v = value.strip()
    if v.isdigit():
        return int(v)
    try:
        dt = datetime.fromisoformat(v.replace("Z", "+00:00"))
    except ValueError:
        raise BacktestInputError(f"--{name} {value!r}: not a date (use YYYY-MM-DD[THH:MM] UTC or epoch ms)") from None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return int(dt.timestamp() * 1000)


_DURATION_UNITS = {"m": 60_000, "h": 3_600_000, "d": 86_400_000, "w": 7 * 86_400_000}


def parse_duration(value: str | None, name: str) -> int | None:
    """'90m', '12h', '7d', '2w' → milliseconds (None for None/empty); anything else, or zero, is a
    `BacktestInputError` naming the option."""
    if value is None or value.strip() == "":
        return None
    v = value.strip().lower()
    if len(v) < 2 or v[-1] not in _DURATION_UNITS or not v[:-1].isdigit() or int(v[:-1]) <= 0:
        raise BacktestInputError(f"--{name} {value!r}: not a duration (a positive whole number and a unit "
                                 "m, h, d or w, e.g. 12h or 7d)")
    return int(v[:-1]) * _DURATION_UNITS[v[-1]]


def format_duration(ms: int) -> str:
    """`parse_duration`'s text for whole units: the largest of d, h, m that divides it (7d, not 1w)."""
    for unit in ("d", "h", "m"):
        if ms % _DURATION_UNITS[unit] == 0:
            return f"{ms // _DURATION_UNITS[unit]}{unit}"
    return f"{ms / 60_000:g}m"


def validate_request(req: BacktestRequest) -> None:
    """Every check that needs no file contents. Raises `BacktestInputError`."""
    problems: list[str] = []
    for name, tf in (("timeframe", req.timeframe), ("decision-timeframe", req.decision_timeframe)):
        if tf not in KNOWN_TIMEFRAMES:
            problems.append(f"--{name} {tf!r}: unknown timeframe (allowed: {', '.join(KNOWN_TIMEFRAMES)})")
    if not problems and timeframe_seconds(req.decision_timeframe) % timeframe_seconds(req.timeframe):
        problems.append(
            f"--decision-timeframe {req.decision_timeframe} is not a multiple of the data timeframe {req.timeframe}"
        )
    if req.analyst not in ANALYSTS and not (req.analyst == CUSTOM and req.user_analysts):
        problems.append(f"--analyst {req.analyst!r}: must be one of {', '.join(ANALYSTS)} or PATH.py:ClassName "
                        "(your own analyst)")
    if req.user_analysts and req.analyst == "replay":
        problems.append("--analyst replay replays recorded votes only: it cannot be combined with PATH.py:ClassName")
    if req.analyst == "models" and not req.allow_model_calls:
        problems.append(
            "--analyst models calls real language models: they know what happened after their training "
            "data (lookahead) and every call costs money; add --allow-model-calls to confirm"
        )
    if not req.symbols:
        problems.append("--symbols: no symbols given")
    if req.start_ms is not None and req.end_ms is not None and req.start_ms >= req.end_ms:
        problems.append(f"--start {_iso(req.start_ms)} is not before --end {_iso(req.end_ms)}")
    if not req.data_dir.is_dir():
        problems.append(f"--data {req.data_dir}: not a directory")
    else:
        sets = discover(req.data_dir)
        for sym in req.symbols:
            ds = sets.get(sym)
            if ds is None or req.timeframe not in ds.candles:
                have = ", ".join(sorted(ds.candles)) if ds else "none"
                problems.append(
                    f"{sym}: no {req.timeframe} candle file in {req.data_dir} "
                    f"(expected {sym}-futures-{req.timeframe}.csv.gz; timeframes present: {have})"
                )
    if problems:
        raise BacktestInputError("; ".join(problems))


def _iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, tz=UTC).strftime("%Y-%m-%d %H:%M")


def load_market(req: BacktestRequest, quality: QualityRule | None = None) -> MarketInput:
    """Validate, load every requested file and resolve the range. Raises `BacktestInputError`
    (a bad file becomes an error naming the file and line) — all before any simulation.
    Gaps and outliers in the bars used are `data_flags` (`quality`: the rule; with
    DATA_QUALITY=refuse the first one is a `BacktestInputError`)."""
    validate_request(req)
    sets = discover(req.data_dir)
    candles: dict[str, CandleSeries] = {}
    funding: dict[str, FundingSeries | None] = {}
    try:
        for sym in req.symbols:
            candles[sym] = load_candles(sets[sym].candles[req.timeframe], sym, req.timeframe)
            fpath = sets[sym].funding
            funding[sym] = load_funding(fpath, sym) if fpath else None
    except DataFileError as exc:
        raise BacktestInputError(str(exc)) from None
    for sym, s in candles.items():
        if len(s) == 0:
            raise BacktestInputError(f"{sym}: {s.source} holds no bars")
    common_start = max(int(s.open_ms[0]) for s in candles.values())
    common_end = min(int(s.open_ms[-1]) + s.tf_ms for s in candles.values())
    start = req.start_ms if req.start_ms is not None else common_start
    end = req.end_ms if req.end_ms is not None else common_end
    end = min(end, common_end)
    start = max(start, common_start) if req.start_ms is None else start
    if start >= end:
        raise BacktestInputError(
            f"empty range: {_iso(start)} → {_iso(end)} holds no bars common to {', '.join(req.symbols)} "
            f"(data covers {_iso(common_start)} → {_iso(common_end)})"
        )
    rule = quality or QualityRule()
    flags = [f for s in candles.values() for f in closed_by(detect(s, rule), end)]
    try:
        enforce(flags, rule)
    except DataQualityError as exc:
        raise BacktestInputError(str(exc)) from None
    first: dict[str, int] = {}
    for sym, s in candles.items():
        a = int(np.searchsorted(s.open_ms, start, side="left"))
        b = int(np.searchsorted(s.open_ms, end, side="left"))
        if b <= a:
            raise BacktestInputError(f"empty range: {sym} has no {req.timeframe} bars in {_iso(start)} → {_iso(end)}")
        candles[sym] = s.slice(0, b)
        first[sym] = a
    return MarketInput(req, candles, funding, start, end, first, data_flags=flags)
