"""Values made storable in Postgres (quorum.store.text)."""

from __future__ import annotations

from quorum.store.text import BIGINT_MAX, clamp_bigint, storable_count, storable_json, storable_text


def test_storable_text_drops_nul_and_controls_keeps_tab_newline_and_replaces_surrogates() -> None:
    hostile = "up\x00trend \ud800 bell\x07 esc\x1b[31m del\x7f c1\x85 cr\r tab\tnewline\n end"
    assert storable_text(hostile) == "uptrend \ufffd bell esc[31m del c1 cr tab\tnewline\n end"
    assert storable_text("plain ✓ text — 中文 🙂") == "plain ✓ text — 中文 🙂"
    assert storable_text(None) is None
    storable_text(hostile).encode("utf-8")  # encodable


def test_storable_json_cleans_keys_values_and_numbers() -> None:
    assert storable_json({"a\x00": ["\ud83d", 2**70, float("nan"), ("x\x01",), True, 1.5]}) == \
        {"a": ["\ufffd", BIGINT_MAX, None, ["x"], True, 1.5]}


def test_counts_are_clamped_to_bigint() -> None:
    assert storable_count(-5) == 0 and storable_count(10**30) == BIGINT_MAX and storable_count(None) == 0
    assert storable_count(float("inf")) == BIGINT_MAX and clamp_bigint(-(10**30)) == -(2**63)
