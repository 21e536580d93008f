"""`quorum demo` end to end on the bundled data (short span): the replay runs through the real
engine with the API process up, the record lands in its own database, and the tail prints the
report and the win-rate SQL."""

from __future__ import annotations

import uuid
from pathlib import Path

import asyncpg
import pytest

from quorum.api.runner import run_demo
from tests.conftest import ADMIN_URL, _db_url
from tests.integration.service.conftest import make_settings

ROOT = Path(__file__).resolve().parents[3]


async def test_demo_replays_bundled_data_into_its_own_database(capsys: pytest.CaptureFixture[str]) -> None:
    name = f"quorum_demo_test_{uuid.uuid4().hex[:8]}"
    settings = make_settings(database_url=ADMIN_URL, api_port=8000, telegram_bot_token=None)
    try:
        code = await run_demo(settings, data_dir=str(ROOT / "data"), symbols="BTCUSDT", speed=0.0, port=0,
                              keep_serving_s=0.0, days=0.5, database=name)
        out = capsys.readouterr().out
        assert code == 0, out
        assert "Quorum demo: replaying BTCUSDT" in out and "simulated 2025-10-06 00:00 UTC" in out
        assert "Record: paper" in out and ("SELECT * FROM win_rate;" in out or "win_rate: (no closed trades)" in out)
        conn = await asyncpg.connect(_db_url(name))
        try:
            decisions = await conn.fetchval("SELECT count(*) FROM decisions WHERE mode = 'paper'")
            votes = await conn.fetchval("SELECT count(*) FROM model_votes WHERE voter = 'rules'")
            bars = await conn.fetchval("SELECT count(*) FROM equity_snapshots WHERE mode = 'paper' AND kind = 'bar'")
            rows = await conn.fetchval("SELECT count(*) FROM equity_snapshots")
        finally:
            await conn.close()
        assert decisions == 48 and votes >= 48  # 12 h of 15m decisions, each voted by the rules analyst
        assert bars == 144 and f"Equity history: {rows} rows" in out  # a row per 5m close (and per fill)
        admin = await asyncpg.connect(ADMIN_URL)  # the configured database holds no demo rows
        try:
            assert await admin.fetchval("SELECT to_regclass('public.decisions')") is None
        finally:
            await admin.close()
    finally:
        admin = await asyncpg.connect(ADMIN_URL)
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


async def test_demo_names_missing_symbol_files(capsys: pytest.CaptureFixture[str]) -> None:
    code = await run_demo(make_settings(), data_dir=str(ROOT / "data"), symbols="BTCUSDT,NOPEUSDT", speed=0.0,
                          port=0, keep_serving_s=0.0, days=0.1)
    assert code == 2 and "NOPEUSDT" in capsys.readouterr().out
