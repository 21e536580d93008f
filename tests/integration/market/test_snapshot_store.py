"""Snapshots persist by content hash in the real Postgres and come back identical."""

from __future__ import annotations

from pathlib import Path

import asyncpg
import pytest

from quorum.domain.models import content_hash
from quorum.market.data_files import discover
from quorum.market.snapshot import SnapshotBuilder, build_snapshots
from quorum.store.snapshots import SnapshotRepository


async def test_save_get_idempotent(pool: asyncpg.Pool, shared_data: Path) -> None:
    ds = discover(shared_data)
    builders = [SnapshotBuilder.from_dataset(ds[s]) for s in ("BTCUSDT", "ETHUSDT")]
    t = 1_750_000_000_000 // 900_000 * 900_000
    snaps = build_snapshots(builders, t)
    repo = SnapshotRepository(pool)
    hashes = await repo.save_many(snaps.values())
    assert hashes == [s.hash for s in snaps.values()]
    again = await repo.save(snaps["BTCUSDT"])
    assert again == snaps["BTCUSDT"].hash
    assert await repo.count() == 2
    back = await repo.get(snaps["BTCUSDT"].hash)
    assert back is not None and back.hash == snaps["BTCUSDT"].hash
    assert back.view("4h") is not None and back.breadth is not None
    assert back.breadth.avg_change_24h_pct == pytest.approx(snaps["BTCUSDT"].breadth.avg_change_24h_pct, rel=1e-7)  # type: ignore[union-attr]
    row = await pool.fetchrow("SELECT * FROM market_snapshots WHERE hash = $1", snaps["ETHUSDT"].hash)
    assert row["symbol"] == "ETHUSDT" and int(row["at"].timestamp() * 1000) == t
    assert float(row["price"]) == snaps["ETHUSDT"].price
    assert row["regime"] == snaps["ETHUSDT"].regime.value and list(row["flags"]) == list(snaps["ETHUSDT"].flags)
    assert content_hash(row["payload"]) == snaps["ETHUSDT"].hash
    later = builders[0].snapshot(t + 900_000)
    await repo.save(later)
    latest = await repo.latest("BTCUSDT")
    assert latest is not None and latest.time_ms == t + 900_000
    assert await repo.get("0" * 64) is None
