"""Prompt templates from `prompts/` and their rendering.

The prompt version is a hash of the template files' content, so any edit to a prompt is a new
version, stored with every vote. Templates use `string.Template` placeholders (`$name`), which
leave JSON braces alone. Nothing rendered here contains a calendar date: times are shown as
durations relative to the snapshot.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from pathlib import Path
from string import Template
from typing import Any

from quorum.ai.context import VoteContext
from quorum.domain.models import Snapshot, TimeframeView

PROMPT_FILES = ("system.md", "user.md", "repair.md")
DEFAULT_PROMPTS_DIR = Path(__file__).resolve().parents[3] / "prompts"


class PromptError(Exception):
    """The prompt directory is unusable (names the file)."""


@dataclass(frozen=True, slots=True)
class PromptLimits:
    """The code-enforced limits and fees the system prompt states."""

    taker_fee_pct: float = 0.05
    maker_fee_pct: float = 0.02
    max_leverage: int = 5
    min_stop_loss_pct: float = 0.4
    max_stop_loss_pct: float = 8.0

    @classmethod
    def from_settings(cls, settings: Any) -> PromptLimits:
        return cls(
            taker_fee_pct=settings.taker_fee_pct,
            maker_fee_pct=settings.maker_fee_pct,
            max_leverage=settings.max_leverage,
            min_stop_loss_pct=settings.min_stop_loss_pct,
            max_stop_loss_pct=settings.max_stop_loss_pct,
        )


def fmt(x: float | None, digits: int = 6) -> str:
    """A literal number with `digits` significant digits, no exponent for usual prices."""
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "n/a"
    if x == 0:
        return "0"
    mag = int(math.floor(math.log10(abs(x))))
    decimals = max(0, digits - 1 - mag)
    return f"{x:.{decimals}f}".rstrip("0").rstrip(".") if decimals else f"{x:.0f}"


def _view_lines(v: TimeframeView) -> list[str]:
    lines = [
        f"### {v.timeframe} ({v.bars} closed bars, regime {v.regime.value})",
        f"close {fmt(v.close)}, change {fmt(v.change_pct, 3)} %, RSI {fmt(v.rsi, 3)}, "
        f"MACD {fmt(v.macd, 4)} / signal {fmt(v.macd_signal, 4)} / hist {fmt(v.macd_hist, 4)}",
        f"EMA20 {fmt(v.ema20)} (slope {fmt(v.ema20_slope, 3)}), EMA50 {fmt(v.ema50)} (slope {fmt(v.ema50_slope, 3)}), "
        f"EMA200 {fmt(v.ema200)} (slope {fmt(v.ema200_slope, 3)})",
        f"Bollinger {fmt(v.bb_lower)} / {fmt(v.bb_middle)} / {fmt(v.bb_upper)}, %B {fmt(v.bb_pct_b, 3)}, "
        f"width {fmt(v.bb_width, 3)}",
        f"ATR {fmt(v.atr)} ({fmt(v.atr_pct, 3)} % of price, at or above "
        f"{fmt(None if v.atr_pct_percentile is None else v.atr_pct_percentile * 100, 3)} % of the last 100 bars' "
        "ATR %, 100 = the highest), "
        f"ADX {fmt(v.adx, 3)}, +DI {fmt(v.plus_di, 3)}, -DI {fmt(v.minus_di, 3)}",
        f"volume ratio {fmt(v.volume_ratio, 3)}, OBV slope {fmt(v.obv_slope, 3)}, "
        f"range {fmt(v.range_low)} - {fmt(v.range_high)}",
    ]
    if v.recent_closes:
        lines.append("recent closes (oldest first): " + ", ".join(fmt(c) for c in v.recent_closes))
    return lines


def render_market(snapshot: Snapshot) -> str:
    """The market section of the user prompt, from the snapshot fields (no dates)."""
    lines = [f"Overall regime: {snapshot.regime.value}"]
    if snapshot.funding_rate is not None:
        nxt = ""
        if snapshot.next_funding_ms is not None:
            minutes = max(0, (snapshot.next_funding_ms - snapshot.time_ms) // 60_000)
            nxt = f", next funding in {minutes} minutes"
        lines.append(f"Funding rate: {fmt(snapshot.funding_rate * 100, 4)} % per interval{nxt}")
    if snapshot.open_interest is not None:
        lines.append(f"Open interest: {fmt(snapshot.open_interest)}")
    if snapshot.book_imbalance is not None:
        lines.append(f"Order book imbalance: {fmt(snapshot.book_imbalance, 3)}")
    if snapshot.breadth is not None:
        b = snapshot.breadth
        lines.append(f"Market breadth: {b.symbols} symbols, {fmt(b.share_above_ema50 * 100, 3)} % above EMA50, "
                     f"average 24h change {fmt(b.avg_change_24h_pct, 3)} %")
    if snapshot.flags:
        lines.append("Data-quality flags: " + ", ".join(snapshot.flags))
    for v in snapshot.timeframes:
        lines.extend(_view_lines(v))
    return "\n".join(lines)


def render_positions(ctx: VoteContext) -> str:
    if not ctx.positions:
        return "none"
    out = []
    for p in ctx.positions:
        out.append(
            f"- {p.symbol} {p.side.value.upper()} qty {fmt(p.quantity)} at {fmt(p.leverage, 3)}x: entry "
            f"{fmt(p.entry_price)}, mark {fmt(p.mark_price)}, unrealised P&L {fmt(p.pnl, 4)} USDT, peak P&L "
            f"{fmt(p.peak_pnl_pct, 3)} %, stop {fmt(p.stop_price)}, liquidation {fmt(p.liquidation_price)}"
        )
    return "\n".join(out)


def default_market_renderer() -> Any:
    """The scanner's date-free renderer (`quorum.market.render.render_prompt_text`) when
    available, else `render_market` above."""
    try:
        from quorum.market.render import render_prompt_text
    except ImportError:  # pragma: no cover - scanner area absent
        return render_market
    return render_prompt_text


class PromptSet:
    """The loaded templates. `version` = first 16 hex of sha256 over the files' names and content."""

    def __init__(self, directory: Path | None = None, market_renderer: Any = None) -> None:
        self.directory = Path(directory) if directory else DEFAULT_PROMPTS_DIR
        texts: dict[str, str] = {}
        for name in PROMPT_FILES:
            path = self.directory / name
            try:
                texts[name] = path.read_text(encoding="utf-8")
            except OSError as exc:
                raise PromptError(f"prompt file {path}: {exc.strerror or exc}") from exc
        digest = hashlib.sha256()
        for name in PROMPT_FILES:
            digest.update(name.encode() + b"\0" + texts[name].encode() + b"\0")
        self.version = digest.hexdigest()[:16]
        self._t = {name: Template(text) for name, text in texts.items()}
        self._market = market_renderer or default_market_renderer()

    def system(self, limits: PromptLimits) -> str:
        return self._t["system.md"].safe_substitute(
            taker_fee_pct=fmt(limits.taker_fee_pct, 3),
            maker_fee_pct=fmt(limits.maker_fee_pct, 3),
            round_trip_fee_pct=fmt(2 * limits.taker_fee_pct, 3),
            max_leverage=limits.max_leverage,
            min_stop_loss_pct=fmt(limits.min_stop_loss_pct, 3),
            max_stop_loss_pct=fmt(limits.max_stop_loss_pct, 3),
        )

    def user(self, ctx: VoteContext) -> str:
        s, a = ctx.snapshot, ctx.account
        return self._t["user.md"].safe_substitute(
            symbol=s.symbol,
            price=fmt(s.price),
            market=self._market(s),
            equity=fmt(a.equity, 8),
            available_balance=fmt(a.available_balance, 8),
            day_pnl=fmt(a.day_pnl, 6),
            open_positions=str(len(ctx.positions) or a.open_positions),
            positions=render_positions(ctx),
        )

    def repair(self, error: str) -> str:
        return self._t["repair.md"].safe_substitute(error=error[:500])
