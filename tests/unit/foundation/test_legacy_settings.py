"""The earlier bots' setting names: honoured with their meaning (USE_PAPER_TRADING=true,
MIN/MAX_STOP_LOSS_PERCENT as fractions, MIN_PROFIT_USD, SCAN_INTERVAL_SECONDS as the decision
timeframe) or refused with one line naming the replacement — never ignored; a MODELS entry with an
unknown provider is refused; MIN_EXPECTED_PROFIT_USD rejects an entry that would earn less."""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path

import pytest

from quorum.config import ConfigError, Settings, TradingMode, load_settings
from quorum.config.legacy import LEGACY_NAMES, REFUSED, translate
from quorum.domain.models import Action, Proposal, Regime
from quorum.domain.risk import RiskContext, RiskPolicy, evaluate
from quorum.risk.brackets import BUNDLED
from tests.unit.risk.test_risk_verdict import BTC


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch, tmp_cwd: Path) -> None:
    for key in list(os.environ):
        if key in LEGACY_NAMES or key.startswith(("TRADING_", "MIN_", "MAX_", "DECISION_", "EXECUTION_", "MODELS",
                                                  "TIMEFRAMES", "OPNEAI", "MYLLM")):
            monkeypatch.delenv(key, raising=False)


def _refusal(monkeypatch: pytest.MonkeyPatch, **env: str) -> str:
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    with pytest.raises(ConfigError) as info:
        load_settings()
    message = str(info.value)
    assert "\n" not in message
    return message


# --- honoured ------------------------------------------------------------------------------------

def test_the_earlier_bots_conservative_configuration_means_what_it_meant(monkeypatch: pytest.MonkeyPatch) -> None:
    # seed 002's "Conservative Configuration", verbatim
    for k, v in {"INITIAL_CAPITAL": "100.00", "MAX_LEVERAGE": "3", "MIN_STOP_LOSS_PERCENT": "0.07",
                 "MAX_STOP_LOSS_PERCENT": "0.08", "MIN_PROFIT_USD": "3.00", "MIN_AI_CONFIDENCE": "0.80",
                 "SCAN_INTERVAL_SECONDS": "300", "USE_PAPER_TRADING": "true"}.items():
        monkeypatch.setenv(k, v)
    s = load_settings()
    assert s.trading_mode is TradingMode.PAPER
    assert s.min_stop_loss_pct == 7.0 and s.max_stop_loss_pct == 8.0  # 7 % and 8 %, not 0.07 %
    assert s.min_expected_profit_usd == 3.0
    assert s.decision_timeframe == "5m" and s.scan_interval_seconds == 300
    assert s.timeframes[0] == "5m"  # the decision timeframe has its view in every snapshot
    policy = RiskPolicy.from_settings(s)
    assert policy.min_stop_loss_pct == 7.0 and policy.min_expected_profit_usd == 3.0


def test_defaults_are_unchanged_without_legacy_names() -> None:
    s = load_settings()
    assert s.min_stop_loss_pct == 0.4 and s.min_expected_profit_usd == 0.0
    assert s.decision_timeframe == "15m" and s.scan_interval_seconds == 900 and s.timeframes == ["15m", "1h", "4h"]


@pytest.mark.parametrize(("env", "expected"), [
    ({"USE_PAPER_TRADING": "true"}, {"trading_mode": "paper"}),
    ({"USE_PAPER_TRADING": "yes", "TRADING_MODE": "paper"}, {"trading_mode": "paper"}),
    ({"USE_PAPER_TRADING": "false", "TRADING_MODE": "live"}, {}),  # agrees with the mode: nothing to add
    ({"MIN_STOP_LOSS_PERCENT": "0.05"}, {"min_stop_loss_pct": 5.0}),
    ({"MAX_STOP_LOSS_PERCENT": "0.10"}, {"max_stop_loss_pct": 10.0}),
    ({"MIN_STOP_LOSS_PERCENT": "0.07", "MIN_STOP_LOSS_PCT": "7"}, {"min_stop_loss_pct": 7.0}),  # same meaning
    ({"MIN_PROFIT_USD": "5.00"}, {"min_expected_profit_usd": 5.0}),
    ({"MIN_PROFIT_USD": "5", "MIN_EXPECTED_PROFIT_USD": "5.0"}, {"min_expected_profit_usd": 5.0}),
    ({"SCAN_INTERVAL_SECONDS": "900"}, {"decision_timeframe": "15m"}),
    ({"SCAN_INTERVAL_SECONDS": "3600", "DECISION_TIMEFRAME": "1h"}, {"decision_timeframe": "1h"}),
    ({"SCAN_INTERVAL_SECONDS": "180", "EXECUTION_TIMEFRAME": "1m"}, {"decision_timeframe": "3m"}),
    ({"USE_PAPER_TRADING": "", "SCAN_INTERVAL_SECONDS": " "}, {}),  # an empty template line means unset
])
def test_translation(env: dict[str, str], expected: dict[str, object]) -> None:
    values, problems = translate(env, {"execution_timeframe": "5m"})
    assert problems == [] and values == expected


