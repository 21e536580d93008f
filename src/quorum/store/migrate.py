"""Numbered migrations, applied in order, each in its own transaction, recorded with a sha256
checksum in `schema_migrations`. Re-running applies nothing new; an applied file whose content
changed is refused before anything is applied.

A migration is a `NNN_name.sql` file, or a `NNN_name.py` file for a step SQL cannot express
(e.g. rewriting stored text with `quorum.scrub`): it defines `async def apply(conn)`, which runs
inside the migration's transaction like the SQL would."""

from __future__ import annotations

import hashlib
import importlib.util
import re
from dataclasses import dataclass
from pathlib import Path

import asyncpg

MIGRATIONS_DIR = Path(__file__).resolve().parents[3] / "migrations"
_NAME = re.compile(r"^(\d{3,})_[a-z0-9_]+\.(?:sql|py)$")
_LOCK_KEY = 7_270_113  # advisory lock: one migrator at a time


class MigrationError(Exception):
    """A migration cannot be applied; nothing was changed by the failing run."""


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    sql: str  # the file's text: SQL, or the source of a Python step
    path: Path | None = None

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql.encode()).hexdigest()

    @property
    def is_python(self) -> bool:
        return self.name.endswith(".py")

    async def run(self, conn: asyncpg.Connection) -> None:
        """Execute the SQL, or the Python step's `apply(conn)`."""
        if not self.is_python:
            await conn.execute(self.sql)
            return
        assert self.path is not None
        spec = importlib.util.spec_from_file_location(f"quorum_migration_{self.version}", self.path)
        if spec is None or spec.loader is None:
            raise MigrationError(f"{self.name}: cannot be loaded as a Python module")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        step = getattr(module, "apply", None)
        if step is None:
            raise MigrationError(f"{self.name}: a Python migration must define `async def apply(conn)`")
        try:
            await step(conn)
        except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError, TimeoutError, MigrationError):
            raise
        except Exception as exc:  # a bug in the step: one line, and the transaction is rolled back
            raise MigrationError(f"{self.name} failed and was rolled back: {type(exc).__name__}: {exc}") from None


def discover(directory: Path = MIGRATIONS_DIR) -> list[Migration]:
    """The migration files in version order; a malformed name or duplicate version is an error."""
    found: dict[int, Migration] = {}
    for path in sorted([*directory.glob("*.sql"), *directory.glob("*.py")]):
        m = _NAME.match(path.name)
        if not m:
            raise MigrationError(f"{path.name}: migration files must be named NNN_name.sql (or NNN_name.py)")
        version = int(m.group(1))
        if version in found:
            raise MigrationError(f"{path.name}: version {version} is used twice")
        found[version] = Migration(version, path.name, path.read_text(encoding="utf-8"), path)
    return [found[v] for v in sorted(found)]


async def apply_migrations(conn: asyncpg.Connection, directory: Path = MIGRATIONS_DIR) -> list[str]:
    """Apply pending migrations; return the names applied (empty when up to date)."""
    migrations = discover(directory)
    await conn.execute("SELECT pg_advisory_lock($1)", _LOCK_KEY)
    try:
        await conn.execute(
            """CREATE TABLE IF NOT EXISTS schema_migrations (
                   version integer PRIMARY KEY, name text NOT NULL, checksum text NOT NULL,
                   applied_at timestamptz NOT NULL DEFAULT now())"""
        )
        rows = await conn.fetch("SELECT version, name, checksum FROM schema_migrations")
        applied = {r["version"]: r for r in rows}
        for mig in migrations:
            row = applied.get(mig.version)
            if row is not None and row["checksum"] != mig.checksum:
                raise MigrationError(
                    f"{mig.name} was changed after it was applied (checksum {row['checksum'][:12]} in the "
                    f"database, {mig.checksum[:12]} on disk); add a new migration instead of editing it"
                )
        done: list[str] = []
        for mig in migrations:
            if mig.version in applied:
                continue
            try:
                async with conn.transaction():
                    await mig.run(conn)
                    await conn.execute(
                        "INSERT INTO schema_migrations (version, name, checksum) VALUES ($1, $2, $3)",
                        mig.version, mig.name, mig.checksum,
                    )
            except asyncpg.PostgresError as exc:
                raise MigrationError(f"{mig.name} failed and was rolled back: {exc}") from None
            done.append(mig.name)
        return done
    finally:
        await conn.execute("SELECT pg_advisory_unlock($1)", _LOCK_KEY)
