"""quorum.scrub: key-like material goes, Quorum's own identifiers and ordinary text stay."""

from __future__ import annotations

import hashlib
import json

import pytest

from quorum.domain.orders import client_order_id
from quorum.scrub import looks_like_key, register_secrets, scrub, scrub_value

CONFIGURED = "cfg-Zq81/Lw3+Rt7Yx5Kp2Mv9Nb"  # a configured secret of no known shape
register_secrets([CONFIGURED, "postgresql://quorum:DbPw-7f3a9c@db:5432/quorum"])


@pytest.mark.parametrize("text, gone", [
    ("Incorrect API key provided: sk-proj-****************************abcd. You can find it",
     "sk-proj-****************************abcd"),
    ("Incorrect API key provided: sk-proj-Qz7L…abcd", "Qz7L…abcd"),
    ("invalid x-api-key sk-ant-api03-Wk5Hp2Zr8LqDv3Mn6Bx1Tq9e-AAAA", "Wk5Hp2Zr8LqDv3Mn6Bx1Tq9e"),
    ("masked sk-ant-...", "sk-ant-..."),
    ("escaped {\\\"api_key\\\":\\\"sk-proj-Ab1Cd2\\/Ef3Gh4\\\"}", "Ef3Gh4"),
    (f"configured {CONFIGURED}!", CONFIGURED),
    ("json copy " + json.dumps(CONFIGURED), "Lw3+Rt7Yx5Kp2Mv9Nb"),
    ("slash-escaped " + CONFIGURED.replace("/", "\\/"), "Lw3+Rt7Yx5Kp2Mv9Nb"),
    ("url-quoted cfg-Zq81%2FLw3%2BRt7Yx5Kp2Mv9Nb", "Lw3%2BRt7Yx5Kp2Mv9Nb"),
    ("password DbPw-7f3a9c in a message", "DbPw-7f3a9c"),
    ("redis://:r3dis-pass@cache:6379/0", "r3dis-pass"),
    ("Authorization: Bearer eyJhbGciOi.J9xYz-abc", "eyJhbGciOi"),
    ("GET /fapi/v1/order?symbol=BTCUSDT&apiKey=AbC123&signature=9f8e7d", "AbC123"),
    ("GET /fapi/v1/order?symbol=BTCUSDT&apiKey=AbC123&signature=9f8e7d", "9f8e7d"),
    ('{"key": "AIzaSyD-9tSrke72"}', "AIzaSyD-9tSrke72"),
    ("OPENAI_API_KEY=whatever-value", "whatever-value"),
    ("https://api.telegram.org/bot7123456789:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw/sendMessage", "AAHdqTcv"),
    ("binance said vmPUZE6mv9SD5VNHk4HlWFsOr6aKE2zvsw0MuIgwCIPy6utIco14y7Ju91duEh8A", "vmPUZE6mv9"),
])
def test_key_like_material_is_replaced(text: str, gone: str) -> None:
    out = scrub(text)
    assert gone not in out, out
    assert "***" in out


def test_quorum_identifiers_and_ordinary_text_are_untouched() -> None:
    snapshot_hash = hashlib.sha256(b"snapshot").hexdigest()
    keep = [
        snapshot_hash,
        client_order_id("paper", "p-d-BTCUSDT-1759996800000-ab12cd34", "stop"),
        "qpS-c27c01335659c5a7301d-0",
        "d-1000PEPEUSDT-1759996800000-ab12cd34",
        "p-d-BTCUSDT-1759996800000-ab12cd34",
        "p-0123456789abcdef0123",
        "1f0e4c3a-9b2d-4e8f-a1b2-c3d4e5f60718",
        "claude-3-5-sonnet-20241022 gpt-4.1-mini-2025-04-14 openai:gpt-4.1-mini",
        "InvalidAuthorizationSpecificationError loss_streak_cooldown_minutes",
        "tokens_in=55 max_tokens: 800 risk-on task-force 2025-10-09T08:00:00+00:00",
        "consensus LONG 0.81 (2/3 voters agree); stop 61234.5, take profit 63500",
        "risk.breakers.paper rules:ema-trend BTCUSDT 1000SHIBUSDT",
    ]
    for text in keep:
        assert scrub(text) == text
    assert not looks_like_key(snapshot_hash.upper())


def test_structured_values_are_scrubbed_by_value_and_secret_named_keys() -> None:
    value = {"error": "401 sk-proj-Ab12Cd34Ef56", "api_key": "plain", "nested": [("x", {"token": "t0k"})],
             "tokens_in": 12, "hash": "ab" * 32, "key": "risk.breakers.paper"}
    out = scrub_value(value)
    assert out == {"error": "401 sk-***", "api_key": "***", "nested": [("x", {"token": "***"})],
                   "tokens_in": 12, "hash": "ab" * 32, "key": "risk.breakers.paper"}
    assert scrub_value(ValueError(f"bad {CONFIGURED}")) == "ValueError: bad ***"
    assert scrub("") == "" and scrub("sk-***") == "sk-***"


def test_a_configured_key_cut_short_or_masked_after_its_start_is_replaced() -> None:
    key = "bnkey-Rt7Yx5Kp2Mv9Nb4Lq8Wz3"
    register_secrets([key])
    for text in (f"error: {key[:14]}", f"key {key[:12]}****Wz3 rejected", f"{key[:-3]}... (truncated)"):
        out = scrub(text)
        assert key[:10] not in out and "***" in out, out
