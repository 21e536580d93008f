"""Funding at the instant (issue 14, item 4): a position pays the funding of time T iff it is open
at T. Fills at T come just after T: an entry filled at T does not pay T's funding, a close or
reduce filled at T (or a stop triggered on the bar opening at T) pays it on the quantity held
before the fill.

Every case runs through both drivers of the paper venue's books: the paper engine's order of calls
on a `PaperBook` (the bar closing at t, then the price at t, then the orders at t) and the
backtester's `BacktestVenue` (as `FastBacktest._venue_bar` and its market orders call it). No fees,
no slippage, so every figure is the funding alone: quantity × price at T × rate (+ = paid)."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from quorum.backtest.venue import BacktestVenue
from quorum.domain.fills import FillModel
from quorum.domain.models import Candle, SymbolFilters
from quorum.execution.exchange import OrderRequest
from quorum.execution.paper_book import PaperBook

SYM = "BTCUSDT"
H8 = 8 * 3_600_000
T = 1_767_225_600_000  # 2026-01-01 00:00 UTC, a funding time
TF = 300_000
FREE = FillModel(0.0, 0.0, 0.0, 0.0)  # no fee, no slippage
FILTERS = SymbolFilters(SYM, 0.01, 0.001, 0.001, 5.0)
RATES = {T: 0.001, T + H8: 0.002}
WALLET = 10_000.0


def rate(symbol: str, t: int) -> float | None:
    return RATES.get(t)


class EngineDriver:
    """The paper engine's calls: `PaperExchange.on_bar` for the bar closing at t, the feed's
    price at t (`on_price`), then the orders at t (`create_order`)."""

    def __init__(self) -> None:
        self.book = PaperBook(model=FREE, wallet=WALLET, funding_rate=None, rates=rate)
        self._n = 0

    def start(self, t: int, price: float) -> None:
        self.book.on_price(SYM, price, t)
        self.book.set_leverage(SYM, 5)  # liquidation far from every price here

    def step(self, t: int, bar: Candle, price_at_t: float) -> None:
        self.book.on_bar(SYM, bar, t)
        self.book.on_price(SYM, price_at_t, t)

    def market(self, side: str, qty: float, t: int, *, reduce: bool = False) -> None:
        self._n += 1
        self.book.create_order(OrderRequest(f"m{self._n}", SYM, side, "market", qty, None, reduce), FILTERS, t)

    def stop(self, side: str, price: float, qty: float) -> None:
        self._n += 1
        self.book.create_order(OrderRequest(f"s{self._n}", SYM, side, "stop_market", qty, price, True), FILTERS,
                               None)

    def funding(self) -> list[tuple[int, float, float, float]]:
        return [(f.time_ms, f.amount, f.quantity or 0.0, f.mark_price or 0.0)
                for f in self.book.funding_history(None, None)]

    @property
    def wallet(self) -> float:
        return self.book.wallet

    def holding(self) -> float:
        pos = self.book.positions.get(SYM)
        return 0.0 if pos is None else pos.quantity


class BacktestDriver:
    """The backtester's calls: `BacktestVenue.funded_until` / `on_bar` / `on_price` as
    `FastBacktest._venue_bar` makes them, and its market orders and stops."""

    def __init__(self) -> None:
        self.venue = BacktestVenue(FREE, WALLET, {SYM: FILTERS}, funding_source=rate, funding_rate=None)

    def start(self, t: int, price: float) -> None:
        self.venue.on_price(SYM, price, t)
        self.venue.set_leverage(SYM, 5)

    def step(self, t: int, bar: Candle, price_at_t: float) -> None:
        self.venue.funded_until(SYM, bar.open_ms - TF)
        self.venue.on_bar(SYM, bar.open_ms, bar.open, bar.high, bar.low, bar.close, TF)
        self.venue.on_price(SYM, price_at_t, t)

    def market(self, side: str, qty: float, t: int, *, reduce: bool = False) -> None:
        assert self.venue.market(SYM, side, qty, reduce_only=reduce, time_ms=t, reason="test") is not None

    def stop(self, side: str, price: float, qty: float) -> None:
        assert self.venue.place_stop(SYM, price, qty)

    def funding(self) -> list[tuple[int, float, float, float]]:
        rows = {(f.time_ms, f.amount, f.quantity, f.mark_price) for f in self.venue.book.funding.values()}
        # the backtest's own record of the payments says the same
        assert sorted((t, a) for _, t, a in self.venue.funding_payments) == sorted((t, a) for t, a, _, _ in rows)
        return sorted(rows)

    @property
    def wallet(self) -> float:
        return self.venue.wallet

    def holding(self) -> float:
        p = self.venue.position(SYM)
        return 0.0 if p is None else p.quantity


Driver = EngineDriver | BacktestDriver
Action = Callable[[Driver, int], None]


@pytest.fixture(params=["engine", "backtest"])
def venue(request: pytest.FixtureRequest) -> Driver:
    return EngineDriver() if request.param == "engine" else BacktestDriver()


def run(d: Driver, start: int, end: int, actions: dict[int, Action], bars: dict[int, tuple[float, ...]] | None = None,
        flat: float = 100.0) -> None:
    """Every 5m close t in (start, end]: the bar closing at t (OHLC from `bars` by open time, else
    flat), the price at t (the open of the bar opening at t), then `actions[t]`."""
    bars = bars or {}

    def ohlc(open_ms: int) -> tuple[float, ...]:
        return bars.get(open_ms, (flat, flat, flat, flat))

    d.start(start, ohlc(start)[0])
    if start in actions:
        actions[start](d, start)
    for t in range(start + TF, end + 1, TF):
        o, h, lo, c = ohlc(t - TF)
        d.step(t, Candle(t - TF, o, h, lo, c, 0.0), ohlc(t)[0])
        if t in actions:
            actions[t](d, t)


def test_entry_filled_at_the_funding_time_does_not_pay_it(venue: Driver) -> None:
    run(venue, T - 3 * TF, T + 12 * TF, {T: lambda d, t: d.market("buy", 2.0, t)})
    assert venue.holding() == 2.0
    assert venue.funding() == []  # opened just after T's funding
    assert venue.wallet == WALLET
    # the next funding time it is held at: 2 × 100 × 0.002 = 0.4
    run(venue, T + 12 * TF, T + H8 + TF, {})
    assert venue.funding() == [(T + H8, pytest.approx(0.4), 2.0, 100.0)]
    assert venue.wallet == pytest.approx(WALLET - 0.4)


@pytest.mark.parametrize(("side", "paid"), [("buy", 0.204), ("sell", -0.204)])
def test_entry_one_bar_before_pays_at_the_price_at_the_funding_time(venue: Driver, side: str, paid: float) -> None:
    # the bar closing at T closes at 101, the bar opening at T opens at 102: the price at T is 102
    bars = {T - TF: (100.0, 101.0, 100.0, 101.0), T: (102.0, 102.0, 102.0, 102.0)}
    run(venue, T - 3 * TF, T + 6 * TF, {T - TF: lambda d, t: d.market(side, 2.0, t)}, bars, flat=102.0)
    # 2 × 102 × 0.001 = 0.204: a long pays it, a short receives it
    assert venue.funding() == [(T, pytest.approx(paid), 2.0, 102.0)]
    # bought or sold at 100 (the open of the bar opening at T − 5m); no fee, so the wallet moved by the funding only
    assert venue.wallet == pytest.approx(WALLET - paid)


def test_market_close_filled_at_the_funding_time_pays_it(venue: Driver) -> None:
    bars = {T: (102.0, 102.0, 102.0, 102.0)}
    run(venue, T - 3 * TF, T + 6 * TF, {T - TF: lambda d, t: d.market("buy", 2.0, t),
                                        T: lambda d, t: d.market("sell", 2.0, t, reduce=True)}, bars)
    assert venue.holding() == 0.0
    # held at T: 2 × 102 × 0.001 = 0.204; closed just after it at 102: +2 × (102 − 100) = +4
    assert venue.funding() == [(T, pytest.approx(0.204), 2.0, 102.0)]
    assert venue.wallet == pytest.approx(WALLET + 4.0 - 0.204)


def test_stop_triggered_on_the_bar_opening_at_the_funding_time_pays_it(venue: Driver) -> None:
    def enter(d: Driver, t: int) -> None:
        d.market("buy", 2.0, t)
        d.stop("sell", 95.0, 2.0)

    bars = {T: (100.0, 100.0, 90.0, 92.0)}  # opens at 100 at T, falls through the stop at 95
    run(venue, T - 3 * TF, T + 3 * TF, {T - TF: enter}, bars)
    assert venue.holding() == 0.0
    # held at T: 2 × 100 × 0.001 = 0.2; stopped at 95: 2 × (95 − 100) = −10
    assert venue.funding() == [(T, pytest.approx(0.2), 2.0, 100.0)]
    assert venue.wallet == pytest.approx(WALLET - 10.0 - 0.2)


def test_partial_reduce_at_the_funding_time_pays_on_the_quantity_before_it(venue: Driver) -> None:
    run(venue, T - 3 * TF, T + H8 + TF, {T - TF: lambda d, t: d.market("buy", 3.0, t),
                                         T: lambda d, t: d.market("sell", 1.0, t, reduce=True)},
        {T - TF: (100.0, 100.0, 100.0, 100.0)}, flat=102.0)
    assert venue.holding() == 2.0
    # at T on the 3 held before the reduce: 3 × 102 × 0.001 = 0.306; at T + 8 h on the 2 left:
    # 2 × 102 × 0.002 = 0.408; the reduce realised 1 × (102 − 100) = +2
    assert venue.funding() == [(T, pytest.approx(0.306), 3.0, 102.0), (T + H8, pytest.approx(0.408), 2.0, 102.0)]
    assert venue.wallet == pytest.approx(WALLET + 2.0 - 0.306 - 0.408)


def test_position_held_across_two_funding_times_pays_both(venue: Driver) -> None:
    bars = {T + H8: (110.0, 110.0, 110.0, 110.0)}
    run(venue, T - 3 * TF, T + H8 + 2 * TF, {T - TF: lambda d, t: d.market("sell", 2.0, t)}, bars)
    # a short receives: −(2 × 100 × 0.001) = −0.2 at T, −(2 × 110 × 0.002) = −0.44 at T + 8 h
    assert venue.funding() == [(T, pytest.approx(-0.2), 2.0, 100.0), (T + H8, pytest.approx(-0.44), 2.0, 110.0)]
    assert venue.wallet == pytest.approx(WALLET + 0.2 + 0.44)


def test_the_bar_opening_at_the_funding_time_settles_it_without_a_price_at_t(venue: Driver) -> None:
    """The backtest's light funding event shows the venue only the bar opening at T (no price at T
    first): the same payment, at that bar's open."""
    run(venue, T - 3 * TF, T - TF, {T - TF: lambda d, t: d.market("buy", 2.0, t)})
    o = 103.0
    if isinstance(venue, EngineDriver):
        venue.book.on_bar(SYM, Candle(T, o, o, o, o, 0.0), T + TF)
    else:
        venue.venue.on_bar(SYM, T, o, o, o, o, TF)
    assert venue.funding() == [(T, pytest.approx(2 * 103.0 * 0.001), 2.0, 103.0)]


