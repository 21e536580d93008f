"""Training-data cutoffs: the bundled table, the per-provider override, and what counts as a
contaminated period."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest

from quorum.ai.cutoffs import CutoffError, contamination, cutoff_for, parse_cutoff, refusal, table_cutoff


def ms(day: str) -> int:
    return int(datetime.fromisoformat(day).replace(tzinfo=UTC).timestamp() * 1000)


@pytest.mark.parametrize(("model", "expected"), [
    ("gpt-4o", date(2023, 10, 31)),
    ("gpt-4o-mini-2024-07-18", date(2023, 10, 31)),     # dated snapshot of a listed model
    ("gpt-4.1-mini", date(2024, 6, 30)),
    ("claude-3-5-sonnet-20241022", date(2024, 4, 30)),
    ("claude-sonnet-4-5-20250929", date(2025, 7, 31)),  # the longest key wins over claude-sonnet-4
    ("claude-sonnet-4-20250514", date(2025, 3, 31)),
    ("openai/gpt-4o", date(2023, 10, 31)),               # an OpenAI-compatible router's vendor prefix
    ("GPT-4O", date(2023, 10, 31)),
    ("gpt-5.1", None),                                   # not gpt-5: a later model, unknown here
    ("gpt-4o-latest", None),                             # an alias whose target moves
    ("deepseek-chat", None),
    ("my-finetune", None),
])
def test_table_lookup(model: str, expected: date | None) -> None:
    assert table_cutoff(model) == expected


def test_the_provider_setting_overrides_the_table_and_a_month_means_its_last_day() -> None:
    env = {"OPENAI_KNOWLEDGE_CUTOFF": "2025-02"}
    c = cutoff_for("openai:gpt-4o", env)
    assert (c.until, c.source) == (date(2025, 2, 28), "OPENAI_KNOWLEDGE_CUTOFF")
    assert cutoff_for("anthropic:claude-3-5-haiku", env).until == date(2024, 7, 31)  # other providers: table
    assert parse_cutoff("X", "2024-06-15") == date(2024, 6, 15)


def test_a_bad_cutoff_setting_names_the_variable() -> None:
    with pytest.raises(CutoffError, match=r"DEEPSEEK_KNOWLEDGE_CUTOFF='mid 2024'.*YYYY-MM-DD"):
        cutoff_for("deepseek:deepseek-chat", {"DEEPSEEK_KNOWLEDGE_CUTOFF": "mid 2024"})


def test_a_period_is_contaminated_when_it_starts_before_the_end_of_the_cutoff_day() -> None:
    voters = ["openai:gpt-4.1-mini", "deepseek:deepseek-chat", "anthropic:claude-haiku-4-5"]
    # gpt-4.1-mini's data runs to 2024-06-30 (inclusive): a period from that day is contaminated
    assert set(contamination(voters, ms("2024-06-30T23:59"), {})) == set(voters)
    late = contamination(voters, ms("2024-07-01"), {})
    assert set(late) == {"deepseek:deepseek-chat", "anthropic:claude-haiku-4-5"}
    assert late["deepseek:deepseek-chat"] == \
        "contaminated: deepseek:deepseek-chat knew this period (training cutoff unknown)"
    assert late["anthropic:claude-haiku-4-5"] == \
        "contaminated: anthropic:claude-haiku-4-5 knew this period (training data to 2025-07-31)"
    # after every cutoff, with the unknown one declared: clean
    assert contamination(voters, ms("2025-08-01"), {"DEEPSEEK_KNOWLEDGE_CUTOFF": "2025-01-31"}) == {}


def test_the_refusal_names_the_model_its_cutoff_and_the_way_out() -> None:
    labels = contamination(["anthropic:claude-haiku-4-5", "openai:x"], ms("2025-01-01"), {})
    line = refusal(labels, ms("2025-01-01"), {})
    assert line.startswith("anthropic:claude-haiku-4-5 (and 1 more) may know what happened after 2025-01-01")
    assert "2025-07-31" in line and "--allow-contaminated" in line and "\n" not in line
    unknown = refusal(contamination(["openai:x"], ms("2025-01-01"), {}), ms("2025-01-01"), {})
    assert "OPENAI_KNOWLEDGE_CUTOFF" in unknown
