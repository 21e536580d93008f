"""`quorum db upgrade`: apply the SQL migrations."""

from __future__ import annotations

import asyncio
import sys

import typer

from quorum.config import load_settings
from quorum.logging import configure_logging
from quorum.store.db import DatabaseUnavailable, connect, resolve_database_url
from quorum.store.migrate import MigrationError, apply_migrations


async def upgrade_database(database_url: str | None, var_dir: str = "var") -> list[str]:
    """Apply pending migrations to the configured (or embedded) database; return what ran."""
    from pathlib import Path

    url = resolve_database_url(database_url, Path(var_dir))
    conn = await connect(url)
    try:
        return await apply_migrations(conn)
    finally:
        await conn.close()


def run_upgrade() -> int:
    """Shared by `quorum db upgrade` and `setup_database.py`; returns a process exit code."""
    settings = load_settings()
    configure_logging(settings)
    db_url = settings.database_url.get_secret_value() if settings.database_url else None
    try:
        applied = asyncio.run(upgrade_database(db_url, str(settings.var_dir)))
    except (DatabaseUnavailable, MigrationError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    if applied:
        for name in applied:
            print(f"applied {name}")
    else:
        print("database is up to date; nothing applied")
    return 0


def register(app: typer.Typer) -> None:
    db = typer.Typer(help="Database maintenance.")

    @db.command("upgrade")
    def upgrade() -> None:
        """Apply pending SQL migrations (idempotent)."""
        raise typer.Exit(run_upgrade())

    app.add_typer(db, name="db")
