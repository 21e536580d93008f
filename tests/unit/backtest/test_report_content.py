"""report.html tells the whole truth (issue 14, item 10): months aligned and none outside the record,
a price chart per traded symbol with its entries and exits, every trade in a table, gains and losses
readable without colour, the halts / warm-up / data-quality / contamination sections from the
summary (and nothing when the summary has none), and a 14-month, 6-symbol report of a few MB."""

from __future__ import annotations

import re
import time

import numpy as np

from quorum.backtest.report import render_report
from quorum.backtest.report_charts import PRICE_BUCKETS
from quorum.domain.models import Side
from quorum.domain.statistics import monthly_returns
from tests.unit.backtest.report_page import BAR, figures, flat_equity, ms, trade, values

DAY = 86_400_000


def _month(key: str) -> tuple[int, int]:
    y, m = int(key[:4]), int(key[5:])
    return ms(f"{y:04d}-{m:02d}-01"), ms(f"{y + m // 12:04d}-{m % 12 + 1:02d}-01")


def test_a_record_ending_at_midnight_on_the_1st_has_no_extra_month() -> None:
    # the last bar closes at 2025-03-01 00:00: that equity closes February, it does not open March
    equity = flat_equity(ms("2025-01-01"), ms("2025-03-01"))
    assert list(monthly_returns(equity, 1000.0)) == ["2025-01", "2025-02"]


def test_each_month_bar_lies_inside_its_month_and_the_record() -> None:
    start, end = ms("2025-01-15"), ms("2025-04-01")
    summary = {"initial_equity": 1000.0, "start_ms": start, "end_ms": end}
    trades = [trade("BTCUSDT", ms("2025-01-20"), ms("2025-01-21"), 4.0)]  # February and March: no trade
    page = render_report(summary, flat_equity(start, end), {}, trades=trades)
    (bars,), layout = figures(page)[2]
    assert layout["title"]["text"].startswith("Monthly returns")
    assert layout["xaxis"]["type"] == "date" and layout["xaxis"]["range"] == [start, end]  # nothing outside
    xs, widths = values(bars["x"]), values(bars["width"])
    labels = [h.split(":")[0] for h in bars["customdata"]]
    assert labels == ["2025-01", "2025-02", "2025-03"]  # no empty month (April would be the old bug)
    for key, x, w in zip(labels, xs, widths, strict=True):
        lo, hi = _month(key)
        assert max(lo, start) <= x - w / 2 < x + w / 2 <= min(hi, end), key
    assert "15 Jan 00:00 → 01 Feb 00:00" in bars["customdata"][0]  # the partial month says so
    assert "1 trade closed" in bars["customdata"][0] and "0 trades closed" in bars["customdata"][1]
    assert all(t.startswith("▲ +") for t in bars["text"])  # the equity rose every month


def test_a_price_chart_per_traded_symbol_with_its_entries_and_exits() -> None:
    start = ms("2025-01-01")
    t = np.arange(start + BAR, start + 20_000 * BAR + 1, BAR, dtype=np.int64)
    close = 100.0 + np.sin(np.arange(len(t)) / 50.0)
    close[12_345] = 250.0  # a one-bar spike survives the thinning
    prices = {s: (t, close) for s in ("BTCUSDT", "ETHUSDT", "XRPUSDT")}
    trades = [trade("BTCUSDT", start + 10 * BAR, start + 30 * BAR, 3.0),
              trade("BTCUSDT", start + 500 * BAR, start + 700 * BAR, -2.0, side=Side.SHORT, reason="stop_loss"),
              trade("ETHUSDT", start + 900 * BAR, start + 950 * BAR, -1.0)]
    page = render_report({"initial_equity": 1000.0}, flat_equity(start, int(t[-1])), {}, trades=trades,
                         prices=prices)
    charts = {layout["title"]["text"].split(":")[0]: data for data, layout in figures(page)[3:]}
    assert sorted(charts) == ["BTCUSDT", "ETHUSDT"]  # XRPUSDT was not traded
    assert "no trade on XRPUSDT, so no chart" in page
    line = charts["BTCUSDT"][0]
    ys = values(line["y"])
    assert len(ys) <= 2 * PRICE_BUCKETS + 4 and max(ys) == 250.0 and min(ys) == close.min()
    traces = {tr["name"]: tr for tr in charts["BTCUSDT"]}
    assert values(traces["long entry"]["x"]) == [start + 10 * BAR]
    assert values(traces["short entry"]["x"]) == [start + 500 * BAR]
    assert values(traces["exit, gain"]["x"]) == [start + 30 * BAR]
    assert values(traces["exit, loss"]["x"]) == [start + 700 * BAR]
    assert traces["long entry"]["marker"]["symbol"] != traces["short entry"]["marker"]["symbol"]
    hover = traces["exit, loss"]["hovertext"][0]
    assert "SHORT exit" in hover and "stop_loss" in hover and "▼ -2.00 USDT" in hover
    assert "▲ +3.00 USDT" in traces["long entry"]["hovertext"][0]


def test_without_prices_the_page_says_why() -> None:
    start = ms("2025-01-01")
    page = render_report({"initial_equity": 1000.0}, flat_equity(start, start + DAY), {},
                         trades=[trade("BTCUSDT", start + BAR, start + 2 * BAR, 1.0)])
    assert "Price charts are not part of this report: no price history was given" in page
    assert len(figures(page)) == 3


