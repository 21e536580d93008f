"""009: scrub key-like material from rows stored before Quorum scrubbed at the write.

Provider errors that echoed an API key ("Incorrect API key provided: sk-…") were stored as they
came (model_votes, alerts, order errors …) and served again later, even after the key was
rotated out of the environment. This step runs every free-text value already stored — each
`text`/`json`/`jsonb` column of every table, except key columns (ids, which Quorum makes itself)
and digests (`hash`, `*_hash`) — through `quorum.scrub`, the same scrubber that now guards every
write: configured secrets (those registered by the process running the migration, i.e. the
current settings) and key-shaped material by pattern (`sk-…`, masked forms, `Bearer …`,
`api_key=…`, key-shaped tokens), whatever key it was. Postgres pre-selects candidate rows with
cheap patterns; only values that change are rewritten, in place, in the migration's transaction.
"""

from __future__ import annotations

import json
from typing import Any

import asyncpg

from quorum.scrub import scrub, scrub_value, secret_markers

# a value is a candidate when one of these cheap tests matches (a superset of what `scrub`
# replaces; Python decides). Separate simple patterns: one combined regex is ~4x slower.
CANDIDATE = (
    "{c} ~* 'sk-|bearer|basic|secret|token|passw|pwd|signature|authorization|://'",
    "{c} ~* 'key[a-z_-]*.{{0,4}}[:=]'",
    "{c} ~ '[0-9]{{6}}:'",
    "{c} ~ '[A-Z][A-Za-z0-9_-]*[0-9]|[0-9][A-Za-z0-9_-]*[A-Z]'",  # a run with upper case and digits
    "EXISTS (SELECT 1 FROM unnest($1::text[]) s WHERE strpos({c}, s) > 0)",
)


async def free_text_columns(conn: asyncpg.Connection) -> dict[str, list[tuple[str, str]]]:
    """{table: [(column, data type)]} of the text/json columns that are neither keys nor digests."""
    rows = await conn.fetch(
        """SELECT c.table_name, c.column_name, c.data_type
           FROM information_schema.columns c
           JOIN information_schema.tables t
             ON t.table_schema = c.table_schema AND t.table_name = c.table_name AND t.table_type = 'BASE TABLE'
           WHERE c.table_schema = current_schema() AND c.table_name <> 'schema_migrations'
             AND c.data_type IN ('text', 'character varying', 'json', 'jsonb')
             AND c.column_name <> 'hash' AND c.column_name NOT LIKE '%\\_hash'
             AND NOT EXISTS (SELECT 1 FROM information_schema.key_column_usage k
                             WHERE k.table_schema = c.table_schema AND k.table_name = c.table_name
                               AND k.column_name = c.column_name)
           ORDER BY c.table_name, c.ordinal_position""")
    out: dict[str, list[tuple[str, str]]] = {}
    for r in rows:
        out.setdefault(r["table_name"], []).append((r["column_name"], r["data_type"]))
    return out


def _scrubbed(text: str, data_type: str) -> str:
    if data_type in ("json", "jsonb"):
        return json.dumps(scrub_value(json.loads(text)))
    return scrub(text)


async def scrub_table(conn: asyncpg.Connection, table: str, columns: list[tuple[str, str]]) -> int:
    """Rewrite the changed values of one table; returns the number of rows changed."""
    secrets = secret_markers()
    names = [f'"{c}"' for c, _ in columns]
    where = " OR ".join(test.format(c=f"{n}::text") for n in names for test in CANDIDATE)
    query = f'SELECT ctid, {", ".join(f"{n}::text" for n in names)} FROM "{table}" WHERE {where}'
    changed_rows = 0
    async for row in conn.cursor(query, secrets, prefetch=200):
        updates: list[tuple[str, str, Any]] = []
        for i, (column, data_type) in enumerate(columns, start=1):
            old = row[i]
            if old is None:
                continue
            new = _scrubbed(old, data_type)
            if new != old:
                updates.append((column, data_type, new))
        if not updates:
            continue
        sets = ", ".join(
            f'"{c}" = convert_from(${i}::bytea, \'UTF8\')' + ("::" + t if t in ("json", "jsonb") else "")
            for i, (c, t, _) in enumerate(updates, start=2))
        await conn.execute(f'UPDATE "{table}" SET {sets} WHERE ctid = $1', row[0],
                           *[v.encode("utf-8") for _, _, v in updates])
        changed_rows += 1
    return changed_rows


async def apply(conn: asyncpg.Connection) -> None:
    for table, columns in (await free_text_columns(conn)).items():
        await scrub_table(conn, table, columns)
