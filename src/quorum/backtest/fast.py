"""The fast backtester: the engine's loop (see `quorum.engine.shared`) run as events.

Nothing is stepped bar by bar in Python unless something can happen on that bar:

- decisions are only visited where the rules analyst says LONG/SHORT (one vectorised
  `rules_signals` call per series) — a HOLD decision changes nothing;
- an open position jumps from event bar to event bar with the risk module's numpy
  `first_event_index` (stop / take-profit / partial / trailing / break-even / time stop) plus
  the venue's own rounded stop and take-profit; the peak over skipped bars is folded with
  `fold_extremes`;
- on an event bar the engine's exact rules run: the venue twin's `on_bar` (funding, triggers),
  then `step_bar`, then the intents at the venue price;
- a funding time between two event bars gets a light event at its bar (the venue settles the
  funding there, at the same point of the event order as the engine would) without re-scanning;
- the flat-account facts an entry needs (marks, exposure, the breakers' equity sample) are
  cached per decision time while nothing fills.

Decisions and entries (phase D) are in `backtest.fast_entries`.

Events across symbols are processed in time order through a heap (bars before decisions at the
same time, symbols in sorted order), so a decision only ever sees the past.
"""

from __future__ import annotations

import bisect
import heapq
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import numpy as np

from quorum.backtest.fast_entries import EntryDecisions, ProposalFn
from quorum.backtest.inputs import SymbolInput, funding_source
from quorum.backtest.records import Book, RunResult
from quorum.backtest.venue import BacktestVenue, ProtectedPosition
from quorum.domain import breakers as brk
from quorum.domain.clusters import ClusterSchedule
from quorum.domain.exits import Bar as ExitBar
from quorum.domain.exits import (
    exit_reason_for_order,
    exit_reason_for_stop,
    first_event_index,
    fold_extremes,
    step_bar,
)
from quorum.domain.fills import close_order_side
from quorum.domain.models import ClosedTrade, ExitReason, IntentKind, PositionState
from quorum.domain.sizing import round_to_tick
from quorum.engine.shared import (
    LoopConfig,
    OpenPositionFact,
    exposure_state,
)

BAR, RESET, DECISION = 0, 1, 2  # at one time: bars, then simulated operator resets, then decisions
SIMULATED_OPERATOR = "simulated operator"




def rules_rows(si: SymbolInput, min_conf: float) -> np.ndarray:
    """Decision rows where the rules analyst proposes something (HOLD rows change nothing)."""
    return np.flatnonzero((si.dec_code != 0) & (si.dec_conf >= min_conf - 1e-12))


def venue_more_sensitive(state: PositionState, vp: ProtectedPosition) -> bool:
    """Could the venue's (tick-rounded) stop / take-profit / liquidation trigger on a bar where
    the state's own levels do not? If not, `first_event_index` alone finds every event."""
    s = state.side.sign
    if vp.stop_price is not None and s * (vp.stop_price - state.stop_price) > 0:
        return True
    if vp.tp_price is not None and (state.take_profit is None or s * (state.take_profit - vp.tp_price) > 0):
        return True
    liq = vp.liquidation_price
    return bool(liq and liq > 0 and s * (liq - state.stop_price) > 0)


def _regular_grid(open_ms: np.ndarray, tf_ms: int) -> tuple[int, int] | None:
    n = len(open_ms)
    if n == 0 or (n > 1 and not bool(np.all(np.diff(open_ms) == tf_ms))):
        return None
    return int(open_ms[0]), n


