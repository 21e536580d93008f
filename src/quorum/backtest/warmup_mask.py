"""Which decision times have every timeframe's indicators defined (`quorum.backtest.warmup`)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from quorum.market.indicators import VIEW_FIELDS

if TYPE_CHECKING:
    from quorum.market.snapshot import SnapshotBuilder

__all__ = ["defined_mask", "warmup_info"]


def defined_mask(builder: SnapshotBuilder, times: np.ndarray) -> np.ndarray:
    """For each time T: every timeframe has a bar closed at T whose indicators are all finite."""
    ok = np.ones(len(times), dtype=bool)
    for tf in builder.timeframes:
        frame = builder.frame(tf)
        s = frame.series
        if len(s) == 0:
            return np.zeros(len(times), dtype=bool)
        good = np.isfinite(frame.matrix).all(axis=0)
        idx = np.searchsorted(s.open_ms, times - s.tf_ms, side="right") - 1
        ok &= (idx >= 0) & good[np.clip(idx, 0, None)]
    return ok


def warmup_info(builder: SnapshotBuilder, times: np.ndarray, ok: np.ndarray) -> dict[str, Any]:
    """{ready_ms (first T of `times` where `ok`; None: never), timeframe, indicator, bars,
    available}: the indicator that takes longest to become defined, the bars of its timeframe it
    needs (None: more than the `available` bars the series holds)."""
    worst: tuple[int, str, str, int, int] | None = None
    for tf in builder.timeframes:
        frame = builder.frame(tf)
        s = frame.series
        finite = np.isfinite(frame.matrix)
        for row, name in enumerate(VIEW_FIELDS):
            hit = np.flatnonzero(finite[row])
            if not hit.size:
                at, bars = np.iinfo(np.int64).max, -1  # never defined in these files
            else:
                at, bars = int(s.open_ms[hit[0]]) + s.tf_ms, int(hit[0]) + 1
            if worst is None or at > worst[0]:
                worst = (at, tf, name, bars, len(s))
    first = np.flatnonzero(ok)
    info: dict[str, Any] = {"ready_ms": int(times[first[0]]) if first.size else None}
    if worst is not None:
        info.update(timeframe=worst[1], indicator=worst[2], bars=None if worst[3] < 0 else worst[3],
                    available=worst[4])
    return info
