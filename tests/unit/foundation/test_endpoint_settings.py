"""BINANCE_FAPI_URL / BINANCE_FSTREAM_URL: validated base URLs, one-line errors naming the variable."""

import pytest

from quorum.config import ConfigError, load_settings


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch, tmp_cwd):
    import os

    for key in list(os.environ):
        if key.startswith("BINANCE_"):
            monkeypatch.delenv(key, raising=False)


def test_defaults_are_binance_production_hosts():
    s = load_settings()
    assert s.binance_fapi_url == "https://fapi.binance.com"
    assert s.binance_fstream_url == "wss://fstream.binance.com"


@pytest.mark.parametrize(("var", "value", "expected"), [
    ("BINANCE_FAPI_URL", "http://127.0.0.1:8123/", "http://127.0.0.1:8123"),
    ("BINANCE_FAPI_URL", "HTTPS://proxy.example:8443/binance/", "https://proxy.example:8443/binance"),
    ("BINANCE_FAPI_URL", "https://fapi.binance.com", "https://fapi.binance.com"),
    ("BINANCE_FSTREAM_URL", "ws://127.0.0.1:8123", "ws://127.0.0.1:8123"),
    ("BINANCE_FSTREAM_URL", "wss://fstream.binance.com/ws", "wss://fstream.binance.com"),  # /ws is Quorum's
    ("BINANCE_FSTREAM_URL", "wss://mirror.example/stream-proxy/", "wss://mirror.example/stream-proxy"),
])
def test_good_urls_are_normalised(monkeypatch, var, value, expected):
    monkeypatch.setenv(var, value)
    assert getattr(load_settings(), var.lower()) == expected


@pytest.mark.parametrize(("var", "value", "expected"), [
    ("BINANCE_FAPI_URL", "fapi.binance.com", "must be an http(s) URL"),
    ("BINANCE_FAPI_URL", "wss://fstream.binance.com", "must be an http(s) URL"),
    ("BINANCE_FAPI_URL", "https://", "with a host"),
    ("BINANCE_FAPI_URL", "https://fapi.binance.com:99999", "must be an http(s) URL"),
    ("BINANCE_FAPI_URL", "https://fapi.binance.com/?x=1", "without query or fragment"),
    ("BINANCE_FAPI_URL", "https://fapi.binance.com/#top", "without query or fragment"),
    ("BINANCE_FSTREAM_URL", "https://fstream.binance.com", "must be a ws(s) URL"),
    ("BINANCE_FSTREAM_URL", "fstream.binance.com", "must be a ws(s) URL"),
    ("BINANCE_FSTREAM_URL", "ws://", "with a host"),
])
def test_bad_url_is_one_line_naming_the_variable(monkeypatch, var, value, expected):
    monkeypatch.setenv(var, value)
    with pytest.raises(ConfigError) as info:
        load_settings()
    message = str(info.value)
    assert message.startswith(f"{var}={value!r}: ")
    assert expected in message and "\n" not in message


def test_credentials_in_a_url_are_refused_and_not_echoed(monkeypatch):
    monkeypatch.setenv("BINANCE_FAPI_URL", "https://user:hunter2@proxy.example")
    with pytest.raises(ConfigError) as info:
        load_settings()
    message = str(info.value)
    assert "BINANCE_FAPI_URL=" in message and "credentials" in message
    assert "hunter2" not in message and "user:hunter2" not in message
