"""CORRELATION_THRESHOLD / MAX_POSITIONS_PER_CLUSTER and KELLY_FRACTION change what `quorum
backtest` does (the real CLI in a subprocess, real BTC/ETH data, the trades it writes):

- with a cluster limit of 1 at threshold 0.5, BTC and ETH are never held in the same direction at
  once, where the defaults (threshold 0.8, 2 per cluster) let them overlap;
- with KELLY_FRACTION > 0 every entry is the same until 30 trades have closed, then the strategy's
  own record caps the size."""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from pathlib import Path

import pytest

ARGS = ["--symbols", "BTCUSDT,ETHUSDT", "--start", "2025-03-01", "--end", "2025-04-01"]


def backtest(data: Path, out: Path, **env: str) -> list[dict[str, str]]:
    """Run `quorum backtest` with extra settings in its environment; its trades, by entry time."""
    run = subprocess.run([sys.executable, "-m", "quorum", "backtest", "--data", str(data), *ARGS, "--out", str(out)],
                         cwd=out.parent, env={**os.environ, "LOG_LEVEL": "WARNING", **env}, capture_output=True,
                         text=True, timeout=300, check=False)
    assert run.returncode == 0, run.stderr[-2000:]
    with open(out / "trades.csv", newline="") as fh:
        return sorted(csv.DictReader(fh), key=lambda r: (int(r["entry_ms"]), r["symbol"]))


def same_direction_overlaps(trades: list[dict[str, str]], same: bool = True) -> int:
    """BTC/ETH pairs of trades open at the same time in the same direction (or opposite ones)."""
    btc = [t for t in trades if t["symbol"] == "BTCUSDT"]
    eth = [t for t in trades if t["symbol"] == "ETHUSDT"]
    return sum(1 for b in btc for e in eth if (b["side"] == e["side"]) is same
               and int(b["entry_ms"]) < int(e["exit_ms"]) and int(e["entry_ms"]) < int(b["exit_ms"]))


@pytest.fixture(scope="module")
def default_trades(shared_data: Path, tmp_path_factory: pytest.TempPathFactory) -> list[dict[str, str]]:
    return backtest(shared_data, tmp_path_factory.mktemp("default") / "out")


def test_cluster_limit_leaves_no_same_direction_btc_eth_overlap(
        shared_data: Path, tmp_path: Path, default_trades: list[dict[str, str]]) -> None:
    assert same_direction_overlaps(default_trades) > 10  # the defaults let BTC and ETH overlap
    limited = backtest(shared_data, tmp_path / "out", CORRELATION_THRESHOLD="0.5", MAX_POSITIONS_PER_CLUSTER="1")
    assert len(limited) > 30
    assert same_direction_overlaps(limited) == 0
    # opposite directions are not limited by the cluster
    assert same_direction_overlaps(limited, same=False) > 0


def test_kelly_fraction_sizes_from_the_record_after_30_trades(
        shared_data: Path, tmp_path: Path, default_trades: list[dict[str, str]]) -> None:
    kelly = backtest(shared_data, tmp_path / "out", KELLY_FRACTION="0.1")
    t30 = sorted(int(t["exit_ms"]) for t in default_trades)[29]  # the 30th trade closes
    fields = ("symbol", "side", "entry_ms", "quantity", "risk_usd")

    def before(trades: list[dict[str, str]]) -> list[tuple[str, ...]]:
        return [tuple(t[f] for f in fields) for t in trades if int(t["entry_ms"]) < t30]

    assert len(before(default_trades)) >= 30 and before(kelly) == before(default_trades)  # too few trades: no cap
    d_after = [tuple(t[f] for f in fields) for t in default_trades if int(t["entry_ms"]) >= t30]
    k_after = [tuple(t[f] for f in fields) for t in kelly if int(t["entry_ms"]) >= t30]
    assert k_after != d_after
    # the first entry sized differently: the same signal, a smaller quantity and risk (the Kelly bound
    # from the record is below the risk budget there)
    i = next(i for i, (k, d) in enumerate(zip(k_after, d_after, strict=False)) if k != d)
    assert k_after[i][:3] == d_after[i][:3]
    assert float(k_after[i][3]) < float(d_after[i][3]) and float(k_after[i][4]) < 0.8 * float(d_after[i][4])
