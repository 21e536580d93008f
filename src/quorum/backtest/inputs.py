"""Per-symbol inputs of the fast backtester, computed once per series.

Indicators come from the scanner's `SnapshotBuilder` (the decision timeframe and the context
timeframes resampled exactly from the execution series), the rules analyst's signals from one
`rules_signals` call over the whole decision series, and every decision time's facts (price,
ATR, regime, funding rate) by index lookups — exactly what `builder.snapshot(T)` would show.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from quorum.backtest.warmup_mask import defined_mask, warmup_info
from quorum.domain.clusters import HOUR_MS, ClusterSchedule
from quorum.domain.models import Regime, SymbolFilters
from quorum.domain.rules import rules_signals
from quorum.execution.paper import default_filters
from quorum.market.data_files import CandleSeries, FundingSeries
from quorum.market.regime import regime_of
from quorum.market.snapshot import SnapshotBuilder


@dataclass
class SymbolInput:
    symbol: str
    open_ms: np.ndarray
    open: np.ndarray
    high: np.ndarray
    low: np.ndarray
    close: np.ndarray
    first: int  # first execution bar index in the range
    last: int  # last execution bar index in the range (inclusive)
    filters: SymbolFilters
    funding: FundingSeries | None
    # decision rows (one per decision time T in the range; T = a decision-bar close)
    dec_time: np.ndarray  # int64 T
    dec_bar: np.ndarray  # execution bar index k closing at T
    dec_code: np.ndarray  # int8 1 / -1 / 0
    dec_conf: np.ndarray
    dec_stop: np.ndarray
    dec_tp: np.ndarray
    dec_atr: np.ndarray
    dec_atr_pctile: np.ndarray
    dec_regime: np.ndarray  # regime codes
    builder: SnapshotBuilder | None = None
    warmup: dict[str, Any] | None = None  # `backtest.warmup.warmup_info`: ready_ms, slowest indicator

    def price_at(self, k: int) -> float:
        """The venue price at the close of bar k: bar k+1's open (its close at the end of data)."""
        return float(self.open[k + 1]) if k + 1 <= self.last else float(self.close[k])

    def regime(self, i: int) -> Regime:
        return regime_of(int(self.dec_regime[i]))

    def funding_rate_at(self, t: int) -> float | None:
        """`FundingSeries.last_rate(t)`: the rate of the last event settled at or before t."""
        if self.funding is None:
            return None
        i = int(self.funding.time_ms.searchsorted(t, side="right")) - 1
        return None if i < 0 else float(self.funding.rate[i])


def _nan_none(x: float) -> float | None:
    return float(x) if math.isfinite(x) else None


def prepare_symbol(series: CandleSeries, first: int, start_ms: int, end_ms: int, decision_tf: str,
                   funding: FundingSeries | None, context_timeframes: Sequence[str] = ("1h", "4h"),
                   filters: SymbolFilters | None = None, keep_builder: bool = False) -> SymbolInput:
    """Build one symbol's inputs. `series` holds the bars before `end_ms` (warm-up included);
    decisions are taken at decision-bar closes T with start_ms + tf <= T and a next bar in range."""
    tf = series.tf_ms
    tfs = [decision_tf] + [t for t in context_timeframes if t != decision_tf]
    builder = SnapshotBuilder(series.symbol, None, tfs, base=series, funding=funding)
    dframe = builder.frame(decision_tf)
    dser = dframe.series
    codes, conf, stop, tp = rules_signals(dframe.close, dframe.ema20, dframe.ema50, dframe.rsi, dframe.macd_hist,
                                          dframe.adx, dframe.atr)
    last = len(series) - 1
    # decision times: closes of decision bars in (start, last open]
    closes = dser.open_ms + dser.tf_ms
    ready = defined_mask(builder, closes)  # no decision before every timeframe's indicators are defined
    sel = (closes >= start_ms + tf) & (closes <= int(series.open_ms[last])) & (closes < end_ms) & ready
    j = np.flatnonzero(sel)
    times = closes[j].astype(np.int64)
    # the snapshot reads column closed_count(T) - 1 of each frame
    jj = np.searchsorted(dser.open_ms, times - dser.tf_ms, side="right") - 1
    kbar = np.searchsorted(series.open_ms, times - tf, side="right") - 1
    rframe = builder.frame(builder.regime_timeframe)
    rj = np.searchsorted(rframe.series.open_ms, times - rframe.series.tf_ms, side="right") - 1
    regime = np.where(rj >= 0, rframe.regime[np.clip(rj, 0, None)], 0) if len(rframe) else np.zeros(len(times))
    if filters is None:
        filters = default_filters(series.symbol, float(series.close[max(first - 1, 0)]))
    return SymbolInput(
        symbol=series.symbol, open_ms=series.open_ms, open=series.open, high=series.high, low=series.low,
        close=series.close, first=first, last=last, filters=filters, funding=funding,
        dec_time=times, dec_bar=kbar.astype(np.int64), dec_code=codes[jj], dec_conf=conf[jj], dec_stop=stop[jj],
        dec_tp=tp[jj], dec_atr=dframe.atr[jj], dec_atr_pctile=dframe.atr_pct_percentile[jj],
        dec_regime=regime.astype(np.int64), builder=builder if keep_builder else None,
        warmup=warmup_info(builder, closes, ready),
    )


def cluster_schedule(inputs: Sequence[SymbolInput], threshold: float, exec_tf_ms: int) -> ClusterSchedule:
    """The correlation clusters of every UTC day of the run (`quorum.domain.clusters`), from the
    execution series' closes at whole hours (warm-up included, so the first day has its 30 days);
    a day's clusters only read closes up to its first instant."""
    return ClusterSchedule({s.symbol: (s.open_ms + exec_tf_ms, s.close) for s in inputs}, threshold,
                           step_ms=max(HOUR_MS, exec_tf_ms))


def funding_source(inputs: dict[str, SymbolInput]):  # type: ignore[no-untyped-def]
    """`funding_source(symbol, t)` for the venue: the recorded rate of the event at or before t."""

    def source(symbol: str, t: int) -> float | None:
        si = inputs.get(symbol)
        return None if si is None else si.funding_rate_at(t)

    return source


__all__ = ["SymbolInput", "_nan_none", "cluster_schedule", "funding_source", "prepare_symbol"]
