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

Events across symbols are processed in time order through a heap (bars before decisions at the
same time, symbols in sorted order), so a decision only ever sees the past.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import numpy as np

from quorum.backtest.inputs import SymbolInput, _nan_none, funding_source
from quorum.backtest.records import Book, RunResult
from quorum.backtest.venue import BacktestVenue, ProtectedPosition
from quorum.domain import breakers as brk
from quorum.domain.exits import Bar as ExitBar
from quorum.domain.exits import (
    consensus_close,
    exit_reason_for_order,
    exit_reason_for_stop,
    first_event_index,
    fold_extremes,
    step_bar,
)
from quorum.domain.exposure import exposure_check
from quorum.domain.fills import close_order_side, open_order_side
from quorum.domain.models import Action, ClosedTrade, ExitReason, IntentKind, PositionState, Proposal, Side
from quorum.domain.risk import evaluate
from quorum.domain.rules import RULES_VOTER
from quorum.domain.sizing import round_to_tick
from quorum.engine.shared import (
    LoopConfig,
    OpenPositionFact,
    exposure_state,
    risk_context,
    rules_proposal,
    wants_close,
)

BAR, DECISION = 0, 1


ProposalFn = Callable[[SymbolInput, int, int], Proposal]  # (input, decision row, T) -> proposal


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


