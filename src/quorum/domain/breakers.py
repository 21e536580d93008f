"""Circuit breakers (pure): a frozen `BreakerBook` and transitions that return the new book plus
the events to store (one row per trip and per reset).

- daily_loss: equity fell ≥ MAX_DAILY_LOSS_PCT below the day's starting equity; resets at the
  next 00:00 UTC.
- loss_streak: MAX_CONSECUTIVE_LOSSES losing trades in a row; cools down for
  LOSS_STREAK_COOLDOWN_MINUTES, then the streak count starts again from 0.
- drawdown: equity ≥ MAX_DRAWDOWN_PCT below its peak; stays tripped until an operator resets it
  (the reset re-bases the peak at the current equity).
- symbol_cooldown: a stop-out (stop loss or liquidation) on a symbol blocks new entries on that
  symbol for SYMBOL_COOLDOWN_MINUTES.

A tripped breaker blocks new entries only; exits are never blocked (nothing here is consulted by
the exit logic).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Any

DAY_MS = 86_400_000
DAILY_LOSS = "daily_loss"
LOSS_STREAK = "loss_streak"
DRAWDOWN = "drawdown"
SYMBOL_COOLDOWN = "symbol_cooldown"
STOP_OUT_REASONS = frozenset({"stop_loss", "liquidation"})


@dataclass(frozen=True, slots=True)
class BreakerPolicy:
    max_daily_loss_pct: float = 5.0
    max_consecutive_losses: int = 4
    loss_streak_cooldown_ms: int = 240 * 60_000
    max_drawdown_pct: float = 20.0
    symbol_cooldown_ms: int = 60 * 60_000

    @classmethod
    def from_settings(cls, settings: Any) -> BreakerPolicy:
        return cls(
            max_daily_loss_pct=float(settings.max_daily_loss_pct),
            max_consecutive_losses=int(settings.max_consecutive_losses),
            loss_streak_cooldown_ms=int(settings.loss_streak_cooldown_minutes) * 60_000,
            max_drawdown_pct=float(settings.max_drawdown_pct),
            symbol_cooldown_ms=int(settings.symbol_cooldown_minutes) * 60_000,
        )


@dataclass(frozen=True, slots=True)
class Trip:
    breaker: str
    reason: str
    at_ms: int
    value: float | None = None
    threshold: float | None = None
    until_ms: int | None = None  # None: until reset (daily loss: next UTC midnight is its until)
    symbol: str | None = None

    @property
    def key(self) -> str:
        return f"{self.breaker}:{self.symbol}" if self.symbol else self.breaker


@dataclass(frozen=True, slots=True)
class BreakerEvent:
    """One breaker_events row."""

    breaker: str
    event: str  # trip | reset
    reason: str
    at_ms: int
    symbol: str | None = None
    value: float | None = None
    threshold: float | None = None
    until_ms: int | None = None
    actor: str = "system"


@dataclass(frozen=True, slots=True)
class BreakerBook:
    """Everything the breakers remember (persisted as JSON)."""

    day_start_ms: int | None = None
    day_start_equity: float | None = None
    equity_peak: float | None = None
    last_equity: float | None = None
    consecutive_losses: int = 0
    trips: tuple[Trip, ...] = field(default_factory=tuple)

    def tripped(self, breaker: str, symbol: str | None = None) -> Trip | None:
        for t in self.trips:
            if t.breaker == breaker and t.symbol == symbol:
                return t
        return None

    def to_json(self) -> dict[str, Any]:
        return {
            "day_start_ms": self.day_start_ms, "day_start_equity": self.day_start_equity,
            "equity_peak": self.equity_peak, "last_equity": self.last_equity,
            "consecutive_losses": self.consecutive_losses,
            "trips": [{"breaker": t.breaker, "reason": t.reason, "at_ms": t.at_ms, "value": t.value,
                       "threshold": t.threshold, "until_ms": t.until_ms, "symbol": t.symbol} for t in self.trips],
        }

    @classmethod
    def from_json(cls, data: dict[str, Any] | None) -> BreakerBook:
        if not data:
            return cls()
        return cls(
            day_start_ms=data.get("day_start_ms"), day_start_equity=data.get("day_start_equity"),
            equity_peak=data.get("equity_peak"), last_equity=data.get("last_equity"),
            consecutive_losses=int(data.get("consecutive_losses", 0)),
            trips=tuple(Trip(**t) for t in data.get("trips", [])),
        )


Transition = tuple[BreakerBook, tuple[BreakerEvent, ...]]


def utc_day_start(ms: int) -> int:
    return ms - ms % DAY_MS


def _with_trips(book: BreakerBook, trips: tuple[Trip, ...]) -> BreakerBook:
    return BreakerBook(book.day_start_ms, book.day_start_equity, book.equity_peak, book.last_equity,
                       book.consecutive_losses, trips)


def _with_losses(book: BreakerBook, losses: int) -> BreakerBook:
    return BreakerBook(book.day_start_ms, book.day_start_equity, book.equity_peak, book.last_equity, losses,
                       book.trips)


def _trip(book: BreakerBook, trip: Trip) -> Transition:
    if any(t.key == trip.key for t in book.trips):
        return book, ()
    ev = BreakerEvent(trip.breaker, "trip", trip.reason, trip.at_ms, trip.symbol, trip.value, trip.threshold,
                      trip.until_ms)
    return _with_trips(book, (*book.trips, trip)), (ev,)


def _reset(book: BreakerBook, key: str, reason: str, at_ms: int, actor: str = "system") -> Transition:
    found = [t for t in book.trips if t.key == key]
    if not found:
        return book, ()
    t = found[0]
    ev = BreakerEvent(t.breaker, "reset", reason, at_ms, t.symbol, None, None, None, actor)
    return _with_trips(book, tuple(x for x in book.trips if x.key != key)), (ev,)


def expire(book: BreakerBook, now_ms: int) -> Transition:
    """Reset every timed trip whose time is up; roll the day at 00:00 UTC (daily loss resets)."""
    if not any(t.until_ms is not None and now_ms >= t.until_ms for t in book.trips) and (
            book.day_start_ms is None or now_ms - now_ms % DAY_MS <= book.day_start_ms):
        return book, ()  # nothing expires, same day (the common case, kept cheap)
    events: list[BreakerEvent] = []
    for t in list(book.trips):
        if t.until_ms is not None and now_ms >= t.until_ms:
            book, evs = _reset(book, t.key, "cool-down over" if t.breaker != DAILY_LOSS else "new UTC day", now_ms)
            events.extend(evs)
            if t.breaker == LOSS_STREAK:
                book = _with_losses(book, 0)
    if book.day_start_ms is not None and utc_day_start(now_ms) > book.day_start_ms:
        book = replace(book, day_start_ms=utc_day_start(now_ms), day_start_equity=book.last_equity)
    return book, tuple(events)


def on_equity(book: BreakerBook, equity: float, now_ms: int, policy: BreakerPolicy) -> Transition:
    """Feed the current (mark-to-market) equity: roll the day, track the peak, trip daily loss
    and drawdown. Non-finite equity changes nothing."""
    if not math.isfinite(equity):
        return book, ()
    book, events = expire(book, now_ms)
    out = list(events)
    if book.day_start_ms is None or book.day_start_equity is None:
        book = replace(book, day_start_ms=utc_day_start(now_ms), day_start_equity=equity)
    peak = equity if book.equity_peak is None else max(book.equity_peak, equity)
    if book.equity_peak != peak or book.last_equity != equity:  # else the same book again
        book = BreakerBook(book.day_start_ms, book.day_start_equity, peak, equity, book.consecutive_losses,
                           book.trips)
    start = book.day_start_equity
    if start is not None and start > 0:
        loss_pct = (start - equity) / start * 100.0
        if loss_pct >= policy.max_daily_loss_pct:
            book, evs = _trip(book, Trip(DAILY_LOSS, f"day loss {loss_pct:.2f}% of {start:.2f}", now_ms,
                                         round(loss_pct, 6), policy.max_daily_loss_pct,
                                         until_ms=utc_day_start(now_ms) + DAY_MS))
            out.extend(evs)
    if peak > 0:
        dd_pct = (peak - equity) / peak * 100.0
        if dd_pct >= policy.max_drawdown_pct:
            book, evs = _trip(book, Trip(DRAWDOWN, f"drawdown {dd_pct:.2f}% from peak {peak:.2f}", now_ms,
                                         round(dd_pct, 6), policy.max_drawdown_pct))
            out.extend(evs)
    return book, tuple(out)


def on_trade_closed(book: BreakerBook, symbol: str, net_pnl: float, exit_reason: str, now_ms: int,
                    policy: BreakerPolicy) -> Transition:
    """Count the loss streak (a win or flat trade ends it) and start the symbol cool-down after a
    stop-out."""
    book, events = expire(book, now_ms)
    out = list(events)
    if math.isfinite(net_pnl) and net_pnl < 0:
        book = _with_losses(book, book.consecutive_losses + 1)
        if book.consecutive_losses >= policy.max_consecutive_losses:
            book, evs = _trip(book, Trip(LOSS_STREAK, f"{book.consecutive_losses} losses in a row", now_ms,
                                         book.consecutive_losses, policy.max_consecutive_losses,
                                         until_ms=now_ms + policy.loss_streak_cooldown_ms))
            out.extend(evs)
    elif book.consecutive_losses != 0:
        book = _with_losses(book, 0)
    if exit_reason in STOP_OUT_REASONS and policy.symbol_cooldown_ms > 0:
        book, evs = _trip(book, Trip(SYMBOL_COOLDOWN, f"{exit_reason} on {symbol}", now_ms,
                                     until_ms=now_ms + policy.symbol_cooldown_ms, symbol=symbol))
        out.extend(evs)
    return book, tuple(out)


def operator_reset(book: BreakerBook, breaker: str, now_ms: int, actor: str, symbol: str | None = None) -> Transition:
    """An operator clears a breaker. Resetting the drawdown breaker re-bases the equity peak at
    the last equity (otherwise it would trip again at once); resetting the loss streak zeroes it."""
    key = f"{breaker}:{symbol}" if symbol else breaker
    book, events = _reset(book, key, f"reset by {actor}", now_ms, actor)
    if events and breaker == DRAWDOWN:
        book = replace(book, equity_peak=book.last_equity)
    if events and breaker == LOSS_STREAK:
        book = replace(book, consecutive_losses=0)
    if events and breaker == DAILY_LOSS:
        book = replace(book, day_start_equity=book.last_equity)
    return book, events


def entry_block_reasons(book: BreakerBook, symbol: str, now_ms: int) -> tuple[str, ...]:
    """Reason codes ('breaker:daily_loss', ...) that block a new entry on `symbol` now. Timed
    trips whose time is over no longer block even before `expire` has been stored."""
    reasons = []
    for t in book.trips:
        if t.until_ms is not None and now_ms >= t.until_ms:
            continue
        if t.symbol is None or t.symbol == symbol:
            reasons.append(f"breaker:{t.breaker}")
    return tuple(sorted(set(reasons)))


def status(book: BreakerBook, now_ms: int) -> dict[str, str]:
    """{breaker key: reason} of the active trips (for /status and RuntimeState.breakers)."""
    return {t.key: t.reason for t in book.trips if t.until_ms is None or now_ms < t.until_ms}
