"""Reading a rendered report.html back: its plotly figures (data and layout, typed arrays decoded)
and small builders of trades, equity and prices for report tests."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime
from typing import Any

import numpy as np

from quorum.domain.models import ClosedTrade, Side

BAR = 300_000  # 5m


def ms(text: str) -> int:
    return int(datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp() * 1000)


def figures(page: str) -> list[tuple[list[dict[str, Any]], dict[str, Any]]]:
    """(traces, layout) of every `Plotly.newPlot(id, data, layout, config)` in the page, in order."""
    dec = json.JSONDecoder()

    def after(i: int) -> int:  # past whitespace and one comma
        while page[i] in " \n\t,":
            i += 1
        return i

    out = []
    at = page.find("Plotly.newPlot(")
    while at >= 0:
        _, i = dec.raw_decode(page, after(at + len("Plotly.newPlot(")))  # the div id
        data, i = dec.raw_decode(page, after(i))
        layout, _ = dec.raw_decode(page, after(i))
        out.append((data, layout))
        at = page.find("Plotly.newPlot(", at + 1)
    return out


def values(v: Any) -> list[Any]:
    """A trace array as a list: plain JSON, or plotly's base64 typed array {"dtype", "bdata"}."""
    if isinstance(v, dict) and "bdata" in v:
        return np.frombuffer(base64.b64decode(v["bdata"]), dtype=np.dtype(v["dtype"])).tolist()
    return list(v)


def trade(symbol: str, entry_ms: int, exit_ms: int, net: float, *, side: Side = Side.LONG,
          price: float = 100.0, reason: str = "take_profit") -> ClosedTrade:
    return ClosedTrade(symbol=symbol, side=side, entry_ms=entry_ms, exit_ms=exit_ms, entry_price=price,
                       exit_price=price * (1.01 if net > 0 else 0.99), quantity=1.0, leverage=3.0, fees=0.1,
                       funding=0.01, gross_pnl=net + 0.11, net_pnl=net, exit_reason=reason, risk_usd=5.0,
                       voters=("rules",))


def flat_equity(start_ms: int, end_ms: int, step: int = BAR, value: float = 1000.0) -> list[tuple[int, float]]:
    """Equity at every bar close in (start, end], rising 1 USDT a day (so each month gains)."""
    return [(t, value + (t - start_ms) / 86_400_000) for t in range(start_ms + step, end_ms + 1, step)]