class FastBacktest:
    """Run the loop over prepared inputs; `run()` returns trades, decisions and fills."""

    def __init__(self, inputs: list[SymbolInput], cfg: LoopConfig, *, proposal_fn: ProposalFn | None = None,
                 rows: dict[str, np.ndarray] | None = None, progress: Callable[[int], None] | None = None,
                 voters_fn: Callable[[str, int], tuple[str, ...]] | None = None) -> None:
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

    def _funding_bar(self, i: int, start: int) -> int:
        """The first bar at or after `start` whose open is at or after the next funding time."""
        iv = self.cfg.funding_interval_ms
        o = int(self.inputs[i].open_ms[start])
        nf = (o // iv) * iv
        if nf < o:
            nf += iv
        return self._searchsorted(i, nf, right=False)

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
        fb = self._funding_bar(book.symbol_idx, start)
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
        becomes the price at t."""
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
                                        "symbol": e.symbol})

    # --- decisions -----------------------------------------------------------------------
    def _decision_event(self, si: SymbolInput, i: int, ptr: int, t: int) -> None:
        book = self.books.get(si.symbol)
        rl = self._rl[i]
        row = rl[0][ptr]
        if book is None and self._blocked_for_good():
            return  # no entry can pass any more (an operator must reset the breaker); stop visiting
        self._push_decision(i, ptr + 1)
        code = rl[2][ptr]
        if book is not None and self.proposal_fn is None and code == book.state.side.sign:
            return  # the rules analyst agrees with the open position: nothing to do
        k = rl[3][ptr]
        price_now = float(si.close[k])
        if book is None and self.proposal_fn is None:
            rec: dict[str, Any] = {"time_ms": t, "symbol": si.symbol,
                                   "action": "LONG" if code > 0 else "SHORT",
                                   "confidence": rl[4][ptr]}
            self._entry(si, row, k, t, None, rec)
            self.decisions.append(rec)
            return
        if self.proposal_fn is not None:
            proposal = self.proposal_fn(si, row, t)
        else:
            proposal = rules_proposal(si.symbol, int(si.dec_code[row]), float(si.dec_conf[row]),
                                      float(si.dec_stop[row]), float(si.dec_tp[row]), price_now, t,
                                      self.cfg.consensus)
        if proposal.action not in (Action.LONG, Action.SHORT, Action.CLOSE):
            return
        rec = {"time_ms": t, "symbol": si.symbol, "action": proposal.action.value,
               "confidence": proposal.confidence}
        if book is not None:
            if wants_close(proposal, book.state.side):
                _, intents = consensus_close(book.state, t, price_now, self.policy[si.symbol])
                rec["outcome"] = "close" if intents else "close_blocked_min_hold"
                if intents:
                    self.venue.on_price(si.symbol, si.price_at(k), t)
                    self._market_close(si, book, ExitReason.CONSENSUS_CLOSE.value, t)
                self.decisions.append(rec)
            return
        if proposal.action is Action.CLOSE:
            return
        self._entry(si, row, k, t, proposal, rec)
        self.decisions.append(rec)

    def _blocked_for_good(self) -> bool:
        """A global breaker without an end time (drawdown) blocks every entry until an operator
        resets it — which a backtest never does."""
        trips = self.book_breakers.trips
        if trips is not self._bfg[0]:  # the answer only changes with the trips
            self._bfg = (trips, any(tr.until_ms is None and tr.symbol is None for tr in trips))
        return self._bfg[1]

    def _account_facts(self, t: int) -> list[OpenPositionFact]:
        """Open positions marked at the venue price at t (cached while nothing filled)."""
        key = (t, len(self.venue.fills), len(self.trades))
        if self._facts_key == key:
            return self._facts
        facts = []
        for sym in self.venue.held():
            vp = self.venue.position(sym)
            assert vp is not None
            s = self.by_symbol[sym]
            k = self._searchsorted(self._idx[sym], t - self.cfg.exec_tf_ms, right=True) - 1
            self.venue.on_price(sym, s.price_at(min(k, s.last)), t)
            facts.append(OpenPositionFact(sym, vp.side, vp.quantity, self.venue.last_price(sym)))
        self._facts_key, self._facts = key, facts
        return facts

    def _entry(self, si: SymbolInput, row: int, k: int, t: int, proposal: Proposal | None,
               rec: dict[str, Any]) -> None:
        v = self.venue
        facts = self._account_facts(t)
        v.on_price(si.symbol, si.price_at(k), t)  # a flat symbol: no effect on the equity
        # The equity only moves with the wallet (fills, funding) and the open positions' marks
        # (set for t by `_account_facts`): one figure per (t, fills, trades, cash events).
        qkey = (t, len(v.fills), len(self.trades), len(v.cash_events))
        if self._equity_key != qkey:
            self._equity_key, self._equity = qkey, v.equity()
        equity = self._equity
        # Feeding the same (t, equity) again to the book that call returned changes nothing (its
        # expiries, day roll, peak and trips were all applied by that call): skipped.
        if self._equity_fed != (t, equity) or self._equity_book is not self.book_breakers:
            self.book_breakers, evs = brk.on_equity(self.book_breakers, equity, t, self.cfg.risk_policy.breakers)
            self._equity_fed, self._equity_book = (t, equity), self.book_breakers
            if evs:
                self._breaker_events(evs)
        while self.recent_opens and self.recent_opens[0] <= t - 3_600_000:
            del self.recent_opens[0]  # only the last hour's opens count (max opens per hour)
        # Opens, exits and positions only change with a fill or a closed trade: the exposure state
        # built for this (t, fills, trades) serves every symbol deciding at t.
        ekey = (t, len(v.fills), len(self.trades), len(self.recent_opens))
        if self._exposure_key != ekey:
            self._exposure_key, self._exposure = ekey, exposure_state(facts, self.recent_opens, self.last_exit, t)
        exposure = self._exposure
        side = Side.LONG if int(si.dec_code[row]) > 0 else Side.SHORT
        # The risk verdict's own breaker and exposure checks, done first because they are cheap:
        # when they block, `evaluate` could only reject too.
        blocking = brk.entry_block_reasons(self.book_breakers, si.symbol, t) + \
            exposure_check(si.symbol, side if proposal is None else (proposal.action.side or side), equity, t,
                           exposure, self.cfg.risk_policy.exposure)[0]
        if blocking:
            rec.update(verdict="rejected", reasons=list(blocking), quantity=0.0)
            return
        if proposal is None:
            proposal = rules_proposal(si.symbol, int(si.dec_code[row]), float(si.dec_conf[row]),
                                      float(si.dec_stop[row]), float(si.dec_tp[row]), float(si.close[k]), t,
                                      self.cfg.consensus)
            if proposal.action not in (Action.LONG, Action.SHORT):
                rec.update(verdict="hold", reasons=[proposal.reason], quantity=0.0)
                return
        ctx = risk_context(
            equity=equity, available=v.available(), now_ms=t, brackets=v.brackets_for(si.symbol),
            filters=si.filters, atr=_nan_none(float(si.dec_atr[row])),
            atr_pct_percentile=_nan_none(float(si.dec_atr_pctile[row])), regime=si.regime(row),
            funding_rate=si.funding_rate_at(t), exposure=exposure,
            breakers=self.book_breakers, policy=self.cfg.risk_policy)
        verdict = evaluate(proposal, ctx)
        rec.update(verdict=verdict.status, reasons=list(verdict.reasons), quantity=verdict.quantity)
        if not verdict.accepted or verdict.side is None or verdict.stop_price is None:
            return
        side = verdict.side
        lev = int(round(verdict.leverage or 1))
        brackets = v.brackets_for(si.symbol)
        notional = verdict.quantity * proposal.reference_price
        allowed = next((b.max_leverage for b in brackets if notional <= b.notional_cap), brackets[-1].max_leverage)
        if (proposal.reference_price - verdict.stop_price) * side.sign <= 0 or lev < 1 or lev > allowed or \
                lev > brackets[0].max_leverage:
            rec["outcome"] = "refused"
            return
        qty = v.floor_qty(si.symbol, verdict.quantity)
        if qty < si.filters.min_qty or qty <= 0 or qty * proposal.reference_price < si.filters.min_notional:
            rec["outcome"] = "refused"
            return
        v.set_leverage(si.symbol, lev)
        fill = v.market(si.symbol, open_order_side(side), qty, reduce_only=False, time_ms=t, reason="entry")
        if fill is None:
            rec["outcome"] = "rejected_by_venue"
            return
        rec["outcome"] = "opened"
        state = PositionState(
            symbol=si.symbol, side=side, entry_price=fill.price, quantity=fill.quantity,
            initial_quantity=fill.quantity, initial_stop=verdict.stop_price, stop_price=verdict.stop_price,
            take_profit=verdict.take_profit, leverage=float(lev), opened_ms=t, peak_price=fill.price,
            atr=_nan_none(float(si.dec_atr[row])), decision_id=f"{si.symbol}-{t}")
        book = Book(state, self._idx[si.symbol], k, fill.fee, verdict.risk_usd,
                    funding_from=len(v.funding_payments),
                    voters=self.voters_fn(si.symbol, row) if self.voters_fn else (RULES_VOTER,))
        self.books[si.symbol] = book
        self._seg_start[si.symbol] = t
        self.recent_opens.append(t)
        if not self._ensure_stop(si, book, t):
            return
        if verdict.take_profit is not None:
            v.place_take_profit(si.symbol, verdict.take_profit, fill.quantity)
        self._schedule(book)