def test_the_decision_timeframe_always_has_its_view(monkeypatch: pytest.MonkeyPatch) -> None:
    """Before, DECISION_TIMEFRAME=5m beside the default TIMEFRAMES left the rules analyst without a
    5m view: it held every time ("no 5m timeframe view in the snapshot")."""
    monkeypatch.setenv("DECISION_TIMEFRAME", "5m")
    assert load_settings().timeframes == ["5m", "15m", "1h", "4h"]
    monkeypatch.setenv("TIMEFRAMES", "1h,15m")
    monkeypatch.setenv("DECISION_TIMEFRAME", "15m")
    assert load_settings().timeframes == ["1h", "15m"]  # already there: left as given


def test_legacy_names_in_the_env_file_count_too(tmp_cwd: Path) -> None:
    (tmp_cwd / ".env").write_text("MIN_STOP_LOSS_PERCENT=0.02\nSCAN_INTERVAL_SECONDS=1800\n")
    s = load_settings()
    assert s.min_stop_loss_pct == 2.0 and s.decision_timeframe == "30m"
    assert Settings(_env_file=None).min_stop_loss_pct == 0.4  # type: ignore[call-arg]


def test_code_overrides_win_over_a_legacy_name(monkeypatch: pytest.MonkeyPatch) -> None:
    """`quorum backtest --decision-timeframe 15m` passes its flag in code: it is not contradicted."""
    monkeypatch.setenv("SCAN_INTERVAL_SECONDS", "300")
    assert load_settings(decision_timeframe="15m").decision_timeframe == "15m"


# --- refused ---------------------------------------------------------------------------------------

@pytest.mark.parametrize(("env", "says"), [
    ({"USE_PAPER_TRADING": "false"}, "USE_PAPER_TRADING=false: live trading is chosen with TRADING_MODE=live"),
    ({"USE_PAPER_TRADING": "true", "TRADING_MODE": "live"}, "USE_PAPER_TRADING=true contradicts TRADING_MODE=live"),
    ({"USE_PAPER_TRADING": "true", "TRADING_MODE": "backtest"}, "contradicts TRADING_MODE=backtest"),
    ({"USE_PAPER_TRADING": "false", "TRADING_MODE": "paper"}, "TRADING_MODE=live"),
    ({"USE_PAPER_TRADING": "maybe"}, "USE_PAPER_TRADING='maybe': not true or false"),
    ({"MIN_STOP_LOSS_PERCENT": "7"}, "a fraction of the entry price (0.07 = 7 %)"),
    ({"MAX_STOP_LOSS_PERCENT": "nan"}, "MAX_STOP_LOSS_PERCENT='nan': not a finite number"),
    ({"MIN_STOP_LOSS_PERCENT": "0.07", "MIN_STOP_LOSS_PCT": "0.07"},
     "MIN_STOP_LOSS_PERCENT=0.07 (7 %) contradicts MIN_STOP_LOSS_PCT=0.07 (percent)"),
    ({"MIN_STOP_LOSS_PERCENT": "0.09"}, "MIN_STOP_LOSS_PCT (9) must be below MAX_STOP_LOSS_PCT (8)"),
    ({"MIN_PROFIT_USD": "-1"}, "MIN_PROFIT_USD='-1': the minimum expected profit"),
    ({"MIN_PROFIT_USD": "3", "MIN_EXPECTED_PROFIT_USD": "5"}, "MIN_PROFIT_USD=3 contradicts MIN_EXPECTED_PROFIT_USD=5"),
    ({"SCAN_INTERVAL_SECONDS": "200"}, "SCAN_INTERVAL_SECONDS='200': decisions happen at each close of a "
                                       "DECISION_TIMEFRAME bar"),
    ({"SCAN_INTERVAL_SECONDS": "180"}, "SCAN_INTERVAL_SECONDS=180 means DECISION_TIMEFRAME=3m, which is not a "
                                       "multiple of EXECUTION_TIMEFRAME=5m"),
    ({"SCAN_INTERVAL_SECONDS": "3600", "DECISION_TIMEFRAME": "15m"},
     "SCAN_INTERVAL_SECONDS=3600 (DECISION_TIMEFRAME=1h) contradicts DECISION_TIMEFRAME=15m"),
])
def test_a_legacy_value_that_cannot_mean_what_it_meant_is_refused(monkeypatch: pytest.MonkeyPatch,
                                                                   env: dict[str, str], says: str) -> None:
    assert says in _refusal(monkeypatch, **env)


