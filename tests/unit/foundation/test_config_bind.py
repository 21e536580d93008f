"""Bind safety and finite numbers in the settings: API_HOST is an IP address or a hostname (empty
and numeric shorthands refused), a non-loopback bind needs API_TOKEN, and no numeric setting
takes `inf` or `nan`."""

from __future__ import annotations

import typing

import pytest

from quorum.config import ConfigError, Settings, load_settings


def _numeric_fields() -> list[str]:
    out = []
    for name, field in Settings.model_fields.items():
        args = typing.get_args(field.annotation) or (field.annotation,)
        if any(a in (int, float) for a in args):
            out.append(name)
    return out


@pytest.mark.parametrize("name", _numeric_fields())
@pytest.mark.parametrize("value", ["inf", "-inf", "nan", "Infinity"])
def test_every_numeric_setting_refuses_inf_and_nan(name: str, value: str) -> None:
    with pytest.raises(ConfigError, match=rf"^{name.upper()}="):
        load_settings(_env_file=None, **{name: value})


def test_there_are_numeric_settings_to_check() -> None:
    assert {"capital_per_position", "min_quote_volume_usd", "initial_capital", "api_port"} <= set(_numeric_fields())


@pytest.mark.parametrize("host, why", [
    ("", "empty"), ("   ", "empty"), ("0", "numeric shorthands"), ("127.1", "numeric shorthands"),
    ("0x7f.1", "not an IP address"), ("bad host", "not an IP address"), ("-x.example", "not an IP address"),
    ("http://127.0.0.1", "not an IP address"),
])
def test_api_host_must_be_an_address_or_a_hostname(host: str, why: str) -> None:
    with pytest.raises(ConfigError, match=rf"^API_HOST=.*{why}"):
        load_settings(_env_file=None, api_host=host)


@pytest.mark.parametrize("host, loopback", [
    ("127.0.0.1", True), ("localhost", True), ("::1", True), ("127.0.0.2", True),
    ("0.0.0.0", False), ("::", False), ("192.168.1.10", False), ("bot.example.com", False),
])
def test_a_non_loopback_bind_needs_api_token(host: str, loopback: bool) -> None:
    s = load_settings(_env_file=None, api_host=host)
    assert s.api_is_loopback is loopback
    if loopback:
        s.check_bind()
    else:
        with pytest.raises(ConfigError, match=f"API_HOST={host} exposes the API.*API_TOKEN"):
            s.check_bind()
        with pytest.raises(ConfigError, match="API_TOKEN"):
            s.check_can_start()
        load_settings(_env_file=None, api_host=host, api_token="t0ken-long-enough").check_bind()


def test_provider_numbers_and_partial_exits_refuse_inf_and_nan(monkeypatch: pytest.MonkeyPatch) -> None:
    s = load_settings(_env_file=None)
    for var, value in [("OPENAI_TIMEOUT_SECONDS", "nan"), ("OPENAI_TEMPERATURE", "nan"),
                       ("OPENAI_TEMPERATURE", "inf"), ("OPENAI_TIMEOUT_SECONDS", "inf")]:
        monkeypatch.setenv(var, value)
        with pytest.raises(ConfigError, match=var):
            s.provider("openai")
        monkeypatch.delenv(var)
    for spec in ("0.3@infR", "0.3@nanR", "nan@1R"):
        with pytest.raises(ConfigError, match="PARTIAL_EXITS"):
            load_settings(_env_file=None, partial_exits=spec)
