"""Fast backtest on real data slices: accounting identity, no lookahead, outputs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from quorum.backtest.outputs import read_trades
from quorum.backtest.runner import run_backtest, write_outputs
from quorum.domain.statistics import wilson_interval

from .conftest import market, settings

SYMS = ("BTCUSDT", "ETHUSDT", "SOLUSDT")


@pytest.fixture(scope="module")
def result(shared_data: Path):  # type: ignore[no-untyped-def]
    m = market(shared_data, SYMS, "2025-09-01", "2025-09-22")
    return run_backtest(m, settings())


def test_accounting_identity_to_the_cent(result) -> None:  # type: ignore[no-untyped-def]
    run = result.run
    s = result.summary
    assert s["trades"] > 10, "the slice must trade for the identity to mean something"
    net_sum = sum(t.net_pnl for t in run.trades)
    assert abs(s["final_equity"] - (s["initial_equity"] + net_sum)) < 0.005
    # the wallet is the sum of every cash movement (fills, fees, funding) ...
    assert abs(run.venue.wallet - (1000.0 + sum(d for _, d in run.venue.cash_events))) < 1e-6
    # ... every fee of every fill is in some trade, and so is every funding payment
    assert abs(sum(f.fee for f in run.fills) - sum(t.fees for t in run.trades)) < 0.005
    assert abs(sum(a for *_, a in run.venue.funding_payments) - sum(t.funding for t in run.trades)) < 0.005
    assert s["funding_paid"] != 0.0  # positions were held over funding times
    # each trade: net = gross - fees - funding
    for t in run.trades:
        assert abs(t.net_pnl - (t.gross_pnl - t.fees - t.funding)) < 1e-9
    # the mark-to-market curve ends flat at the final equity (all closed at the end)
    assert abs(result.equity[-1][1] - s["final_equity"]) < 0.005
    assert not run.venue.positions


def test_decisions_fill_at_next_bar_open(result, shared_data: Path) -> None:  # type: ignore[no-untyped-def]
    from quorum.market.data_files import load_candles

    btc = load_candles(shared_data / "BTCUSDT-futures-5m.csv.gz")
    opens = dict(zip(btc.open_ms.tolist(), btc.open.tolist(), strict=True))
    entries = [f for f in result.run.fills if f.symbol == "BTCUSDT" and f.reason == "entry"]
    assert entries
    for f in entries:
        ref = opens[f.time_ms]  # the bar that OPENS at the decision time
        assert f.time_ms % (15 * 60_000) == 0
        slip = abs(f.price / ref - 1.0)
        assert slip < 0.0005, (f, ref)  # the open plus slippage, not the signal bar's close


def test_no_lookahead_truncated_run_makes_the_same_decisions(shared_data: Path) -> None:
    full = run_backtest(market(shared_data, SYMS, "2025-09-01", "2025-09-29"), settings())
    cut_ms = 1_758_240_000_000  # 2025-09-19 00:00 UTC
    cut = run_backtest(market(shared_data, SYMS, "2025-09-01", "2025-09-19"), settings())
    before_full = [d for d in full.run.decisions if d["time_ms"] < cut_ms]
    assert len(before_full) > 20
    assert cut.run.decisions == before_full
    tf = 300_000
    fills_full = [(f.symbol, f.time_ms, f.price, f.quantity, f.fee) for f in full.run.fills if f.time_ms < cut_ms - tf]
    fills_cut = [(f.symbol, f.time_ms, f.price, f.quantity, f.fee) for f in cut.run.fills if f.time_ms < cut_ms - tf]
    assert fills_cut == fills_full


def test_outputs_written(result, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    write_outputs(result, tmp_path)
    summary = json.loads((tmp_path / "summary.json").read_text())
    for key in ("trades", "wins", "losses", "win_rate", "win_rate_ci95", "profit_factor", "expectancy_usd",
                "expectancy_r", "avg_win_usd", "avg_loss_usd", "max_drawdown_pct", "sharpe", "sortino", "calmar",
                "total_return_pct", "initial_equity", "final_equity", "fees_paid", "funding_paid",
                "bars_processed", "seconds", "analyst"):
        assert key in summary, key
    assert summary["analyst"] == "rules"
    assert summary["win_rate_ci95"] == pytest.approx(list(wilson_interval(summary["wins"], summary["trades"])))
    rows = read_trades(tmp_path / "trades.csv")
    assert len(rows) == summary["trades"]
    assert abs(sum(float(r["net_pnl"]) for r in rows) + summary["initial_equity"] - summary["final_equity"]) < 0.005
    assert all(r["decision_id"] and r["exit_reason"] for r in rows)
    eq_lines = (tmp_path / "equity.csv").read_text().splitlines()
    assert eq_lines[0] == "time,time_ms,equity" and len(eq_lines) > 1000
    html = (tmp_path / "report.html").read_text()
    assert "analyst: rules" in html and "By symbol" in html and "By exit reason" in html
    assert "<script src=\"http" not in html  # plotly is embedded: the file opens offline
    assert html.count("plotly.js v") <= 2  # embedded once
    assert set(summary["breakdowns"]) == {"symbol", "side", "hour", "exit_reason", "voter"}


def test_a_run_without_trades_writes_honest_outputs(shared_data: Path, tmp_path: Path) -> None:
    res = run_backtest(market(shared_data, ("BTCUSDT",), "2025-09-01T00:00", "2025-09-01T00:10"), settings())
    write_outputs(res, tmp_path)
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["trades"] == 0 and summary["win_rate"] is None and summary["profit_factor"] is None
    assert summary["final_equity"] == summary["initial_equity"] and summary["win_rate_ci95"] == [0.0, 1.0]
    assert read_trades(tmp_path / "trades.csv") == []
    assert (tmp_path / "report.html").stat().st_size > 1000
