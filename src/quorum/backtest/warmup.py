"""Warm-up: no decision before every timeframe's indicators are defined.

A decision time T is usable when, for every timeframe of the snapshot, the last bar closed at T
exists and none of its indicators (`VIEW_FIELDS`) is NaN — exactly when the snapshot at T would
carry no `no_data:` or `short_history:` flag (the engine's cycle skips those snapshots too, so
the fast backtest and the engine decide at the same times).

`defined_mask` tests many decision times at once; `warmup_info` says what the warm-up needed
(the slowest indicator and its bars) and when the symbol became ready (both in
`backtest.warmup_mask`, which `backtest.inputs` uses); `start_after_warmup`
moves the backtest's start to the first time every symbol is ready and drops earlier rows.
"""

from __future__ import annotations

from dataclasses import fields, replace
from typing import TYPE_CHECKING, Any

import numpy as np

from quorum.backtest.warmup_mask import defined_mask, warmup_info
from quorum.execution.paper import default_filters

if TYPE_CHECKING:
    from quorum.backtest.inputs import SymbolInput


def _trim(si: SymbolInput, start_ms: int, tf_ms: int) -> SymbolInput:
    """The symbol's inputs from `start_ms` on: decision rows with T >= start + tf, first bar at start."""
    keep = si.dec_time >= start_ms + tf_ms
    first = int(np.searchsorted(si.open_ms, start_ms, side="left"))
    if bool(keep.all()) and first <= si.first:
        return si
    n = len(si.dec_time)
    arrays = {f.name: getattr(si, f.name) for f in fields(si) if f.name.startswith("dec_")}
    rows: dict[str, Any] = {k: a[keep] for k, a in arrays.items() if isinstance(a, np.ndarray) and len(a) == n}
    if first > si.first:
        return replace(si, first=first, filters=default_filters(si.symbol, float(si.close[first - 1])), **rows)
    return replace(si, **rows)


def start_after_warmup(inputs: list[SymbolInput], start_ms: int, end_ms: int, tf_ms: int
                       ) -> tuple[list[SymbolInput], int]:
    """(inputs trimmed to the effective start, effective start): the later of `start_ms` and the
    first time every symbol's indicators are defined. Raises `BacktestInputError` when that time
    never comes within the range."""
    from quorum.backtest.request import BacktestInputError, _iso

    for si in inputs:
        w = si.warmup or {}
        if w.get("ready_ms") is None:
            need = f"needs {w['bars']} bars" if w.get("bars") else \
                f"needs more than the {w.get('available')} {w.get('timeframe')} bars the files hold by then"
            raise BacktestInputError(
                f"warm-up: {si.symbol}: not every timeframe's indicators are defined before the end of the "
                f"range {_iso(end_ms)} ({w.get('timeframe')} {w.get('indicator')} {need}); use a later --end "
                "or files with more history before --start")
    ready = max(int((si.warmup or {})["ready_ms"]) for si in inputs)
    effective = max(start_ms, ready)
    if effective + tf_ms >= end_ms:
        w = next(si.warmup or {} for si in inputs if (si.warmup or {}).get("ready_ms") == ready)
        raise BacktestInputError(
            f"warm-up: every timeframe's indicators are defined from {_iso(ready)} only "
            f"({w.get('timeframe')} {w.get('indicator')} needs {w.get('bars')} bars), but the range ends "
            f"{_iso(end_ms)}; use a later --end or files with more history before --start")
    return [_trim(si, effective, tf_ms) for si in inputs], effective


def warmup_summary(inputs: list[SymbolInput], requested_start_ms: int | None, range_start_ms: int,
                   effective_ms: int, iso: Any) -> dict[str, Any]:
    """summary.json's `warmup`: what the indicators needed and what it did to the start."""
    ws = [si.warmup or {} for si in inputs]
    slowest = max(ws, key=lambda w: w.get("ready_ms") or 0) if ws else {}
    return {
        "rule": "no decision before every timeframe's indicators are defined (non-NaN)",
        "timeframe": slowest.get("timeframe"),
        "longest_indicator": slowest.get("indicator"),
        "bars": slowest.get("bars"),
        "ready_at": iso(max(w["ready_ms"] for w in ws)) if ws else None,
        "requested_start": None if requested_start_ms is None else iso(requested_start_ms),
        "history_before_start_used": effective_ms == range_start_ms and requested_start_ms is not None,
        "start_moved_by_ms": effective_ms - range_start_ms,
    }


__all__ = ["defined_mask", "start_after_warmup", "warmup_info", "warmup_summary"]
