"""The engine: one loop for every mode, typed against `quorum.ports` (see `quorum.engine.loop`).

    loop.py       the Engine: steps, lifecycle, fault handling
    positions.py  position keeping (catch-up, phases A-C)      cycle.py   the decision cycle (phase D)
    guard.py      the step fault guard                         status.py  status for /status and /metrics
    equity.py     the mark-to-market equity history            controls.py operator controls, every step
    feeds.py      what a paper venue is shown of the market    shared.py  rules shared with the backtest
    runtime.py    the in-process status the API, notifier and CLI read

`Engine`, `NullVenueFeed` and `EngineStats` are imported lazily, so a reader of `runtime` (the API)
does not load the engine.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from quorum.engine.loop import Engine, EngineStats, NullVenueFeed, VenueFeed

__all__ = ["Engine", "EngineStats", "NullVenueFeed", "VenueFeed"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from quorum.engine import loop

        return vars(loop)[name]
    raise AttributeError(f"module 'quorum.engine' has no attribute {name!r}")