class FastBacktest(EntryDecisions):
    """Run the loop over prepared inputs; `run()` returns trades, decisions and fills."""

    def __init__(self, inputs: list[SymbolInput], cfg: LoopConfig, *, proposal_fn: ProposalFn | None = None,
                 rows: dict[str, np.ndarray] | None = None, progress: Callable[[int], None] | None = None,
                 voters_fn: Callable[[str, int], tuple[str, ...]] | None = None,
                 breaker_reset_after_ms: int | None = None) -> None:
        self.inputs = sorted(inputs, key=lambda s: s.symbol)
        self.by_symbol = {s.symbol: s for s in self.inputs}
        self.cfg = cfg
        self.venue = BacktestVenue(cfg.fill_model, cfg.initial_equity, {s.symbol: s.filters for s in self.inputs},
                                   funding_source=funding_source(self.by_symbol), funding_rate=cfg.funding_rate,
                                   funding_interval_ms=cfg.funding_interval_ms)
        self.policy = {s.symbol: replace(cfg.exit_policy, qty_step=s.filters.step_size) for s in self.inputs}
        self.proposal_fn = proposal_fn
        self.voters_fn = voters_fn
        self.rows = rows or {s.symbol: rules_rows(s, cfg.consensus.min_confidence) for s in self.inputs}
        self.progress = progress
        self.books: dict[str, Book] = {}
        self.book_breakers = brk.BreakerBook()
        self.breaker_events: list[dict[str, Any]] = []
        # A breaker only an operator can reset (drawdown) is reset this long after it tripped, as an
        # operator would (None: never, like an unattended backtest); decisions skipped while it
        # blocked every entry resume from the reset (`_stalled`: symbol index -> row pointer).
        self.reset_after_ms = breaker_reset_after_ms
        self.simulated_resets: list[int] = []
        self._stalled: dict[int, int] = {}
        self.recent_opens: list[int] = []
        self.last_exit: dict[str, int] = {}
        self.trades: list[ClosedTrade] = []
        self.decisions: list[dict[str, Any]] = []
        self.segments: list[tuple[str, int, float, float, int, int]] = []
        self._seg_start: dict[str, int] = {}
        self.heap: list[tuple[int, int, int, int, int]] = []
        self.events = 0
        self._facts_key: tuple[int, int, int] | None = None
        self._facts: list[OpenPositionFact] = []
        self._exposure_key: tuple[int, int, int, int] | None = None
        self._exposure = exposure_state((), (), {}, 0)
        self._idx = {s.symbol: i for i, s in enumerate(self.inputs)}
        self._bfg: tuple[tuple[brk.Trip, ...] | None, bool] = (None, False)
        self._equity_fed: tuple[int, float] | None = None
        self._equity_key: tuple[int, int, int, int] | None = None
        self._equity = 0.0
        self._equity_book: brk.BreakerBook | None = None
        # Correlation clusters per UTC day (built on first need) and the closed trades' totals for
        # the Kelly cap, (trades folded in, trades, wins, won, lost): see `_entry`.
        self._clusters: ClusterSchedule | None = None
        self._record_totals: tuple[int, int, int, float, float] = (0, 0, 0, 0.0, 0.0)
        # Per symbol: (first open, count) when the bars lie on the execution grid without gaps, so
        # bar lookups are arithmetic instead of searchsorted; None otherwise.
        self._grid = [_regular_grid(s.open_ms, cfg.exec_tf_ms) for s in self.inputs]
        # The visited decision rows as plain lists (indexed by the row pointer): row, T, code, k, conf.
        self._rl = []
        for s in self.inputs:
            r = self.rows[s.symbol]
            self._rl.append((r.tolist(), s.dec_time[r].tolist(), s.dec_code[r].tolist(), s.dec_bar[r].tolist(),
                             s.dec_conf[r].tolist()))

    # --- scheduling ----------------------------------------------------------------------
    def _push_decision(self, i: int, ptr: int) -> None:
        times = self._rl[i][1]
        if ptr < len(times):
            heapq.heappush(self.heap, (times[ptr], DECISION, i, ptr, 0))

    def _searchsorted(self, i: int, x: int, right: bool) -> int:
        """`np.searchsorted(open_ms, x, side)` of symbol i (arithmetic on a regular grid)."""
        g = self._grid[i]
        if g is None:
            return int(np.searchsorted(self.inputs[i].open_ms, x, side="right" if right else "left"))
        o0, n = g
        tf = self.cfg.exec_tf_ms
        if right:
            return 0 if x < o0 else min(n, (x - o0) // tf + 1)
        return 0 if x <= o0 else min(n, (x - o0 - 1) // tf + 1)

    def _funding_bar(self, i: int, start: int, settled_ms: int | None = None) -> int:
        """The first bar at or after `start` whose open is at or after the next funding time not
        settled yet (after `settled_ms`: a position opened at a funding time does not pay it)."""
        iv = self.cfg.funding_interval_ms
        o = int(self.inputs[i].open_ms[start])
        after = o - 1 if settled_ms is None else max(o - 1, settled_ms)
        return self._searchsorted(i, (after // iv + 1) * iv, right=False)

    def _schedule(self, book: Book) -> None:
        """Push the position's next event bar; the funding bars before it get light funding-only
        events (a funding payment changes the wallet, never the position's exit state)."""
        si = self.inputs[book.symbol_idx]
        start = book.processed + 1
        if start > si.last:
            return
        end = si.last + 1
        j = first_event_index(book.state, si.open, si.high, si.low, si.close, self.policy[si.symbol], start,
                              open_ms=si.open_ms, end=end)
        vp = self.venue.position(si.symbol)
        if vp is not None and j > start and venue_more_sensitive(book.state, vp):
            s = vp.side.sign
            adverse = si.low[start:j] if s > 0 else si.high[start:j]
            favour = si.high[start:j] if s > 0 else si.low[start:j]
            hit = np.zeros(j - start, dtype=bool)
            for lvl in (vp.stop_price, vp.liquidation_price if vp.liquidation_price > 0 else None):
                if lvl is not None:
                    hit |= s * (lvl - adverse) >= 0
            if vp.tp_price is not None:
                hit |= s * (favour - vp.tp_price) >= 0
            idx = np.flatnonzero(hit)
            if idx.size:
                j = start + int(idx[0])
        j = min(j, end - 1)
        book.version += 1
        book.event_bar = j
        tf = self.cfg.exec_tf_ms
        heapq.heappush(self.heap, (int(si.open_ms[j]) + tf, BAR, book.symbol_idx, j, book.version))
        fb = self._funding_bar(book.symbol_idx, start, self.venue.settled_until(si.symbol))
        while fb < j:
            heapq.heappush(self.heap, (int(si.open_ms[fb]) + tf, BAR, book.symbol_idx, fb, book.version))
            fb = self._funding_bar(book.symbol_idx, fb + 1)

    # --- the loop ------------------------------------------------------------------------
    def run(self) -> RunResult:
        for i in range(len(self.inputs)):
            self._push_decision(i, 0)
        while self.heap:
            t, kind, i, arg, ver = heapq.heappop(self.heap)
            self.events += 1
            si = self.inputs[i]
            if kind == BAR:
                book = self.books.get(si.symbol)
                if book is None or book.version != ver:
                    continue
                if arg == book.event_bar:
                    self._bar_event(si, book, arg, t)
                else:
                    self._funding_event(si, book, arg, t)
            elif kind == RESET:
                self._simulated_reset(t)
            else:
                self._decision_event(si, i, arg, t)
            if self.progress is not None and self.events % 2048 == 0:
                self.progress(t)
        for si in self.inputs:  # end of data: close what is open at the last close
            book = self.books.get(si.symbol)
            if book is not None:
                t_end = int(si.open_ms[si.last]) + self.cfg.exec_tf_ms
                if book.processed < si.last:
                    self._bar_event(si, book, si.last, t_end)
                if si.symbol in self.books:
                    self.venue.on_price(si.symbol, float(si.close[si.last]), t_end)
                    self._market_close(si, self.books[si.symbol], ExitReason.END_OF_DATA.value, t_end)
        bars = sum(s.last - s.first + 1 for s in self.inputs)
        return RunResult(self.trades, self.decisions, self.venue.fills, self.venue, self.breaker_events,
                         self.segments, bars, self.events)

    def _venue_bar(self, si: SymbolInput, k: int, t: int) -> list[tuple[Any, str]]:
        """Phases A–B: the venue sees bar k (funding due by its open, triggers), then its price
        becomes the price at t (funding due at t settled on what is held, before any fill at t)."""
        v = self.venue
        if k > 0:
            v.funded_until(si.symbol, int(si.open_ms[k - 1]))
        triggered = v.on_bar(si.symbol, int(si.open_ms[k]), float(si.open[k]), float(si.high[k]),
                             float(si.low[k]), float(si.close[k]), self.cfg.exec_tf_ms)
        v.on_price(si.symbol, si.price_at(k), t)
        return triggered

    def _funding_event(self, si: SymbolInput, book: Book, k: int, t: int) -> None:
        """A funding bar before the position's next event: the venue settles funding on it. The
        scan found nothing that `step_bar` would do on it (its peak is folded at the next event);
        should the venue's own orders trigger anyway, the bar becomes a full event."""
        triggered = self._venue_bar(si, k, t)
        if triggered:
            self._bar_event(si, book, k, t, triggered)

    def _bar_event(self, si: SymbolInput, book: Book, k: int, t: int,
                   triggered: list[tuple[Any, str]] | None = None) -> None:
        """Phases A–C of the engine for one symbol's bar k (closing at t)."""
        first = book.processed + 1
        o, h, lo, c = float(si.open[k]), float(si.high[k]), float(si.low[k]), float(si.close[k])
        v = self.venue
        if triggered is None:
            triggered = self._venue_bar(si, k, t)
        book.processed = k
        # The peak over the skipped bars (fold_extremes) changes nothing a venue-triggered close
        # records (side, entry, quantities, stop, trailing flag), so it is folded only for a
        # position that is still open after the venue's triggers.
        for fill, kind in triggered:
            self._record_exit(si, book, fill.quantity, fill.price, fill.fee, fill.time_ms)
            if not v.holds(si.symbol):
                purpose = {"stop": "stop", "take_profit": "take_profit"}.get(kind, "exit")
                cid = "liquidation" if kind == "liquidation" else ""
                self._finish(si, book, exit_reason_for_order(purpose, cid, book.state).value, fill.time_ms, t)
                return
        state = book.state = fold_extremes(book.state, si.high, si.low, first, k)
        vp = v.position(si.symbol)
        assert vp is not None
        if state.quantity != vp.quantity:
            state = replace(state, quantity=vp.quantity)
        new_state, intents = step_bar(state, ExitBar(int(si.open_ms[k]), o, h, lo, c), self.policy[si.symbol])
        book.state = new_state
        for intent in intents:
            if intent.kind is IntentKind.REDUCE:
                qty = v.floor_qty(si.symbol, intent.quantity)
                fill = v.market(si.symbol, close_order_side(state.side), qty, reduce_only=True, time_ms=t,
                                reason=intent.reason) if qty >= v.filters[si.symbol].min_qty else None
                if fill is not None:
                    self._record_exit(si, book, fill.quantity, fill.price, fill.fee, t)
            elif intent.kind is IntentKind.CLOSE:
                self._market_close(si, book, intent.reason, t)
                return
        vp = v.position(si.symbol)
        assert vp is not None
        if book.state.quantity != vp.quantity:
            book.state = replace(book.state, quantity=vp.quantity)
        if not self._ensure_stop(si, book, t):
            return
        self._schedule(book)

    def _ensure_stop(self, si: SymbolInput, book: Book, t: int) -> bool:
        """The executor's protection invariant; False when the position had to be closed."""
        v = self.venue
        vp = v.position(si.symbol)
        assert vp is not None
        f = v.filters[si.symbol]
        want = round_to_tick(book.state.stop_price, f.tick_size)
        good = vp.stop_price is not None and abs(vp.stop_qty - vp.quantity) <= f.step_size / 2 and \
            abs(vp.stop_price - want) <= f.tick_size / 2
        if good:
            return True
        if v.place_stop(si.symbol, book.state.stop_price, vp.quantity):
            return True
        # the venue refuses a stop only when the price is already through it (Binance -2021):
        # close at market as that stop would have, like the executor does
        self._market_close(si, book, exit_reason_for_stop(book.state).value, t)
        return False

    def _record_exit(self, si: SymbolInput, book: Book, qty: float, price: float, fee: float, t: int) -> None:
        book.exits.append((qty, price))
        book.fees += fee
        start = self._seg_start.get(si.symbol, book.state.opened_ms)
        held = book.state.initial_quantity - sum(q for q, _ in book.exits[:-1])
        self.segments.append((si.symbol, book.state.side.sign, held, book.state.entry_price, start, t))
        self._seg_start[si.symbol] = t

    def _market_close(self, si: SymbolInput, book: Book, reason: str, t: int) -> None:
        v = self.venue
        vp = v.position(si.symbol)
        if vp is not None:
            fill = v.market(si.symbol, close_order_side(vp.side), vp.quantity, reduce_only=True, time_ms=t,
                            reason=reason)
            if fill is not None:
                self._record_exit(si, book, fill.quantity, fill.price, fill.fee, t)
        self._finish(si, book, reason, t, t)

    def _finish(self, si: SymbolInput, book: Book, reason: str, exit_ms: int, now: int) -> None:
        st = book.state
        out_qty = sum(q for q, _ in book.exits)
        exit_price = sum(q * p for q, p in book.exits) / out_qty if out_qty > 0 else st.entry_price
        gross = sum((p - st.entry_price) * q * st.side.sign for q, p in book.exits)
        funding = sum(a for sym, _, a in self.venue.funding_payments[book.funding_from:] if sym == si.symbol)
        net = gross - book.fees - funding
        self.trades.append(ClosedTrade(
            symbol=si.symbol, side=st.side, entry_ms=st.opened_ms, exit_ms=exit_ms, entry_price=st.entry_price,
            exit_price=exit_price, quantity=st.initial_quantity, leverage=st.leverage, fees=book.fees,
            funding=funding, gross_pnl=gross, net_pnl=net, exit_reason=reason, risk_usd=book.risk_usd,
            decision_id=st.decision_id, voters=book.voters))
        del self.books[si.symbol]
        self._seg_start.pop(si.symbol, None)
        self.last_exit[si.symbol] = exit_ms  # as the record says: the re-entry cool-down runs from the exit fill
        self.book_breakers, evs = brk.on_trade_closed(self.book_breakers, si.symbol, net, reason, now,
                                                      self.cfg.risk_policy.breakers)
        self._breaker_events(evs)

    def _breaker_events(self, evs: tuple[brk.BreakerEvent, ...]) -> None:
        for e in evs:
            self.breaker_events.append({"breaker": e.breaker, "event": e.event, "reason": e.reason, "at_ms": e.at_ms,
                                        "symbol": e.symbol, "until_ms": e.until_ms, "actor": e.actor})
            if e.event == "trip" and e.until_ms is None and self.reset_after_ms is not None:
                heapq.heappush(self.heap, (e.at_ms + self.reset_after_ms, RESET, 0, 0, 0))

    def _simulated_reset(self, t: int) -> None:
        """What an operator does after the cool-down: `quorum reset-breaker` on every trip without
        an end time that is that old, through the same domain function (a drawdown reset re-bases
        the peak at the equity now, fed first as the engine feeds it every step)."""
        due = [tr for tr in self.book_breakers.trips
               if tr.until_ms is None and self.reset_after_ms is not None and tr.at_ms + self.reset_after_ms <= t]
        if not due or t >= max(int(s.open_ms[s.last]) for s in self.inputs) + self.cfg.exec_tf_ms:
            return  # (none due, or after the end of the data)
        self._account_facts(t)  # marks the open positions at t
        self.book_breakers, evs = brk.on_equity(self.book_breakers, self.venue.equity(), t,
                                                self.cfg.risk_policy.breakers)
        self._breaker_events(evs)
        for tr in due:
            self.book_breakers, evs = brk.operator_reset(self.book_breakers, tr.breaker, t, SIMULATED_OPERATOR,
                                                         tr.symbol)
            self._breaker_events(evs)
            self.simulated_resets.append(t)
        for i, ptr in sorted(self._stalled.items()):  # the decisions resume from the reset
            self._push_decision(i, bisect.bisect_left(self._rl[i][1], t, lo=ptr))
        self._stalled.clear()

    # --- decisions -----------------------------------------------------------------------
