"""Decisions and entries of the fast backtester (phase D): a mixin of `FastBacktest`.

A decision event asks the analyst's proposal (the rules analyst's precomputed signal, or a
precomputed table of another analyst's), closes an open position the proposal turns against
(and enters the other side at once: a reversal, as the engine does), or sizes and places an
entry through the same `evaluate` as the engine, with the account facts (marks, exposure, the
breakers' equity sample, correlation clusters, the Kelly record) built once per decision time.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from quorum.backtest.inputs import SymbolInput, _nan_none, cluster_schedule
from quorum.backtest.records import Book
from quorum.domain import breakers as brk
from quorum.domain.clusters import ClusterSchedule, clusters_can_bind
from quorum.domain.exits import consensus_close
from quorum.domain.exposure import exposure_check
from quorum.domain.fills import open_order_side
from quorum.domain.models import Action, ClosedTrade, ExitReason, PositionState, Proposal, Side
from quorum.domain.risk import TrackRecord, evaluate
from quorum.domain.rules import RULES_VOTER
from quorum.engine.shared import (
    LoopConfig,
    OpenPositionFact,
    exposure_state,
    risk_context,
    rules_proposal,
    wants_close,
)

if TYPE_CHECKING:
    from quorum.backtest.venue import BacktestVenue
    from quorum.domain.exit_policy import ExitPolicy

ProposalFn = Callable[[SymbolInput, int, int], Proposal]  # (input, decision row, T) -> proposal


class EntryDecisions:
    """Mixin of `quorum.backtest.fast.FastBacktest` (see the module docstring)."""

    if TYPE_CHECKING:  # what the loop provides
        inputs: list[SymbolInput]
        by_symbol: dict[str, SymbolInput]
        cfg: LoopConfig
        venue: BacktestVenue
        policy: dict[str, ExitPolicy]
        proposal_fn: ProposalFn | None
        voters_fn: Callable[[str, int], tuple[str, ...]] | None
        books: dict[str, Book]
        book_breakers: brk.BreakerBook
        _stalled: dict[int, int]
        recent_opens: list[int]
        last_exit: dict[str, int]
        trades: list[ClosedTrade]
        decisions: list[dict[str, Any]]
        _seg_start: dict[str, int]
        _facts_key: tuple[int, int, int] | None
        _facts: list[OpenPositionFact]
        _exposure_key: tuple[int, int, int, int] | None
        _exposure: Any
        _idx: dict[str, int]
        _bfg: tuple[tuple[brk.Trip, ...] | None, bool]
        _equity_fed: tuple[int, float] | None
        _equity_key: tuple[int, int, int, int] | None
        _equity: float
        _equity_book: brk.BreakerBook | None
        _clusters: ClusterSchedule | None
        _record_totals: tuple[int, int, int, float, float]
        _rl: list[tuple[list[int], list[int], list[int], list[int], list[float]]]

        def _push_decision(self, i: int, ptr: int) -> None: ...
        def _searchsorted(self, i: int, x: int, right: bool) -> int: ...
        def _market_close(self, si: SymbolInput, book: Book, reason: str, t: int) -> None: ...
        def _breaker_events(self, evs: tuple[brk.BreakerEvent, ...]) -> None: ...
        def _ensure_stop(self, si: SymbolInput, book: Book, t: int) -> bool: ...
        def _schedule(self, book: Book) -> None: ...

    def _decision_event(self, si: SymbolInput, i: int, ptr: int, t: int) -> None:
        book = self.books.get(si.symbol)
        rl = self._rl[i]
        row = rl[0][ptr]
        if book is None and self._blocked_for_good():
            self._stalled[i] = ptr  # no entry can pass until an operator resets the breaker: stop visiting
            return
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
            if not wants_close(proposal, book.state.side):
                return
            _, intents = consensus_close(book.state, t, price_now, self.policy[si.symbol])
            rec["outcome"] = "close" if intents else "close_blocked_min_hold"
            if intents:
                side = book.state.side
                self.venue.on_price(si.symbol, si.price_at(k), t)
                self._market_close(si, book, ExitReason.CONSENSUS_CLOSE.value, t)
                if proposal.action.side is not None:  # a reversal: the other side is entered now, like the engine
                    rec = {**rec, "reversal": "closed " + side.value}
                    self._entry(si, row, k, t, proposal, rec)
            self.decisions.append(rec)
            return
        if proposal.action is Action.CLOSE:
            return
        self._entry(si, row, k, t, proposal, rec)
        self.decisions.append(rec)

    def _blocked_for_good(self) -> bool:
        """A global breaker without an end time (drawdown) blocks every entry until an operator
        resets it — which a backtest never does, unless `breaker_reset_after_ms` simulates it."""
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

    def _clusters_at(self, t: int) -> tuple[frozenset[str], ...]:
        """The correlation clusters in force at t (those of its UTC day, from earlier closes)."""
        if self._clusters is None:
            self._clusters = cluster_schedule(self.inputs, self.cfg.risk_policy.exposure.correlation_threshold,
                                              self.cfg.exec_tf_ms)
        return self._clusters.at(t)

    def _track_record(self) -> TrackRecord | None:
        """The run's record so far (every trade closed by now) for the Kelly cap; None while
        KELLY_FRACTION is 0."""
        if self.cfg.risk_policy.kelly_fraction <= 0:
            return None
        folded, n, wins, won, lost = self._record_totals
        for tr in self.trades[folded:]:
            n += 1
            if tr.net_pnl > 0:
                wins, won = wins + 1, won + tr.net_pnl
            else:
                lost -= tr.net_pnl
        self._record_totals = (len(self.trades), n, wins, won, lost)
        return TrackRecord.from_totals(n, wins, won, lost)

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
            clusters = self._clusters_at(t) if clusters_can_bind(
                len(facts), self.cfg.risk_policy.exposure.max_positions_per_cluster) else ()
            self._exposure_key, self._exposure = ekey, exposure_state(facts, self.recent_opens, self.last_exit, t,
                                                                      clusters)
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
            breakers=self.book_breakers, policy=self.cfg.risk_policy, record=self._track_record())
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
