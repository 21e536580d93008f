"""Write your own analyst: the documented protocol and the names it needs.

An analyst is a class in your own Python file, named on the command line or in the settings:

    quorum backtest --analyst examples/ema_cross.py:EmaCross ...        (alone)
    quorum backtest --analyst rules --analyst my.py:Mine ...            (next to the rules analyst)
    ANALYSTS=my.py:Mine quorum demo | quorum run | quorum decide SYMBOL  (next to MODELS, if any)

    class Mine:
        name = "mine"                               # optional: the voter's name (default: the class name)

        def vote(self, ctx: VoteContext) -> Vote | Abstention | None:    # or `async def`
            view = ctx.snapshot.view("15m")         # indicators of closed bars only (TimeframeView)
            if view is None or view.atr is None:
                return hold(ctx, "no data")
            if <your entry condition>:
                return long(ctx, stop=ctx.snapshot.price - 2 * view.atr, confidence=0.8, reasoning="why")
            return None                             # None = HOLD

`ctx.snapshot` is what every voter sees (`Snapshot`: price, one `TimeframeView` per configured
timeframe with RSI, MACD, Bollinger, ATR, EMA 20/50/200 and slopes, ADX/DI, OBV slope, volume
ratio, range, regime, recent closes; funding rate, breadth, data flags). `ctx.account` is an
`AccountView` (equity, available balance, day P&L, open positions) and `ctx.position()` the open
position on this symbol or None.

What happens to a vote: the votes of all voters are merged by the consensus rule (`MIN_VOTERS`,
`MIN_AGREEMENT`, `MIN_AI_CONFIDENCE`: a vote below that confidence does not count); the merged
proposal then goes through the risk manager, which sizes it, caps the leverage and may refuse it.
With a position open on the symbol, a CLOSE, or a vote for the other side, closes it (after the
minimum hold); the other side is then opened in the same decision if the risk manager accepts it
(a reversal; the re-entry cool-down `REENTRY_COOLDOWN_MINUTES` applies to it like to any entry —
set it to 0 to reverse at once). A vote for the side already held changes nothing.

Rules for a vote: confidence in [0, 1]; LONG/SHORT need a stop on the losing side of the price;
take-profits (optional) beyond the price in the trade's direction. A vote that breaks them, or an
exception in `vote`, is an abstention with the reason (logged once per kind) — never a crash.

The class is created once with no arguments and asked in time order (per symbol), so it may keep
state. In `quorum backtest` your analyst is asked at every decision time before the simulation
runs (as `--analyst models` is): there `ctx.account` is the initial equity and `ctx.position()` is
always None, so express exits as CLOSE or opposite votes, which apply only when a position is open.
"""

from __future__ import annotations

from quorum.ai.context import AccountView, PositionView, VoteContext
from quorum.domain.models import Abstention, Action, Side, Snapshot, TimeframeView, Vote

__all__ = [
    "Abstention",
    "AccountView",
    "Action",
    "PositionView",
    "Side",
    "Snapshot",
    "TimeframeView",
    "Vote",
    "VoteContext",
    "close",
    "hold",
    "long",
    "short",
]


def _vote(ctx: VoteContext, action: Action, confidence: float, stop: float | None,
          take_profits: tuple[float, ...], leverage: float | None, reasoning: str) -> Vote:
    return Vote("", ctx.snapshot.symbol, action, float(confidence), leverage=leverage, stop_loss=stop,
                take_profits=tuple(float(t) for t in take_profits), reasoning=reasoning)


def long(ctx: VoteContext, *, stop: float, confidence: float = 0.8, take_profits: tuple[float, ...] = (),
         leverage: float | None = None, reasoning: str = "") -> Vote:
    """A vote to go long with a protective stop below the price."""
    return _vote(ctx, Action.LONG, confidence, float(stop), take_profits, leverage, reasoning)


def short(ctx: VoteContext, *, stop: float, confidence: float = 0.8, take_profits: tuple[float, ...] = (),
          leverage: float | None = None, reasoning: str = "") -> Vote:
    """A vote to go short with a protective stop above the price."""
    return _vote(ctx, Action.SHORT, confidence, float(stop), take_profits, leverage, reasoning)


def close(ctx: VoteContext, reasoning: str = "", confidence: float = 0.8) -> Vote:
    """A vote to close the open position on this symbol (nothing when flat)."""
    return _vote(ctx, Action.CLOSE, confidence, None, (), None, reasoning)


def hold(ctx: VoteContext, reasoning: str = "") -> Vote:
    """A vote to do nothing."""
    return _vote(ctx, Action.HOLD, 0.0, None, (), None, reasoning)
