"""The package layout shows the architecture, and this keeps it so:

- all SQL lives under `quorum.store` (no SQL text, no asyncpg query call anywhere else);
- the store depends on nothing above it (execution, ai, api, engine, commands);
- the domain depends on nothing but itself (pure values and functions, no I/O);
- no import cycle between the package's modules (top-level, in-function and type-only imports
  alike: a cycle is broken by moving the shared piece down to the module it belongs to).

An exception goes in an allow-list below with its reason; an entry that no longer matches
anything fails too, so the list only ever shrinks.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from pathlib import Path

SRC = Path(__file__).resolve().parents[3] / "src" / "quorum"

# SQL text: a statement's opening words (precise enough not to take prose for SQL)
SQL_TEXT = re.compile(
    r"""^\s*(?:
        SELECT\s+\d | SELECT\s.*?\bFROM\s
      | INSERT\s+INTO\s | UPDATE\s+\w+(?:\s+\w+)?\s+SET\s | DELETE\s+FROM\s
      | WITH\s+(?:RECURSIVE\s+)?\w+\s+AS\s*\(
      | (?:CREATE|DROP|ALTER|TRUNCATE)\s+(?:TABLE|DATABASE|INDEX|VIEW|SCHEMA|MATERIALIZED|UNIQUE|OR\s+REPLACE)\b
    )""",
    re.IGNORECASE | re.DOTALL | re.VERBOSE,
)
ASYNCPG_ONLY = {"fetchrow", "fetchval", "executemany", "copy_records_to_table", "copy_to_table"}
QUERY_CALLS = {"fetch", "execute"}  # also ccxt's / an executor's names: flagged only on a pool or connection
DB_RECEIVERS = {"pool", "_pool", "conn", "connection", "db", "_db"}

# (module path under src/quorum, start of the SQL text or call) -> why it may stay there
SQL_ALLOWED = {
    ("commands/report.py", "SELECT * FROM win_rate;"): "a printed heading naming the view to query (never run)",
}

LAYERS_ABOVE_STORE = ("quorum.execution", "quorum.ai", "quorum.api", "quorum.engine",
                      "quorum.commands")
# (store module, imported module) -> why it may stay
STORE_IMPORTS_ALLOWED: dict[tuple[str, str], str] = {}
# (importing module, imported module) -> why this import may close a cycle
CYCLE_IMPORTS_ALLOWED: dict[tuple[str, str], str] = {}


def _modules(package: str = "") -> Iterator[tuple[str, ast.Module]]:
    for path in sorted((SRC / package).rglob("*.py")):
        yield path.relative_to(SRC).as_posix(), ast.parse(path.read_text(encoding="utf-8"), str(path))


def _docstrings(tree: ast.Module) -> set[int]:
    ids = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
                ids.add(id(body[0].value))
    return ids


def _text(node: ast.AST) -> str | None:
    """The literal text of a str constant, or the leading literal part of an f-string."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    if isinstance(node, ast.JoinedStr):
        return "".join(v.value for v in node.values if isinstance(v, ast.Constant) and isinstance(v.value, str))
    return None


def _receiver(call: ast.Call) -> str:
    target = call.func.value if isinstance(call.func, ast.Attribute) else call.func
    if isinstance(target, ast.Call):
        target = target.func
    if isinstance(target, ast.Attribute):
        return target.attr
    return target.id if isinstance(target, ast.Name) else ""


def sql_outside_store() -> list[tuple[str, str]]:
    """(module, what) of every SQL text and query call outside quorum/store."""
    found = []
    for rel, tree in _modules():
        if rel.startswith("store/"):
            continue
        skip = _docstrings(tree)
        for node in ast.walk(tree):  # breadth first: an f-string comes before its parts
            if isinstance(node, ast.JoinedStr):
                skip.update(id(v) for v in node.values)  # read as a whole by `_text`
            text = _text(node)
            if text is not None and id(node) not in skip and SQL_TEXT.match(text):
                found.append((rel, " ".join(text.split())))
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
                name = node.func.attr
                if name in ASYNCPG_ONLY or (name in QUERY_CALLS and _receiver(node) in DB_RECEIVERS):
                    found.append((rel, ast.unparse(node.func)))
    return found


def _allowed(rel: str, what: str, allowed: dict[tuple[str, str], str]) -> tuple[str, str] | None:
    return next(((p, s) for p, s in allowed if p == rel and what.startswith(s)), None)


def test_sql_lives_only_in_the_store() -> None:
    found = sql_outside_store()
    used = {_allowed(rel, what, SQL_ALLOWED) for rel, what in found}
    bad = sorted(f"{rel}: {what[:100]}" for rel, what in found if _allowed(rel, what, SQL_ALLOWED) is None)
    assert not bad, "SQL outside quorum/store (move it into a store module):\n" + "\n".join(bad)
    stale = sorted(f"{p}: {s}" for p, s in SQL_ALLOWED if (p, s) not in used)
    assert not stale, "allow-listed SQL no longer there (remove the entry):\n" + "\n".join(stale)


def _imports(rel: str, tree: ast.Module) -> Iterator[str]:
    package = ["quorum", *rel.removesuffix(".py").split("/")[:-1]]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from (a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = ".".join(package[: len(package) - node.level + 1]) if node.level else ""
            module = ".".join(x for x in (base, node.module or "") if x)
            yield module
            yield from (f"{module}.{a.name}" for a in node.names)


def _under(module: str, packages: tuple[str, ...]) -> bool:
    return any(module == p or module.startswith(p + ".") for p in packages)


def test_the_store_imports_nothing_above_it() -> None:
    found = {(rel, m) for rel, tree in _modules("store") for m in _imports(rel, tree)
             if _under(m, LAYERS_ABOVE_STORE)}
    found = sorted((rel, m) for rel, m in found if not any(r == rel and _under(m, (o,)) and m != o for r, o in found))
    bad = [f"{rel} imports {m}" for rel, m in found
           if not any(rel == p and _under(m, (a,)) for p, a in STORE_IMPORTS_ALLOWED)]
    assert not bad, "quorum.store depends only on quorum.domain and below:\n" + "\n".join(bad)
    stale = [f"{p}: {a}" for p, a in STORE_IMPORTS_ALLOWED if not any(rel == p and _under(m, (a,)) for rel, m in found)]
    assert not stale, "allow-listed store import no longer there (remove the entry):\n" + "\n".join(stale)


def test_the_domain_imports_only_itself() -> None:
    bad = sorted({f"{rel} imports {m}" for rel, tree in _modules("domain") for m in _imports(rel, tree)
                  if _under(m, ("quorum",)) and not _under(m, ("quorum.domain",))})
    assert not bad, "quorum.domain is pure (values and functions, no I/O):\n" + "\n".join(bad)


def test_the_checks_see_sql() -> None:
    """The detector itself: SQL and query calls are found, prose and ccxt calls are not."""
    assert SQL_TEXT.match("SELECT * FROM orders") and SQL_TEXT.match("\n  select 1")
    assert SQL_TEXT.match("UPDATE fills f SET position_id = 1") and SQL_TEXT.match('DROP DATABASE IF EXISTS "x"')
    assert SQL_TEXT.match("WITH s AS (SELECT 1) SELECT * FROM s")
    for prose in ("Select a symbol", "update the stops", "With the engine running", "deleted", "Created"):
        assert not SQL_TEXT.match(prose), prose


def import_graph() -> dict[str, set[str]]:
    """module -> the package's modules it imports, wherever the import stands (a name imported
    from a module counts as that module; a package's `__init__` is the package)."""
    trees = {".".join(["quorum", *rel.removesuffix(".py").split("/")]).removesuffix(".__init__"): (rel, tree)
             for rel, tree in _modules()}

    def module_of(name: str) -> str | None:
        while name and name not in trees:
            name = name.rpartition(".")[0]
        return name or None

    return {m: {d for d in map(module_of, _imports(rel, tree)) if d is not None and d != m}
            for m, (rel, tree) in trees.items()}


def import_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module: each is one or more cycles."""
    reach: dict[str, set[str]] = {}
    for start in graph:
        seen, todo = set(), [start]
        while todo:
            for n in graph.get(todo.pop(), ()):
                if n not in seen:
                    seen.add(n)
                    todo.append(n)
        reach[start] = seen
    return sorted({tuple(sorted({m} | {n for n in reach[m] if m in reach[n]})) for m in graph if m in reach[m]})


def test_no_import_cycles() -> None:
    assert import_cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [("a", "b", "c")]  # the detector
    graph = import_graph()
    cut = {m: {d for d in deps if (m, d) not in CYCLE_IMPORTS_ALLOWED} for m, deps in graph.items()}
    bad = ["  " + " <-> ".join(c) + ": " + ", ".join(f"{m} -> {d}" for m in c for d in sorted(cut[m]) if d in c)
           for c in import_cycles(cut)]
    assert not bad, ("import cycles (move the shared piece down to the module it belongs to; an import inside a "
                     "function is still a cycle):\n" + "\n".join(bad))
    in_cycle = {(m, d) for c in import_cycles(graph) for m in c for d in graph[m] if d in c}
    stale = sorted(f"{m} -> {d}" for m, d in CYCLE_IMPORTS_ALLOWED if (m, d) not in in_cycle)
    assert not stale, "allow-listed import no longer closes a cycle (remove the entry):\n" + "\n".join(stale)
