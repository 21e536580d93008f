"""Your own analyst, loaded from a Python file: `--analyst PATH.py:ClassName` or `ANALYSTS=`.

The protocol (documented for users in `quorum.strategy`): a class whose instances have

    name: str                      (optional; default: the class name)
    def vote(self, ctx) -> ...     (may be `async def`)

`ctx` is a `VoteContext`: `ctx.snapshot` (the scanner's multi-timeframe snapshot, closed bars
only), `ctx.account` (equity, available balance, day P&L, open positions) and `ctx.position()`
(the open position on this symbol, or None). `vote` returns a `Vote` (LONG / SHORT with a stop,
CLOSE, HOLD), an `Abstention`, or None (= HOLD). The class is instantiated once, with no
arguments, and asked in time order, so it may keep state between calls.

`UserAnalyst` adapts such an object to the consensus engine's voter protocol. What it returns
is checked like a model's reply (the voter name is ours, the symbol the snapshot's, confidence in
[0, 1], a LONG/SHORT needs a stop on the losing side of the price); an exception or a bad return
value is an abstention with the reason (logged once per kind), never a failed decision.
"""

from __future__ import annotations

import importlib.util
import inspect
import math
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

import structlog

from quorum.ai.context import VoteContext
from quorum.config import ConfigError
from quorum.domain.models import Abstention, Action, Vote

log = structlog.get_logger(__name__)

USER_KIND = "user"


class UserAnalystError(ConfigError):
    """A user analyst that cannot be loaded: the message names the file and the problem."""


def parse_spec(spec: str) -> tuple[Path, str]:
    """`PATH.py:ClassName` → (path, class name); `UserAnalystError` when it is not that shape."""
    path, sep, cls = spec.strip().rpartition(":")
    if not sep or not path.endswith(".py") or not cls.isidentifier():
        raise UserAnalystError(f"analyst {spec!r}: write it as PATH.py:ClassName, e.g. examples/ema_cross.py:EmaCross")
    return Path(path), cls


def load_user_analyst(spec: str) -> UserAnalyst:
    """Import the file, find the class, instantiate it; one-line `UserAnalystError` otherwise."""
    path, cls_name = parse_spec(spec)
    if not path.is_file():
        raise UserAnalystError(f"analyst {spec!r}: no such file {path}")
    module_name = f"quorum_user_analyst_{abs(hash(path.resolve()))}"
    try:
        module_spec = importlib.util.spec_from_file_location(module_name, path)
        assert module_spec is not None and module_spec.loader is not None
        module = importlib.util.module_from_spec(module_spec)
        sys.modules[module_name] = module
        module_spec.loader.exec_module(module)
    except SyntaxError as exc:
        raise UserAnalystError(f"{path}: syntax error at line {exc.lineno}: {exc.msg}") from None
    except Exception as exc:
        raise UserAnalystError(f"{path}: importing it failed: {type(exc).__name__}: {exc}") from None
    cls = getattr(module, cls_name, None)
    if not inspect.isclass(cls):
        found = sorted(n for n, v in vars(module).items() if inspect.isclass(v) and v.__module__ == module_name)
        raise UserAnalystError(f"{path}: no class {cls_name!r} (classes there: {', '.join(found) or 'none'})")
    if not callable(getattr(cls, "vote", None)):
        raise UserAnalystError(f"{path}: {cls_name} has no vote(self, ctx) method (see `quorum.strategy`)")
    try:
        obj = cls()
    except Exception as exc:
        raise UserAnalystError(f"{path}: {cls_name}() failed: {type(exc).__name__}: {exc}") from None
    name = getattr(obj, "name", None) or cls_name
    if not isinstance(name, str) or not name.strip() or name in ("rules",) or ":" in name:
        raise UserAnalystError(f"{path}: {cls_name}.name must be a short text without ':' other than 'rules', "
                               f"got {name!r}")
    return UserAnalyst(obj, name.strip(), source=f"{path}:{cls_name}")


def load_user_analysts(specs: list[str] | tuple[str, ...]) -> list[UserAnalyst]:
    analysts = [load_user_analyst(s) for s in specs]
    names = [a.name for a in analysts]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise UserAnalystError(f"analysts {', '.join(dup)}: two analysts share a name; give each a distinct `name`")
    return analysts


class UserAnalyst:
    """A user's analyst as a voter (see the module docstring)."""

    kind = USER_KIND

    def __init__(self, obj: Any, name: str, *, source: str) -> None:
        self.obj = obj
        self.name = name
        self.source = source
        self._warned: set[str] = set()

    async def vote(self, ctx: VoteContext) -> Vote | Abstention:
        try:
            out = self.obj.vote(ctx)
            if inspect.isawaitable(out):
                out = await out
        except Exception as exc:
            return self._abstain(ctx, "error", f"{type(exc).__name__}: {exc}")
        return self._checked(ctx, out)

    def _abstain(self, ctx: VoteContext, kind: str, reason: str) -> Abstention:
        if kind not in self._warned:
            self._warned.add(kind)
            log.warning("analyst.user_vote_refused", analyst=self.name, source=self.source, reason=reason[:300])
        return Abstention(self.name, ctx.snapshot.symbol, f"{kind}: {reason}"[:500])

    def _checked(self, ctx: VoteContext, out: Any) -> Vote | Abstention:
        snap = ctx.snapshot
        if out is None:
            return Vote(self.name, snap.symbol, Action.HOLD, 0.0, reasoning="no signal")
        if isinstance(out, Abstention):
            return Abstention(self.name, snap.symbol, out.reason)
        if not isinstance(out, Vote):
            return self._abstain(ctx, "invalid", f"vote() returned {type(out).__name__}, not a Vote, "
                                                 "an Abstention or None")
        v = replace(out, voter=self.name, symbol=snap.symbol)
        if not (isinstance(v.confidence, int | float) and math.isfinite(v.confidence) and 0 <= v.confidence <= 1):
            return self._abstain(ctx, "invalid", f"confidence {v.confidence!r} is not in [0, 1]")
        if v.action in (Action.LONG, Action.SHORT):
            sign = 1 if v.action is Action.LONG else -1
            stop = v.stop_loss
            if stop is None or not math.isfinite(stop) or stop <= 0 or sign * (snap.price - stop) <= 0:
                return self._abstain(ctx, "invalid", f"{v.action.value} needs a stop_loss on the losing side of "
                                                     f"the price {snap.price:g}, got {stop!r}")
            tps = tuple(t for t in v.take_profits if math.isfinite(t) and sign * (t - snap.price) > 0)
            if len(tps) != len(v.take_profits):
                return self._abstain(ctx, "invalid", f"take_profits {list(v.take_profits)} must lie beyond the "
                                                     f"price {snap.price:g} in the trade's direction")
        return v