@pytest.mark.parametrize("name", sorted(REFUSED))
def test_names_without_a_counterpart_are_refused_naming_the_replacement(monkeypatch: pytest.MonkeyPatch,
                                                                        name: str) -> None:
    message = _refusal(monkeypatch, **{name: "1"})
    assert message.startswith(f"{name} is not a Quorum setting") and REFUSED[name] in message


def test_every_problem_is_named_in_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    message = _refusal(monkeypatch, USE_PAPER_TRADING="false", ENABLE_GROK="false", MIN_STOP_LOSS_PERCENT="5")
    assert "USE_PAPER_TRADING" in message and "ENABLE_GROK" in message and "MIN_STOP_LOSS_PERCENT" in message


# --- MODELS ------------------------------------------------------------------------------------------

def test_a_models_entry_with_an_unknown_provider_stops_start_up(monkeypatch: pytest.MonkeyPatch) -> None:
    message = _refusal(monkeypatch, MODELS="openai:gpt-4.1-mini,opneai:gpt-4o")
    assert "MODELS=" in message and "unknown provider 'opneai'" in message
    assert "known: anthropic, deepseek, grok, llamacpp, ollama, openai, openrouter, qwen, xai" in message
    assert "OPNEAI_BASE_URL" in message


def test_any_other_openai_compatible_endpoint_is_named_by_its_base_url(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MODELS", "myllm:local-7b,Anthropic:claude-haiku-4-5")
    monkeypatch.setenv("MYLLM_BASE_URL", "http://127.0.0.1:9999/v1")
    assert load_settings().models == ["myllm:local-7b", "Anthropic:claude-haiku-4-5"]


# --- MIN_EXPECTED_PROFIT_USD in the risk verdict ---------------------------------------------------------

def _verdict(min_profit: float, tps: tuple[float, ...] = (104_000.0,)) -> object:
    proposal = Proposal("BTCUSDT", Action.LONG, 0.65, 100_000.0, 98_000.0, tps, None, 3, 0, 1.0, "test", "hash", 0)
    policy = replace(RiskPolicy(), min_expected_profit_usd=min_profit)
    return evaluate(proposal, RiskContext(equity=10_000.0, now_ms=1_000_000, brackets=BUNDLED["BTCUSDT"], filters=BTC,
                                          atr=800.0, atr_pct_percentile=0.5, regime=Regime.TRENDING_UP, policy=policy))


def test_an_entry_expected_to_earn_less_than_the_minimum_is_rejected() -> None:
    # 0.05 BTC (1 % of 10,000 over a 2,000 stop) × 4,000 to the target − 0.05 × 100 round-trip taker fees = 195
    assert _verdict(0.0).status == "approved"  # type: ignore[attr-defined]
    assert _verdict(195.0).status == "approved"  # type: ignore[attr-defined]
    v = _verdict(196.0)
    assert v.status == "rejected" and v.reasons == ("expected_profit_below_min",)  # type: ignore[attr-defined]
    assert v.details["expected_profit_usd"] == pytest.approx(195.0)  # type: ignore[attr-defined]


def test_without_a_take_profit_the_default_target_is_the_one_measured() -> None:
    # no target proposed: max(MIN_REWARD_RISK, 2) R = 4,000 away, the same 195 USDT
    assert _verdict(195.0, tps=()).status == "approved"  # type: ignore[attr-defined]
    assert _verdict(196.0, tps=()).reasons == ("expected_profit_below_min",)  # type: ignore[attr-defined]
