"""The sections at the top of the report, before the headline figures, each rendered only when its
summary key is present: a contamination banner (`contaminated`), the halts (`halts`,
`active_fraction`, `max_drawdown_between_resets_pct`, `simulated_resets`), the period actually
traded (`effective_start`, `warmup`) and the data-quality flags (`data_flags`).
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from quorum.backtest.report_charts import dt

MAX_FLAG_ROWS = 200
MAX_HALT_ROWS = 100
_FLAG_COLUMNS = ("file", "symbol", "timeframe", "kind", "time", "value", "detail")


def _e(v: Any) -> str:
    return html.escape("—" if v is None else str(v))


def to_ms(v: Any) -> int | None:
    """Epoch ms from an ISO time ('…Z' allowed), a datetime or a number of ms; None if neither."""
    if isinstance(v, bool) or v is None:
        return None
    if isinstance(v, int | float):
        return int(v)
    if isinstance(v, datetime):
        return int(v.timestamp() * 1000)
    try:
        d = datetime.fromisoformat(str(v).strip().replace("Z", "+00:00"))
    except ValueError:
        return None
    return int((d if d.tzinfo else d.replace(tzinfo=UTC)).timestamp() * 1000)


def _when(v: Any) -> str:
    ms = to_ms(v)
    return _e(v) if ms is None else f"{dt(ms):%Y-%m-%d %H:%M}"


def contaminated_banner(value: Any) -> str:
    """A red banner naming why this result cannot be trusted (a string or a list of reasons)."""
    if not value:
        return ""
    items = [value] if isinstance(value, str) else list(value)
    body = "".join(f"<li>{_e(x)}</li>" for x in items)
    return ("<div class=\"banner\" id=\"contaminated\"><strong>⚠ Contaminated result — do not judge the "
            f"strategy by these figures:</strong><ul>{body}</ul></div>")


def period_bounds(summary: dict[str, Any], equity: Sequence[tuple[int, float]]) -> tuple[int | None, int | None]:
    """The record's [start, end] in ms: the effective start (after warm-up) or start_ms or the first
    equity point; end_ms or the last point."""
    start = to_ms(summary.get("effective_start")) or to_ms(summary.get("start_ms"))
    end = to_ms(summary.get("end_ms"))
    if start is None and equity:
        start = min(t for t, _ in equity)
    if end is None and equity:
        end = max(t for t, _ in equity)
    return start, end


def _span(h: dict[str, Any], end: int | None) -> tuple[int | None, int | None]:
    a = to_ms(h["from_ms"]) if "from_ms" in h else to_ms(h.get("from"))
    b = to_ms(h["to_ms"]) if "to_ms" in h else to_ms(h.get("to"))
    return a, end if b is None else b


def halt_spans(summary: dict[str, Any], end: int | None) -> list[tuple[float, float]]:
    """(from, to) ms of the halts that stopped entries on every symbol (to = the end when open)."""
    out: list[tuple[float, float]] = []
    for h in summary.get("halts") or ():
        a, b = _span(h, end)
        if not h.get("symbol") and a is not None and b is not None and b > a:
            out.append((a, b))
    return out


def _duration(ms: float) -> str:
    hours = ms / 3_600_000
    return f"{hours:.1f} h" if hours < 48 else f"{hours / 24:.1f} days"


def _halt_line(h: dict[str, Any], start: int | None, end: int | None, lead: bool = True) -> str:
    name = str(h.get("breaker") or "a").replace("_", " ")
    who = f" on {_e(h['symbol'])}" if h.get("symbol") else ""
    a, b = _span(h, end)
    until = "the end" if h.get("to") is None and h.get("to_ms") is None else _when(h.get("to_ms") or h.get("to"))
    share = ""
    if a is not None and b is not None:
        share = f": {_duration(b - a)}"
        if start is not None and end is not None and end > start:
            pct = (min(b, end) - max(a, start)) / (end - start) * 100
            share += f", {pct:.0f} % of the period" if pct >= 1 else ", under 1 % of the period"
    reset = " (ended by a simulated operator reset)" if h.get("simulated_reset") else ""
    why = f" — {_e(h['reason'])}" if h.get("reason") else ""
    text = (f"{html.escape(name.capitalize())} breaker halted new entries{who} from "
            f"{_when(h.get('from_ms') or h.get('from'))} to {until}{share}")
    return f"<li>{f'<strong>{text}</strong>' if lead else text}{reset}{why}</li>"


def _major(h: dict[str, Any], start: int | None, end: int | None) -> bool:
    """A halt to state first: for every symbol, and open-ended or ≥ 5 % of the period."""
    if h.get("symbol"):
        return False
    a, b = _span(h, end)
    if h.get("to") is None and h.get("to_ms") is None:
        return True
    if a is None or b is None or start is None or end is None or end <= start:
        return False
    return b - a >= 0.05 * (end - start)


def halts_section(summary: dict[str, Any], start: int | None, end: int | None) -> str:
    """Halts first: the long ones (every symbol, open-ended or ≥ 5 % of the period) as sentences,
    the active fraction and the drawdown between resets, then every halt (up to MAX_HALT_ROWS)."""
    keys = ("halts", "active_fraction", "max_drawdown_between_resets_pct", "simulated_resets")
    if not any(k in summary for k in keys):
        return ""
    halts = list(summary.get("halts") or ())
    major = [h for h in halts if _major(h, start, end)]
    parts = ["<section id=\"halts\"><h2>Halts</h2>"]
    if "halts" in summary and not halts:
        parts.append("<p>No breaker halted new entries.</p>")
    if major:
        parts.append("<ul class=\"halts\">" + "".join(_halt_line(h, start, end) for h in major) + "</ul>")
    facts = []
    af = summary.get("active_fraction")
    if isinstance(af, int | float):
        facts.append(f"New entries were allowed during <strong>{af * 100:.1f} %</strong> of the period "
                     "(active fraction).")
    mdd = summary.get("max_drawdown_between_resets_pct")
    if isinstance(mdd, int | float):
        facts.append(f"Max drawdown between (simulated) resets: {mdd:.2f} %.")
    resets = summary.get("simulated_resets")
    if isinstance(resets, dict):
        facts.append(f"Simulated operator resets after {_e(resets.get('after'))}: {_e(resets.get('count'))}.")
    if facts:
        parts.append("<p>" + " ".join(facts) + "</p>")
    if halts:
        rows = "".join(_halt_line(h, start, end, lead=False) for h in halts[:MAX_HALT_ROWS])
        more = (f"<p>… and {len(halts) - MAX_HALT_ROWS} more (see summary.json).</p>"
                if len(halts) > MAX_HALT_ROWS else "")
        parts.append(f"<details{' open' if not major else ''}><summary>every halt ({len(halts)}, oldest first)"
                     f"</summary><ul>{rows}</ul>{more}</details>")
    return "".join(parts) + "</section>"


def period_section(summary: dict[str, Any]) -> str:
    """When decisions could start (after the indicators' warm-up), and what that did to the start."""
    if "effective_start" not in summary and "warmup" not in summary:
        return ""
    text = []
    if "effective_start" in summary:
        text.append(f"Decisions start at <strong>{_when(summary['effective_start'])} UTC</strong> (effective start)")
    w = summary.get("warmup")
    if isinstance(w, dict) and w:
        if w.get("longest_indicator"):
            text.append(f"every timeframe's indicators are defined from then on; the slowest, "
                        f"{_e(w['longest_indicator'])} on {_e(w.get('timeframe'))}, needs {_e(w.get('bars'))} bars")
        moved = w.get("start_moved_by_ms")
        if isinstance(moved, int | float) and moved > 0:
            text.append(f"the start moved by {_duration(moved)} for lack of history before it in the files")
        elif w.get("history_before_start_used"):
            text.append("history before the start served as warm-up")
    elif w:
        text.append(f"warm-up: {_e(w)}")
    return "<p id=\"warmup\">" + "; ".join(text) + ".</p>"


def data_flags_section(flags: Any) -> str:
    """The data-quality flags of the input files (up to MAX_FLAG_ROWS rows, then a count)."""
    if flags is None:
        return ""
    flags = list(flags)
    if not flags:
        return "<section id=\"data-flags\"><h2>Data-quality flags: none</h2></section>"
    kinds: dict[str, int] = {}
    for f in flags:
        kinds[str(f.get("kind"))] = kinds.get(str(f.get("kind")), 0) + 1
    head = "".join(f"<th>{c}</th>" for c in _FLAG_COLUMNS)
    rows = "".join(
        "<tr>" + "".join(f"<td>{_when(f.get(c)) if c == 'time' else _e(f.get(c))}</td>" for c in _FLAG_COLUMNS)
        + "</tr>" for f in flags[:MAX_FLAG_ROWS])
    more = (f"<p>… and {len(flags) - MAX_FLAG_ROWS} more (see summary.json).</p>"
            if len(flags) > MAX_FLAG_ROWS else "")
    counts = ", ".join(f"{n} {_e(k)}" for k, n in sorted(kinds.items()))
    return (f"<section id=\"data-flags\"><h2>Data-quality flags: {len(flags)} ({counts})</h2>"
            "<p>Flagged bars stay in the data as they are; the results include them.</p>"
            f"<details{' open' if len(flags) <= 20 else ''}><summary>the flags</summary>"
            f"<div class=\"scroll\"><table><tr>{head}</tr>{rows}</table></div></details>{more}</section>")
