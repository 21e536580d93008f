"""The setting names of the trading bots Quorum replaces, so that a carried-over `.env` never
means something else here, and is never silently ignored.

Each known legacy name is either honoured with its meaning (translated into Quorum's setting)
or refused with one line naming what replaces it:

    USE_PAPER_TRADING=true        → TRADING_MODE=paper; `false` is refused (live is TRADING_MODE=live,
                                    accepted only beside TRADING_MODE=live); a value that contradicts
                                    TRADING_MODE is refused
    MIN_STOP_LOSS_PERCENT=0.07    → MIN_STOP_LOSS_PCT=7 (a fraction of the entry, not percent)
    MAX_STOP_LOSS_PERCENT=0.08    → MAX_STOP_LOSS_PCT=8
    MIN_PROFIT_USD=3              → MIN_EXPECTED_PROFIT_USD=3
    SCAN_INTERVAL_SECONDS=300     → DECISION_TIMEFRAME=5m (decisions at the close of each such bar);
                                    a value that is no kline length, or no multiple of
                                    EXECUTION_TIMEFRAME, is refused
    ENABLE_GROK, TS_DRY_RUN, STOP_LOSS_PCT, …  refused (`REFUSED`)

A legacy name given beside its replacement is accepted only when both mean the same. Empty
values count as unset. `translate()` is pure: `Settings` applies it to the process environment
and the `.env` file (not to values passed in code).
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Mapping
from typing import Any

from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource
from pydantic_settings.sources import DotEnvSettingsSource

from quorum.config.timeframes import KNOWN_TIMEFRAMES, timeframe_seconds
from quorum.config.values import ConfigError

_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off")
_STOP_BOUNDS = "the stop lies between MIN_STOP_LOSS_PCT and MAX_STOP_LOSS_PCT (percent of the entry)"

# Names of the earlier bots with no counterpart of the same meaning: refused, naming what to use.
REFUSED: dict[str, str] = {
    "ENABLE_GROK": "the voters are the MODELS entries: add or remove grok:<model> there (key GROK_API_KEY)",
    "TS_DRY_RUN": "the mode is TRADING_MODE (paper by default; live trading is TRADING_MODE=live)",
    "BANKROLL_USD": "the starting equity is INITIAL_CAPITAL (USDT)",
    "TS_BANKROLL_USD": "the starting equity is INITIAL_CAPITAL (USDT)",
    "MAX_CONCURRENT": "use MAX_CONCURRENT_POSITIONS",
    "TS_MAX_CONCURRENT": "use MAX_CONCURRENT_POSITIONS",
    "STOP_LOSS_PCT": f"there is no fixed stop: {_STOP_BOUNDS}",
    "TS_STOP_LOSS_PCT": f"there is no fixed stop: {_STOP_BOUNDS}",
    "HARD_STOP_PCT": f"there is no fixed stop: {_STOP_BOUNDS}",
    "MAX_LOSS_PCT": f"there is no fixed stop: {_STOP_BOUNDS}",
    "TS_MAX_DAILY_LOSS_PCT": "use MAX_DAILY_LOSS_PCT (percent of equity)",
    "TS_MAX_CONSECUTIVE_LOSSES": "use MAX_CONSECUTIVE_LOSSES",
    "TS_TRAIL_DEFAULT_PCT": "use TRAILING_DISTANCE_PCT (percent from the peak)",
    "MIN_PROFIT_PCT": "take-profits follow from MIN_REWARD_RISK and PARTIAL_EXITS; a minimum profit in USDT is "
                      "MIN_EXPECTED_PROFIT_USD",
    "SLIPPAGE_BPS": "there is no slippage tolerance; the paper fill model's slippage is SLIPPAGE_SPREAD_BPS and "
                    "SLIPPAGE_IMPACT_BPS_PER_100K",
    "TS_SLIPPAGE_BPS": "there is no slippage tolerance; the paper fill model's slippage is SLIPPAGE_SPREAD_BPS and "
                       "SLIPPAGE_IMPACT_BPS_PER_100K",
    "BUY_AMOUNT_FIAT": "positions are sized from RISK_PER_TRADE_PCT (capped by MAX_NOTIONAL_PCT)",
    "MIN_LIQUIDITY_USD": "the live universe's floor is MIN_QUOTE_VOLUME_USD (24h quote volume, USDT)",
    "TS_MIN_LIQUIDITY_USD": "the live universe's floor is MIN_QUOTE_VOLUME_USD (24h quote volume, USDT)",
}

# Legacy names Quorum honours, in the order they are checked.
HONOURED = ("USE_PAPER_TRADING", "MIN_STOP_LOSS_PERCENT", "MAX_STOP_LOSS_PERCENT", "MIN_PROFIT_USD",
            "SCAN_INTERVAL_SECONDS")

LEGACY_NAMES = frozenset(HONOURED) | frozenset(REFUSED)


class _Problem(ValueError):
    """One legacy value that cannot be honoured; the message is the whole line."""


def _number(name: str, raw: str, what: str) -> float:
    try:
        value = float(raw)
    except ValueError:
        raise _Problem(f"{name}={raw!r}: not a number; {what}") from None
    if not math.isfinite(value):
        raise _Problem(f"{name}={raw!r}: not a finite number; {what}")
    return value


def _same_number(raw: str, value: float) -> bool | None:
    """Whether a new-name value equals `value` (None: not a number; the new name's own
    validation reports it)."""
    try:
        return math.isclose(float(raw), value, rel_tol=1e-9, abs_tol=1e-12)
    except ValueError:
        return None


def _paper(name: str, raw: str, env: Mapping[str, str], defaults: Mapping[str, Any]) -> dict[str, Any]:
    flag = raw.strip().lower()
    mode = env.get("TRADING_MODE", "").strip().lower()
    if flag in _TRUE:
        if mode and mode != "paper":
            raise _Problem(f"{name}={raw} contradicts TRADING_MODE={mode}: remove {name} (TRADING_MODE chooses "
                           "the mode: backtest, paper or live)")
        return {"trading_mode": "paper"}
    if flag in _FALSE:
        if mode == "live":
            return {}
        raise _Problem(f"{name}={raw}: live trading is chosen with TRADING_MODE=live (it also needs exchange keys, "
                       f"API_TOKEN and a passing go-live gate); remove {name}")
    raise _Problem(f"{name}={raw!r}: not true or false; better, remove it and set TRADING_MODE=paper or live")


def _stop_fraction(new: str, field: str) -> Callable[[str, str, Mapping[str, str], Mapping[str, Any]], dict[str, Any]]:
    def translate(name: str, raw: str, env: Mapping[str, str], defaults: Mapping[str, Any]) -> dict[str, Any]:
        what = f"a fraction of the entry price (0.07 = 7 %) in (0, 0.5], or use {new} in percent"
        frac = _number(name, raw, what)
        if not 0 < frac <= 0.5:
            raise _Problem(f"{name}={raw!r}: {what} (e.g. {new}={frac:g})")
        pct = round(frac * 100.0, 9)
        given = env.get(new, "").strip()
        if given and _same_number(given, pct) is False:
            raise _Problem(f"{name}={raw} ({pct:g} %) contradicts {new}={given} (percent): keep one "
                           f"({new} is in percent, {name} a fraction)")
        return {field: pct}
    return translate


def _min_profit(name: str, raw: str, env: Mapping[str, str], defaults: Mapping[str, Any]) -> dict[str, Any]:
    what = "the minimum expected profit of a trade at its take-profit, in USDT (0 = off)"
    usd = _number(name, raw, what)
    if not 0 <= usd <= 1e9:
        raise _Problem(f"{name}={raw!r}: {what}, in [0, 1e9]")
    given = env.get("MIN_EXPECTED_PROFIT_USD", "").strip()
    if given and _same_number(given, usd) is False:
        raise _Problem(f"{name}={raw} contradicts MIN_EXPECTED_PROFIT_USD={given}: keep MIN_EXPECTED_PROFIT_USD")
    return {"min_expected_profit_usd": usd}


def timeframe_of(seconds: int) -> str | None:
    """The kline timeframe `seconds` long ('5m' for 300), or None."""
    return next((tf for tf in KNOWN_TIMEFRAMES if timeframe_seconds(tf) == seconds), None)


def _scan_interval(name: str, raw: str, env: Mapping[str, str], defaults: Mapping[str, Any]) -> dict[str, Any]:
    lengths = ", ".join(str(timeframe_seconds(tf)) for tf in KNOWN_TIMEFRAMES)
    text = raw.strip()
    tf = timeframe_of(int(text)) if text.isdigit() else None
    if tf is None:
        raise _Problem(f"{name}={raw!r}: decisions happen at each close of a DECISION_TIMEFRAME bar, so this must "
                       f"be a kline length in seconds ({lengths}); or set DECISION_TIMEFRAME instead")
    given = env.get("DECISION_TIMEFRAME", "").strip()
    if given and given != tf:
        raise _Problem(f"{name}={raw} (DECISION_TIMEFRAME={tf}) contradicts DECISION_TIMEFRAME={given}: "
                       f"keep DECISION_TIMEFRAME")
    execution = env.get("EXECUTION_TIMEFRAME", "").strip() or str(defaults.get("execution_timeframe", "5m"))
    if execution in KNOWN_TIMEFRAMES and timeframe_seconds(tf) % timeframe_seconds(execution):
        raise _Problem(f"{name}={raw} means DECISION_TIMEFRAME={tf}, which is not a multiple of "
                       f"EXECUTION_TIMEFRAME={execution}: choose a multiple of {timeframe_seconds(execution)} s "
                       "or a shorter EXECUTION_TIMEFRAME")
    return {"decision_timeframe": tf}


_HONOUR: dict[str, Callable[[str, str, Mapping[str, str], Mapping[str, Any]], dict[str, Any]]] = {
    "USE_PAPER_TRADING": _paper,
    "MIN_STOP_LOSS_PERCENT": _stop_fraction("MIN_STOP_LOSS_PCT", "min_stop_loss_pct"),
    "MAX_STOP_LOSS_PERCENT": _stop_fraction("MAX_STOP_LOSS_PCT", "max_stop_loss_pct"),
    "MIN_PROFIT_USD": _min_profit,
    "SCAN_INTERVAL_SECONDS": _scan_interval,
}


def translate(env: Mapping[str, str], defaults: Mapping[str, Any] | None = None) -> tuple[dict[str, Any], list[str]]:
    """Quorum's settings (field name → value) for the legacy names in `env` (upper-case names →
    raw values, as in the environment), and one line per legacy value that is refused. `defaults`
    gives the defaults of the settings a check depends on (`execution_timeframe`)."""
    defaults = defaults or {}
    values: dict[str, Any] = {}
    problems: list[str] = []
    for name in HONOURED:
        raw = env.get(name, "").strip()
        if not raw:
            continue
        try:
            values.update(_HONOUR[name](name, raw, env, defaults))
        except _Problem as exc:
            problems.append(str(exc))
    for name, replacement in REFUSED.items():
        if env.get(name, "").strip():
            problems.append(f"{name} is not a Quorum setting (an earlier bot's): {replacement}; remove {name}")
    return values, problems


class LegacySettingsSource(PydanticBaseSettingsSource):
    """The legacy names found in the process environment and the `.env` file that `Settings`
    reads, translated by `translate` (the lowest-priority source: a new name given beside its
    legacy name must mean the same, or `translate` refuses both). A refusal raises `ConfigError`."""

    def __init__(self, settings_cls: type[BaseSettings], dotenv: PydanticBaseSettingsSource) -> None:
        super().__init__(settings_cls)
        self.dotenv = dotenv

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        return None, field_name, False  # unused: __call__ gives every value at once

    def __call__(self) -> dict[str, Any]:
        env: dict[str, str] = {}
        if isinstance(self.dotenv, DotEnvSettingsSource):
            env.update({k.upper(): v for k, v in self.dotenv.env_vars.items() if v is not None})
        env.update({k.upper(): v for k, v in os.environ.items()})
        if not LEGACY_NAMES.intersection(env):
            return {}
        defaults = {"execution_timeframe": self.settings_cls.model_fields["execution_timeframe"].default}
        values, problems = translate(env, defaults)
        if problems:
            raise ConfigError("; ".join(problems))
        return values
