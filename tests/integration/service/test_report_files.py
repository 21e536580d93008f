"""`quorum report --html OUT`, `--csv OUT` and the by-hour table, driven through the CLI process on
the database of a real paper run (`quorum demo`: one day of three symbols on the bundled data)."""

from __future__ import annotations

import csv
import os
import re
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import pytest

from quorum.api.runner import run_demo
from tests.conftest import ADMIN_URL, _db_url
from tests.integration.service.conftest import make_settings

ROOT = Path(__file__).resolve().parents[3]


@pytest.fixture(scope="module")
async def paper_record() -> AsyncIterator[str]:
    """The database of a finished `quorum demo` (its paper record), dropped afterwards."""
    name = f"quorum_report_{uuid.uuid4().hex[:8]}"
    settings = make_settings(database_url=ADMIN_URL, telegram_bot_token=None)
    try:
        code = await run_demo(settings, data_dir=str(ROOT / "data"), symbols="BTCUSDT,ETHUSDT,SOLUSDT", speed=0.0,
                              port=0, keep_serving_s=0.0, days=1.0, database=name)
        assert code == 0
        yield _db_url(name)
    finally:
        admin = await asyncpg.connect(ADMIN_URL)
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


def quorum(args: list[str], url: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "DATABASE_URL": url, "LOG_LEVEL": "WARNING"}
    return subprocess.run([sys.executable, "-m", "quorum", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=120, check=False)


async def _fetch(url: str, sql: str) -> list[asyncpg.Record]:
    conn = await asyncpg.connect(url)
    try:
        return list(await conn.fetch(sql))
    finally:
        await conn.close()


async def test_html_report_of_the_paper_record(paper_record: str, tmp_path: Path) -> None:
    out = tmp_path / "paper.html"
    run = quorum(["report", "--html", str(out)], paper_record, tmp_path)
    assert run.returncode == 0, run.stderr
    trades = await _fetch(paper_record, "SELECT * FROM closed_trades WHERE mode = 'paper' ORDER BY closed_at")
    assert len(trades) >= 3
    assert f"wrote {out}" in run.stdout
    text = out.read_text(encoding="utf-8")
    assert "<h1>Quorum paper record</h1>" in text and "Equity (USDT, marked to market)" in text
    assert "Drawdown (%)" in text
    for table in ("By symbol", "By side", "By voter", "By hour", "By day", "By exit reason"):
        assert f"<h3>{table}</h3>" in text, table
    body = text.split(f"<h3>Trades ({len(trades)}, net of fees and funding)</h3>")[1]
    assert body.count("<tr>") == len(trades) + 1  # header + one row per closed trade
    for t in trades:
        assert t["symbol"] in body and t["exit_reason"] in body
    # the headline drawdown is the record's (the mark-to-market history's), as `quorum report` prints it
    shown = re.search(r"<th>Max drawdown %</th><td>([0-9.,]+)</td>", text)
    printed = re.search(r"max drawdown ([0-9.]+)%", quorum(["report"], paper_record, tmp_path).stdout)
    assert shown and printed and abs(float(shown.group(1)) - float(printed.group(1))) < 0.006
    assert float(printed.group(1)) > 0


async def test_csv_has_every_fill_fee_and_funding_payment(paper_record: str, tmp_path: Path) -> None:
    out = tmp_path / "trades.csv"
    run = quorum(["report", "--csv", str(out)], paper_record, tmp_path)
    assert run.returncode == 0, run.stderr
    with out.open(newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    trades = {r["position_id"]: r for r in await _fetch(paper_record, "SELECT * FROM closed_trades")}
    fills = await _fetch(paper_record, "SELECT f.* FROM fills f JOIN positions p ON p.id = f.position_id "
                                       "WHERE p.status = 'closed'")
    funding = await _fetch(paper_record, "SELECT f.* FROM funding_payments f JOIN positions p "
                                         "ON p.id = f.position_id WHERE p.status = 'closed'")
    assert funding, "the day's record has funding payments on closed trades"
    assert [r["position_id"] for r in rows if r["row"] == "trade"] == sorted(
        trades, key=lambda p: (trades[p]["closed_at"], p))
    assert sorted(r["trade_id"] for r in rows if r["row"] == "fill") == sorted(f["trade_id"] for f in fills)
    assert len([r for r in rows if r["row"] == "funding"]) == len(funding)
    current = None
    for r in rows:  # each trade's fills and funding follow it
        if r["row"] == "trade":
            current = r["position_id"]
        assert r["position_id"] == current
    for pid, t in trades.items():
        mine = [r for r in rows if r["position_id"] == pid]
        fee = sum(float(r["fee"]) for r in mine if r["row"] == "fill")
        paid = sum(float(r["funding"]) for r in mine if r["row"] == "funding")
        head = mine[0]
        assert abs(fee - float(t["fees"])) < 1e-9 and abs(float(head["fee"]) - fee) < 1e-9
        assert abs(paid - float(t["funding"])) < 1e-9
        assert abs(float(head["gross_pnl"]) - fee - paid - float(head["net_pnl"])) < 1e-9
        assert {r["purpose"] for r in mine if r["row"] == "fill"} >= {"entry"}


async def test_text_report_has_the_by_hour_table(paper_record: str, tmp_path: Path) -> None:
    run = quorum(["report"], paper_record, tmp_path)
    assert run.returncode == 0, run.stderr
    hours = await _fetch(paper_record, "SELECT to_char(opened_at AT TIME ZONE 'UTC', 'HH24') AS h, count(*) AS n "
                                       "FROM closed_trades GROUP BY 1 ORDER BY 1")
    table = run.stdout.split("By hour of entry (UTC):\n")[1].split("By exit reason:")[0]
    got = {line.split()[0]: int(line.split()[1]) for line in table.splitlines()[1:]}
    assert got == {r["h"]: r["n"] for r in hours}


async def test_an_output_path_that_cannot_be_written_is_one_line_exit_2(paper_record: str, tmp_path: Path) -> None:
    for args, says in ((["--html", str(tmp_path / "missing" / "r.html")], "does not exist"),
                       (["--csv", str(tmp_path)], "is a directory")):
        run = quorum(["report", *args], paper_record, tmp_path)
        assert run.returncode == 2, run.stdout + run.stderr
        lines = run.stderr.strip().splitlines()
        assert len(lines) == 1 and says in lines[0] and "Traceback" not in run.stderr
