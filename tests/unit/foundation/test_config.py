import logging

import pytest
import structlog

from quorum.config import ConfigError, TradingMode, load_settings, parse_partial_exits


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch, tmp_cwd):
    import os

    for key in list(os.environ):
        if key.startswith(("TRADING_", "MAX_", "BINANCE_", "API_", "DATABASE_", "REDIS_", "OPENAI", "MODELS")):
            monkeypatch.delenv(key, raising=False)


def test_defaults_are_paper_and_safe():
    s = load_settings()
    assert s.trading_mode is TradingMode.PAPER
    assert s.api_host == "127.0.0.1"
    assert s.timeframes == ["15m", "1h", "4h"]
    assert s.cache_ttl_seconds == 900


@pytest.mark.parametrize(
    ("var", "value", "expected"),
    [
        ("MAX_LEVERAGE", "500", "MAX_LEVERAGE='500'"),
        ("MAX_LEVERAGE", "abc", "MAX_LEVERAGE='abc'"),
        ("RISK_PER_TRADE_PCT", "0", "RISK_PER_TRADE_PCT='0'"),
        ("MIN_AI_CONFIDENCE", "1.5", "MIN_AI_CONFIDENCE='1.5'"),
        ("TRADING_MODE", "yolo", "allowed: backtest, paper, live"),
        ("TIMEFRAMES", "15m,7m", "unknown timeframe '7m'"),
        ("MODELS", "gpt-4", "provider:model"),
        ("PARTIAL_EXITS", "0.6@1R,0.6@2R", "less than 1"),
        ("API_PORT", "70000", "<= 65535"),
    ],
)
def test_bad_value_names_variable_problem_and_range(monkeypatch, var, value, expected):
    monkeypatch.setenv(var, value)
    with pytest.raises(ConfigError) as info:
        load_settings()
    message = str(info.value)
    assert var in message
    assert expected in message
    assert "\n" not in message


def test_range_is_stated_for_numeric_bounds(monkeypatch):
    monkeypatch.setenv("MAX_LEVERAGE", "0")
    with pytest.raises(ConfigError, match=r"allowed: >= 1 and <= 125"):
        load_settings()


def test_cross_field_check(monkeypatch):
    monkeypatch.setenv("DECISION_TIMEFRAME", "15m")
    monkeypatch.setenv("EXECUTION_TIMEFRAME", "4h")
    with pytest.raises(ConfigError, match="multiple of EXECUTION_TIMEFRAME"):
        load_settings()


def test_symbols_are_normalised(monkeypatch):
    monkeypatch.setenv("SYMBOLS", "btc/usdt, ETH/USDT:USDT,solusdt")
    assert load_settings().symbols == ["BTCUSDT", "ETHUSDT", "SOLUSDT"]


def test_dotenv_file_is_read(tmp_cwd):
    (tmp_cwd / ".env").write_text("MAX_LEVERAGE=3\nSYMBOLS=BTCUSDT\n")
    s = load_settings()
    assert s.max_leverage == 3
    assert s.symbols == ["BTCUSDT"]


def test_live_refuses_without_keys_and_token(monkeypatch):
    monkeypatch.setenv("TRADING_MODE", "live")
    s = load_settings()
    with pytest.raises(ConfigError) as info:
        s.check_can_start()
    assert "BINANCE_API_KEY" in str(info.value) and "API_TOKEN" in str(info.value)
    monkeypatch.setenv("BINANCE_API_KEY", "k" * 16)
    monkeypatch.setenv("BINANCE_API_SECRET", "s" * 16)
    with pytest.raises(ConfigError, match="API_TOKEN"):
        load_settings().check_can_start()
    monkeypatch.setenv("API_TOKEN", "t" * 16)
    load_settings().check_can_start()


def test_paper_starts_without_keys():
    load_settings().check_can_start()


SECRETS = {
    "BINANCE_API_KEY": "binance-key-AAAA1111",
    "BINANCE_API_SECRET": "binance-secret-BBBB2222",
    "API_TOKEN": "api-token-CCCC3333",
    "DATABASE_URL": "postgresql://quorum:dbpass-DDDD4444@db:5432/quorum",
    "OPENAI_API_KEY": "sk-openai-EEEE5555",
    "TELEGRAM_BOT_TOKEN": "123:tg-FFFF6666",
}


def test_secrets_never_appear_in_repr_public_view_or_errors(monkeypatch):
    for k, v in SECRETS.items():
        monkeypatch.setenv(k, v)
    monkeypatch.setenv("MODELS", "openai:gpt-4.1-mini")
    s = load_settings()
    rendered = repr(s) + str(s.public_view()) + repr(s.provider("openai"))
    for secret in SECRETS.values():
        assert secret not in rendered
    assert s.public_view()["api_token"] == "set"
    assert set(SECRETS.values()) <= set(s.secret_values())
    monkeypatch.setenv("MAX_LEVERAGE", "999")
    with pytest.raises(ConfigError) as info:
        load_settings()
    for secret in SECRETS.values():
        assert secret not in str(info.value)


def test_bad_secret_value_is_not_echoed(monkeypatch):
    monkeypatch.setenv("API_PORT", "x")
    monkeypatch.setenv("API_TOKEN", "tok-GGGG7777")
    with pytest.raises(ConfigError) as info:
        load_settings()
    assert "tok-GGGG7777" not in str(info.value)


def test_logging_redacts_configured_secrets(monkeypatch, capsys):
    from quorum.logging import configure_logging

    for k, v in SECRETS.items():
        monkeypatch.setenv(k, v)
    configure_logging(load_settings(), fmt="json")
    log = structlog.get_logger("test")
    log.info("connecting", url=SECRETS["DATABASE_URL"], headers={"Authorization": f"Bearer {SECRETS['API_TOKEN']}"})
    logging.getLogger("stdlib").warning("key is %s", SECRETS["OPENAI_API_KEY"])
    try:
        raise RuntimeError(f"bad key {SECRETS['BINANCE_API_KEY']}")
    except RuntimeError as exc:
        log.error("failed", error=exc)
    err = capsys.readouterr().err
    assert "connecting" in err and "failed" in err and "key is ***" in err
    for secret in SECRETS.values():
        assert secret not in err


def test_provider_config_reads_per_provider_variables(monkeypatch):
    monkeypatch.setenv("DEEPSEEK_API_KEY", "ds-key-1234")
    monkeypatch.setenv("DEEPSEEK_TIMEOUT_SECONDS", "300")
    s = load_settings()
    p = s.provider("deepseek")
    assert p.api_key is not None and p.api_key.get_secret_value() == "ds-key-1234"
    assert p.base_url == "https://api.deepseek.com/v1"
    assert p.timeout_seconds == 300
    monkeypatch.setenv("DEEPSEEK_TIMEOUT_SECONDS", "-1")
    with pytest.raises(ConfigError, match="DEEPSEEK_TIMEOUT_SECONDS"):
        s.provider("deepseek")


def test_partial_exit_plan_parsing():
    assert parse_partial_exits("0.33@2R,0.33@1R") == [(0.33, 1.0), (0.33, 2.0)]
    assert parse_partial_exits("") == []
    with pytest.raises(ValueError, match="0.33@1R"):
        parse_partial_exits("half@1R")