def test_the_trades_table_has_one_row_per_trade_and_signs_its_results() -> None:
    start = ms("2025-01-01")
    trades = [trade("BTCUSDT", start + i * BAR, start + (i + 1) * BAR, 2.5 if i % 3 else -1.25) for i in range(250)]
    page = render_report({"initial_equity": 1000.0}, flat_equity(start, start + 300 * BAR), {}, trades=trades)
    table = page.split("<h3>Trades (250, net of fees and funding)</h3>")[1].split("</table>")[0]
    body = table.split("<tbody>")[1]
    assert body.count("<tr>") == 250
    assert body.count('<td class="g">▲ +2.5000</td>') == 166 and body.count('<td class="l">▼ -1.2500</td>') == 84
    assert 'class="sortable"' in table and "<script>" in page.split(table)[1]  # the sorting is inline


def _top(page: str) -> str:
    """The page up to the headline figures."""
    return page.split("<th>Analyst</th>")[0]


def test_halts_flags_and_contamination_come_first_and_only_when_present() -> None:
    start, end = ms("2025-01-01"), ms("2025-02-01")
    base = {"analyst": "rules", "initial_equity": 1000.0, "start_ms": start, "end_ms": end, "trades": 0}
    plain = render_report(base, flat_equity(start, end), {})
    for marker in ('id="halts"', 'id="data-flags"', 'id="contaminated"', 'id="warmup"', "Halts", "Contaminated"):
        assert marker not in plain, marker

    flags = [{"file": "BTCUSDT-futures-5m.csv.gz", "symbol": "BTCUSDT", "timeframe": "5m", "kind": "gap",
              "time": f"2025-01-{1 + i % 28:02d}T00:00:00Z", "value": i, "detail": "3 bars missing"}
             for i in range(250)]
    summary = {**base,
               "contaminated": ["replayed votes recorded after the period"],
               "halts": [{"breaker": "loss_streak", "symbol": None, "from": "2025-01-02T00:00:00Z",
                          "to": "2025-01-02T04:00:00Z", "reason": "4 losses in a row", "simulated_reset": False},
                         {"breaker": "drawdown", "symbol": None, "from": "2025-01-02T12:00:00Z", "to": None,
                          "reason": "drawdown 20.1% from peak 1030.8", "simulated_reset": False},
                         {"breaker": "symbol_cooldown", "symbol": "ETHUSDT", "from": "2025-01-03T00:00:00Z",
                          "to": "2025-01-03T06:00:00Z", "reason": "cool-down", "simulated_reset": False}],
               "active_fraction": 0.05, "max_drawdown_between_resets_pct": 20.1,
               "effective_start": "2025-01-01T00:00:00Z",
               "warmup": {"timeframe": "4h", "longest_indicator": "ema200_slope", "bars": 205,
                          "start_moved_by_ms": 34 * DAY},
               "data_flags": flags}
    page = render_report(summary, flat_equity(start, end), {})
    top = _top(page)
    order = [top.index(m) for m in ('id="contaminated"', 'id="halts"', 'id="warmup"', 'id="data-flags"')]
    assert order == sorted(order)  # banner, halts, warm-up, flags — all before the headline figures
    assert "replayed votes recorded after the period" in top
    lead = top.split('<ul class="halts">')[1].split("</ul>")[0]
    assert lead.count("<li>") == 1  # the long halt is stated first; the short ones are in the full list
    assert "Drawdown breaker halted new entries from 2025-01-02 12:00 to the end: 29.5 days, 95 % of the period" in lead
    assert "Symbol cooldown breaker halted new entries on ETHUSDT" in top and "every halt (3" in top
    assert "allowed during <strong>5.0 %</strong>" in top and "between (simulated) resets: 20.10 %" in top
    assert "ema200_slope on 4h, needs 205 bars" in top and "start moved by 34.0 days" in top
    section = top.split('id="data-flags"')[1].split("</section>")[0]
    assert "Data-quality flags: 250 (250 gap)" in section
    assert section.count("<tr>") == 201 and "… and 50 more" in section
    eq_layout = figures(page)[0][1]
    assert len(eq_layout["shapes"]) == 2  # the halts of every symbol are shaded on the equity chart

    none = render_report({**base, "halts": [], "data_flags": [], "contaminated": []}, flat_equity(start, end), {})
    assert "No breaker halted new entries." in _top(none) and "Data-quality flags: none" in _top(none)
    assert 'id="contaminated"' not in none


def test_a_14_month_6_symbol_report_stays_a_few_mb() -> None:
    start, end = ms("2025-01-01"), ms("2026-03-01")
    t = np.arange(start + BAR, end + 1, BAR, dtype=np.int64)  # 121,000 bars per symbol
    rng = np.random.default_rng(7)
    symbols = ("BTCUSDT", "ETHUSDT", "SOLUSDT", "BNBUSDT", "XRPUSDT", "DOGEUSDT")
    prices = {s: (t, 100.0 * np.exp(np.cumsum(rng.normal(0, 0.002, len(t))))) for s in symbols}
    trades = []
    for i in range(3000):
        k = int(rng.integers(0, len(t) - 50))
        s = symbols[i % 6]
        trades.append(trade(s, int(t[k]), int(t[k + 40]), float(rng.normal(0, 3)), price=float(prices[s][1][k]),
                            side=Side.LONG if i % 2 else Side.SHORT))
    trades.sort(key=lambda x: x.exit_ms)
    equity = flat_equity(start, end)
    began = time.perf_counter()
    page = render_report({"initial_equity": 1000.0, "start_ms": start, "end_ms": end}, equity, {},
                         trades=trades, prices=prices)
    seconds = time.perf_counter() - began
    size = len(page.encode())
    print(f"report: {size / 1e6:.2f} MB in {seconds:.2f} s")  # shown with -s
    assert size < 8_000_000  # plotly's own JavaScript is 4.8 MB of it
    assert len(figures(page)) == 3 + 6
    assert re.findall(r"<h3>Trades \((\d+),", page) == ["3000"]
    assert seconds < 60  # generous: a shared CI machine; about 3 s measured
