"""An EMA cross, as your own Quorum analyst (see `quorum.strategy` for the protocol).

Long when the 20-period EMA of the decision timeframe crosses above the 50-period EMA, short
when it crosses below; the stop is 2 ATR away, the take-profit 4 ATR. A cross against an open
position reverses it (close, then open the other side, if the risk manager accepts).

    quorum backtest --data data --symbols BTCUSDT,ETHUSDT --analyst examples/ema_cross.py:EmaCross
    ANALYSTS=examples/ema_cross.py:EmaCross quorum demo
"""

from __future__ import annotations

from quorum.strategy import Vote, VoteContext, hold, long, short


class EmaCross:
    name = "ema_cross"
    timeframe = "15m"  # the decision timeframe's view (DECISION_TIMEFRAME)
    stop_atr = 2.0
    target_atr = 4.0

    def __init__(self) -> None:
        self.above: dict[str, bool] = {}  # per symbol: was EMA20 above EMA50 at the last decision?

    def vote(self, ctx: VoteContext) -> Vote | None:
        snap = ctx.snapshot
        view = snap.view(self.timeframe) or snap.timeframes[0]
        if view.ema20 is None or view.ema50 is None or view.atr is None:
            return hold(ctx, "indicators not ready")
        above = view.ema20 > view.ema50
        before = self.above.get(snap.symbol)
        self.above[snap.symbol] = above
        if before is None or before == above:
            return None  # no cross: nothing to say
        price, atr = snap.price, view.atr
        if above:
            return long(ctx, stop=price - self.stop_atr * atr, take_profits=(price + self.target_atr * atr,),
                        confidence=0.8, reasoning=f"EMA20 {view.ema20:.2f} crossed above EMA50 {view.ema50:.2f}")
        return short(ctx, stop=price + self.stop_atr * atr, take_profits=(price - self.target_atr * atr,),
                     confidence=0.8, reasoning=f"EMA20 {view.ema20:.2f} crossed below EMA50 {view.ema50:.2f}")