def test_a_fill_timed_at_the_funding_time_settles_it_first_at_the_last_price() -> None:
    """An order filled at T before the venue saw any price at T (a clock-timed order) still comes
    after T's funding, charged at the last price the venue has (the close of the bar ending at T)."""
    d = EngineDriver()
    run(d, T - 3 * TF, T - TF, {T - TF: lambda d, t: d.market("buy", 2.0, t)})
    d.book.on_bar(SYM, Candle(T - TF, 100.0, 101.0, 100.0, 101.0, 0.0), T)  # no on_price at T
    d.market("sell", 2.0, T, reduce=True)
    # 2 × 101 × 0.001 = 0.202; sold at 101: +2
    assert d.funding() == [(T, pytest.approx(0.202), 2.0, 101.0)]
    assert d.wallet == pytest.approx(WALLET + 2.0 - 0.202)


def test_a_refused_order_keeps_the_funding_it_settled() -> None:
    """Funding due by an order's time is settled even when the venue refuses the order (it was
    due anyway); the refusal changes nothing else."""
    d = EngineDriver()
    run(d, T - 3 * TF, T - TF, {T - TF: lambda d, t: d.market("buy", 2.0, t)})
    d.book.changes()
    with pytest.raises(Exception, match="reduce-only"):
        d.market("buy", 1.0, T, reduce=True)  # a reduce-only buy does not reduce a long
    assert d.funding() == [(T, pytest.approx(0.2), 2.0, 100.0)]
    changed = d.book.changes()
    assert [f.time_ms for f in changed.funding] == [T] and changed.orders == [] and changed.trades == []
