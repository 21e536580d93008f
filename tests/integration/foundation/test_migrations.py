from pathlib import Path

import asyncpg
import pytest

from quorum.store.migrate import MigrationError, apply_migrations, discover


async def test_fresh_apply_then_reapply_is_noop_then_edit_is_refused(empty_pg_url: str, tmp_path: Path):
    src = discover()
    for m in src:
        (tmp_path / m.name).write_text(m.sql)
    conn = await asyncpg.connect(empty_pg_url)
    try:
        first = await apply_migrations(conn, tmp_path)
        assert first == [m.name for m in src]
        assert await apply_migrations(conn, tmp_path) == []
        rows = await conn.fetch("SELECT version, checksum FROM schema_migrations ORDER BY version")
        assert [r["checksum"] for r in rows] == [m.checksum for m in src]

        edited = tmp_path / src[0].name
        edited.write_text(src[0].sql + "\n-- edited\n")
        with pytest.raises(MigrationError, match="changed after it was applied"):
            await apply_migrations(conn, tmp_path)
    finally:
        await conn.close()


async def test_failing_migration_leaves_no_partial_state(empty_pg_url: str, tmp_path: Path):
    (tmp_path / "001_ok.sql").write_text("CREATE TABLE t_ok (id int);")
    (tmp_path / "002_bad.sql").write_text("CREATE TABLE t_half (id int);\nSELECT * FROM no_such_table;")
    conn = await asyncpg.connect(empty_pg_url)
    try:
        await conn.execute("DROP TABLE IF EXISTS schema_migrations CASCADE")
        with pytest.raises(MigrationError, match="002_bad.sql failed"):
            await apply_migrations(conn, tmp_path)
        assert await conn.fetchval("SELECT to_regclass('t_half')") is None
        assert await conn.fetchval("SELECT to_regclass('t_ok')") is not None
        versions = [r["version"] for r in await conn.fetch("SELECT version FROM schema_migrations")]
        assert versions == [1]
    finally:
        await conn.execute("DROP TABLE IF EXISTS t_ok; DROP TABLE IF EXISTS schema_migrations")
        await conn.close()


def test_bad_file_name_is_refused(tmp_path: Path):
    (tmp_path / "1-init.sql").write_text("SELECT 1;")
    with pytest.raises(MigrationError, match="NNN_name.sql"):
        discover(tmp_path)
