"""The rules analyst: scalar and whole-series forms agree exactly."""

from __future__ import annotations

import dataclasses

import numpy as np

from quorum.domain.models import Action
from quorum.domain.rules import HOLD_CODE, LONG_CODE, SHORT_CODE, rules_signals, rules_vote
from tests.unit.ai.factory import snapshot


def test_trends_give_directional_votes_with_protective_levels() -> None:
    up = rules_vote(snapshot(trend="up"))
    assert up.action is Action.LONG and up.voter == "rules"
    assert up.stop_loss is not None and up.stop_loss < 100 < up.take_profits[0]
    down = rules_vote(snapshot(trend="down"))
    assert down.action is Action.SHORT
    assert down.stop_loss is not None and down.stop_loss > 100 > down.take_profits[0]
    assert 0.55 <= up.confidence <= 0.9
    assert rules_vote(snapshot(trend="flat")).action is Action.HOLD


def test_missing_indicator_or_wild_volatility_is_hold() -> None:
    snap = snapshot()
    no_adx = dataclasses.replace(snap, timeframes=(dataclasses.replace(snap.timeframes[0], adx=None),))
    assert rules_vote(no_adx).action is Action.HOLD
    wild = dataclasses.replace(snap, timeframes=(dataclasses.replace(snap.timeframes[0], atr=9.0),))
    assert rules_vote(wild).action is Action.HOLD
    assert rules_vote(dataclasses.replace(snap, timeframes=())).action is Action.HOLD


def _random_series(n: int, seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    close = 100 * np.exp(np.cumsum(rng.normal(0, 0.01, n)))
    out = {
        "close": close,
        "ema20": close * (1 + rng.normal(0, 0.01, n)),
        "ema50": close * (1 + rng.normal(0, 0.02, n)),
        "rsi": rng.uniform(10, 90, n),
        "macd_hist": rng.normal(0, 0.5, n),
        "adx": rng.uniform(5, 50, n),
        "atr": close * rng.uniform(0.001, 0.06, n),
    }
    for arr in out.values():
        if arr is not close:
            arr[rng.random(n) < 0.03] = np.nan
    return out


def test_series_and_scalar_forms_agree_bar_by_bar() -> None:
    s = _random_series(3000, 7)
    codes, conf, stop, tp = rules_signals(**s)
    assert {LONG_CODE, SHORT_CODE, HOLD_CODE} <= set(codes.tolist())
    base = snapshot()
    tf = base.timeframes[0]
    for i in range(len(codes)):
        def val(name: str, i: int = i) -> float | None:
            x = float(s[name][i])
            return None if np.isnan(x) else x

        view = dataclasses.replace(tf, close=float(s["close"][i]), ema20=val("ema20"), ema50=val("ema50"),
                                   rsi=val("rsi"), macd_hist=val("macd_hist"), adx=val("adx"), atr=val("atr"))
        vote = rules_vote(dataclasses.replace(base, price=float(s["close"][i]), timeframes=(view,)))
        expected = {LONG_CODE: Action.LONG, SHORT_CODE: Action.SHORT, HOLD_CODE: Action.HOLD}[int(codes[i])]
        assert vote.action is expected
        if expected is Action.HOLD:
            assert vote.stop_loss is None and np.isnan(stop[i])
        else:
            assert vote.confidence == conf[i]
            assert vote.stop_loss == stop[i] and vote.take_profits == (tp[i],)
