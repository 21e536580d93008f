"""`quorum backtest` refuses bad input with a clear error before any work is done."""

from __future__ import annotations

import gzip
from pathlib import Path

import pytest
from typer.testing import CliRunner

from quorum.backtest.request import BacktestInputError, BacktestRequest, load_market, parse_time, validate_request
from quorum.cli import app

T0 = 1_735_689_600_000  # 2025-01-01


def _write(dir_: Path, symbol: str, n: int = 50, tf_ms: int = 300_000) -> None:
    lines = ["timestamp_ms,open,high,low,close,volume"]
    for i in range(n):
        lines.append(f"{T0 + i * tf_ms},100,101,99,100.5,10")
    with gzip.open(dir_ / f"{symbol}-futures-5m.csv.gz", "wt") as fh:
        fh.write("\n".join(lines) + "\n")


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    _write(tmp_path, "BTCUSDT")
    return tmp_path


def _run(args: list[str]) -> tuple[int, str]:
    result = CliRunner().invoke(app, ["backtest", *args])
    return result.exit_code, result.output + (result.stderr if result.stderr_bytes is not None else "")


def test_missing_symbol_files(data_dir: Path, tmp_path: Path) -> None:
    code, out = _run(["--data", str(data_dir), "--symbols", "BTCUSDT,ETHUSDT", "--out", str(tmp_path / "o")])
    assert code == 2
    assert "ETHUSDT: no 5m candle file" in out
    assert not (tmp_path / "o").exists()


def test_start_after_end(data_dir: Path, tmp_path: Path) -> None:
    code, out = _run(["--data", str(data_dir), "--symbols", "BTCUSDT", "--start", "2025-02-01",
                      "--end", "2025-01-01", "--out", str(tmp_path / "o")])
    assert code == 2 and "is not before --end" in out
    assert not (tmp_path / "o").exists()


def test_decision_timeframe_not_multiple(data_dir: Path, tmp_path: Path) -> None:
    code, out = _run(["--data", str(data_dir), "--symbols", "BTCUSDT", "--decision-timeframe", "3m",
                      "--out", str(tmp_path / "o")])
    assert code == 2 and "not a multiple of the data timeframe 5m" in out


def test_empty_range(data_dir: Path, tmp_path: Path) -> None:
    code, out = _run(["--data", str(data_dir), "--symbols", "BTCUSDT", "--start", "2026-01-01",
                      "--end", "2026-02-01", "--out", str(tmp_path / "o")])
    assert code == 2 and "empty range" in out
    assert not (tmp_path / "o").exists()


def test_models_needs_flag(data_dir: Path) -> None:
    req = BacktestRequest(data_dir, ("BTCUSDT",), None, None, analyst="models")
    with pytest.raises(BacktestInputError, match="--allow-model-calls"):
        validate_request(req)


def test_bad_date_and_bad_file(data_dir: Path) -> None:
    with pytest.raises(BacktestInputError, match="not a date"):
        parse_time("yesterday", "start")
    assert parse_time("2025-01-01", "start") == T0
    assert parse_time("2025-01-01T00:05", "start") == T0 + 300_000
    with gzip.open(data_dir / "ETHUSDT-futures-5m.csv.gz", "wt") as fh:
        fh.write("timestamp_ms,open,high,low,close,volume\n" f"{T0},100,101,99,abc,1\n")
    with pytest.raises(BacktestInputError, match=r"ETHUSDT-futures-5m.csv.gz: line 2"):
        load_market(BacktestRequest(data_dir, ("ETHUSDT",), None, None))


def test_range_resolution_keeps_warmup(data_dir: Path) -> None:
    m = load_market(BacktestRequest(data_dir, ("BTCUSDT",), T0 + 10 * 300_000, None))
    assert m.start_ms == T0 + 10 * 300_000 and m.end_ms == T0 + 50 * 300_000
    assert m.first_index["BTCUSDT"] == 10 and len(m.candles["BTCUSDT"]) == 50


def test_cli_end_to_end_on_real_data(shared_data: Path, tmp_path: Path) -> None:
    out = tmp_path / "bt"
    code, text = _run(["--data", str(shared_data), "--symbols", "BTCUSDT,ETHUSDT", "--start", "2025-09-01",
                       "--end", "2025-09-08", "--out", str(out)])
    assert code == 0, text
    assert "analyst=rules" in text and "win_rate=" in text
    for name in ("summary.json", "trades.csv", "equity.csv", "report.html"):
        assert (out / name).is_file(), name
