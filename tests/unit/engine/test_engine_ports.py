"""The engine is typed against its ports (`quorum.ports`): every collaborator it is given has a
port type — none is `Any` — and neither the engine nor its parts probe an object for what it
can do (`getattr` / `hasattr`): what a collaborator offers is its port's, checked by mypy where
`quorum.bootstrap` wires it."""

from __future__ import annotations

import ast
import inspect
from pathlib import Path

import quorum.engine
from quorum.engine import Engine

ENGINE_FILES = sorted(Path(quorum.engine.__file__).parent.glob("*.py"))
COLLABORATORS = ("settings", "clock", "market", "exchange", "executor", "risk", "consensus", "runtime",
                 "venue_feed", "reconciler", "kill_switch", "equity", "controls", "database_probe")


def test_every_collaborator_has_a_port_type() -> None:
    params = inspect.signature(Engine.__init__).parameters
    for name in COLLABORATORS:
        annotation = str(params[name].annotation)
        assert "Any" not in annotation, (name, annotation)
    assert "pool" not in params  # the composition root builds what needs the database


def test_the_engine_never_probes_an_object() -> None:
    for path in ENGINE_FILES:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
                assert node.func.id not in ("getattr", "hasattr"), f"{path.name}:{node.lineno}"
