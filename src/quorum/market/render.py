"""Deterministic, date-free rendering of a `Snapshot` for prompts.

No calendar dates or clock times appear (a model must not be able to recall "what happened
next"); times are relative ("next funding in N minutes"). Series are ordered oldest → newest
and say so in their labels. Numbers are rounded to 6 significant digits. The same snapshot
always renders to the same bytes.
"""

from __future__ import annotations

import json
import math
from typing import Any

from quorum.domain.models import Snapshot, TimeframeView

_SIG = 6


def _r(x: float | None, sig: int = _SIG) -> float | None:
    if x is None or not math.isfinite(x):
        return None
    if x == 0:
        return 0.0
    return round(x, -int(math.floor(math.log10(abs(x)))) + (sig - 1))


def _view_dict(v: TimeframeView) -> dict[str, Any]:
    return {
        "timeframe": v.timeframe,
        "closed_bars_available": v.bars,
        "regime": v.regime.value,
        "close": _r(v.close),
        "change_24h_pct": _r(v.change_pct, 4),
        "rsi14": _r(v.rsi, 4),
        "macd_12_26_9": {"macd": _r(v.macd), "signal": _r(v.macd_signal), "histogram": _r(v.macd_hist)},
        "bollinger_20_2": {
            "upper": _r(v.bb_upper), "middle": _r(v.bb_middle), "lower": _r(v.bb_lower),
            "percent_b": _r(v.bb_pct_b, 4), "width_pct": _r(v.bb_width, 4),
        },
        "atr14": _r(v.atr), "atr14_pct_of_price": _r(v.atr_pct, 4),
        # share of the last 100 bars' ATR % at or below this bar's: 1 = the highest, 0.01 = the lowest
        "atr_pct_share_of_last_100_bars_at_or_below": _r(v.atr_pct_percentile, 3),
        "ema": {"ema20": _r(v.ema20), "ema50": _r(v.ema50), "ema200": _r(v.ema200)},
        "ema_slope_pct_over_5_bars": {
            "ema20": _r(v.ema20_slope, 4), "ema50": _r(v.ema50_slope, 4), "ema200": _r(v.ema200_slope, 4),
        },
        "adx14": _r(v.adx, 4), "plus_di14": _r(v.plus_di, 4), "minus_di14": _r(v.minus_di, 4),
        "obv_slope_per_bar_in_avg_volumes": _r(v.obv_slope, 4),
        "volume_vs_20bar_mean": _r(v.volume_ratio, 4),
        "range_20_bars": {"high": _r(v.range_high), "low": _r(v.range_low)},
        "recent_closes_oldest_to_newest": [_r(c) for c in v.recent_closes],
    }


def to_prompt_dict(snapshot: Snapshot) -> dict[str, Any]:
    """JSON-ready, date-free dict of everything in the snapshot (timeframes lowest first)."""
    s = snapshot
    d: dict[str, Any] = {
        "symbol": s.symbol,
        "last_price": _r(s.price),
        "regime": s.regime.value,
        "funding_rate_pct_per_interval": _r(s.funding_rate * 100, 4) if s.funding_rate is not None else None,
        "next_funding_in_minutes": (
            max(0, (s.next_funding_ms - s.time_ms) // 60_000) if s.next_funding_ms is not None else None
        ),
        "open_interest": _r(s.open_interest),
        "book_imbalance_bid_minus_ask_share": _r(s.book_imbalance, 4),
        "timeframes": [_view_dict(v) for v in s.timeframes],
        "data_quality_flags": list(s.flags),
    }
    if s.breadth is not None:
        d["market_breadth"] = {
            "symbols": s.breadth.symbols,
            "share_above_ema50": _r(s.breadth.share_above_ema50, 4),
            "avg_change_24h_pct": _r(s.breadth.avg_change_24h_pct, 4),
        }
    return d


def render_prompt_json(snapshot: Snapshot) -> str:
    """Compact JSON of `to_prompt_dict` (sorted keys: byte-stable)."""
    return json.dumps(to_prompt_dict(snapshot), sort_keys=True, separators=(",", ":"))


def _fmt(x: Any) -> str:
    if x is None:
        return "n/a"
    if isinstance(x, float):
        return f"{x:.6g}"
    return str(x)


def _share_pct(x: float | None) -> str:
    """A share in [0, 1] as a percent ("97%"); "n/a" when unknown."""
    return "n/a" if x is None else f"{x * 100:.3g}%"


def render_prompt_text(snapshot: Snapshot) -> str:
    """Compact labelled text for a prompt; no dates; series oldest → newest."""
    d = to_prompt_dict(snapshot)
    lines = [
        f"SYMBOL {d['symbol']} | last price {_fmt(d['last_price'])} | regime {d['regime']}",
        f"funding rate {_fmt(d['funding_rate_pct_per_interval'])}% per interval | next funding in "
        f"{_fmt(d['next_funding_in_minutes'])} min | open interest {_fmt(d['open_interest'])} | "
        f"book imbalance (bid-ask share) {_fmt(d['book_imbalance_bid_minus_ask_share'])}",
    ]
    if "market_breadth" in d:
        b = d["market_breadth"]
        lines.append(f"market breadth: {b['symbols']} symbols, {_fmt(b['share_above_ema50'])} share above EMA50, "
                     f"avg 24h change {_fmt(b['avg_change_24h_pct'])}%")
    for v in d["timeframes"]:
        m, bb, e, sl, rg = v["macd_12_26_9"], v["bollinger_20_2"], v["ema"], v["ema_slope_pct_over_5_bars"], \
            v["range_20_bars"]
        lines += [
            f"[{v['timeframe']}] closed bars {v['closed_bars_available']} | regime {v['regime']} | close "
            f"{_fmt(v['close'])} | 24h change {_fmt(v['change_24h_pct'])}%",
            f"  RSI14 {_fmt(v['rsi14'])} | MACD {_fmt(m['macd'])} signal {_fmt(m['signal'])} hist "
            f"{_fmt(m['histogram'])}",
            f"  Bollinger20,2 upper {_fmt(bb['upper'])} mid {_fmt(bb['middle'])} lower {_fmt(bb['lower'])} "
            f"%B {_fmt(bb['percent_b'])} width {_fmt(bb['width_pct'])}%",
            f"  ATR14 {_fmt(v['atr14'])} ({_fmt(v['atr14_pct_of_price'])}% of price; ATR% at or above "
            f"{_share_pct(v['atr_pct_share_of_last_100_bars_at_or_below'])} of the last 100 bars, 100% = the highest)",
            f"  EMA20 {_fmt(e['ema20'])} EMA50 {_fmt(e['ema50'])} EMA200 {_fmt(e['ema200'])} | slopes % over 5 "
            f"bars {_fmt(sl['ema20'])} / {_fmt(sl['ema50'])} / {_fmt(sl['ema200'])}",
            f"  ADX14 {_fmt(v['adx14'])} +DI {_fmt(v['plus_di14'])} -DI {_fmt(v['minus_di14'])} | OBV slope "
            f"{_fmt(v['obv_slope_per_bar_in_avg_volumes'])} avg-volumes/bar | volume vs 20-bar mean "
            f"{_fmt(v['volume_vs_20bar_mean'])}x",
            f"  20-bar range high {_fmt(rg['high'])} low {_fmt(rg['low'])}",
            f"  closes (oldest -> newest): {', '.join(_fmt(c) for c in v['recent_closes_oldest_to_newest'])}",
        ]
    lines.append(f"data quality flags: {', '.join(d['data_quality_flags']) or 'none'}")
    return "\n".join(lines)
