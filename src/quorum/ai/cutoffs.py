"""What a language model already knows: training-data cutoffs, and contamination of a period.

A model asked about a period before its training cutoff may have read what happened next; a
backtest or a replayed decision over that period measures its memory, not its judgement
(published measurements put the inflated alpha at 15-22 percentage points). So:

- every configured model has a cutoff: `<PROVIDER>_KNOWLEDGE_CUTOFF` (YYYY-MM-DD, or YYYY-MM for
  the end of that month) for all of a provider's models, else the bundled table below;
- a model with no known cutoff (not in the table, an alias whose target moves such as
  `deepseek-chat` or `*-latest`) is treated as knowing everything: contaminated for any past period;
- a period is contaminated for a model when it starts before the model's cutoff.

The table holds the providers' published *training-data* cutoffs (the later of "reliable
knowledge" and "training data" where both are given), as the last day of the month named.
Keys match a model id exactly or as a prefix followed by `-`, `_`, `@` or `:`, longest key first,
so `claude-3-5-sonnet-20241022` is `claude-3-5-sonnet`, but `gpt-5.1` is not `gpt-5` (unknown).
"""

from __future__ import annotations

import calendar
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime

# model id prefix -> training-data cutoff (provider documentation, as of 2026-11)
CUTOFFS: dict[str, date] = {
    "gpt-3.5-turbo": date(2021, 9, 30),
    "gpt-4": date(2021, 9, 30),
    "gpt-4-turbo": date(2023, 12, 31),
    "gpt-4o": date(2023, 10, 31),
    "gpt-4o-mini": date(2023, 10, 31),
    "gpt-4.5-preview": date(2023, 10, 31),
    "gpt-4.1": date(2024, 6, 30),
    "gpt-4.1-mini": date(2024, 6, 30),
    "gpt-4.1-nano": date(2024, 6, 30),
    "o1": date(2023, 10, 31),
    "o1-mini": date(2023, 10, 31),
    "o3-mini": date(2023, 10, 31),
    "o3": date(2024, 6, 30),
    "o4-mini": date(2024, 6, 30),
    "gpt-5": date(2024, 9, 30),
    "gpt-5-mini": date(2024, 5, 31),
    "gpt-5-nano": date(2024, 5, 31),
    "claude-3-haiku": date(2023, 8, 31),
    "claude-3-sonnet": date(2023, 8, 31),
    "claude-3-opus": date(2023, 8, 31),
    "claude-3-5-sonnet": date(2024, 4, 30),
    "claude-3-5-haiku": date(2024, 7, 31),
    "claude-3-7-sonnet": date(2024, 11, 30),
    "claude-sonnet-4": date(2025, 3, 31),
    "claude-opus-4": date(2025, 3, 31),
    "claude-opus-4-1": date(2025, 3, 31),
    "claude-sonnet-4-5": date(2025, 7, 31),
    "claude-haiku-4-5": date(2025, 7, 31),
    "claude-opus-4-5": date(2025, 8, 31),
    "gemini-1.5-pro": date(2023, 11, 30),
    "gemini-1.5-flash": date(2023, 11, 30),
    "gemini-2.0-flash": date(2024, 8, 31),
    "gemini-2.5-pro": date(2025, 1, 31),
    "gemini-2.5-flash": date(2025, 1, 31),
    "llama-3.1": date(2023, 12, 31),
    "llama-3.3": date(2023, 12, 31),
    "llama-4": date(2024, 8, 31),
}

_BOUNDARY = ("-", "@", ":", "_")


class CutoffError(ValueError):
    """A `<PROVIDER>_KNOWLEDGE_CUTOFF` value that is not a date."""


class ContaminatedPeriod(ValueError):
    """A past period some configured model's training data covers, without --allow-contaminated."""


@dataclass(frozen=True)
class Cutoff:
    voter: str          # provider:model
    until: date | None  # None: unknown (treated as knowing everything)
    source: str         # "table", "<PROVIDER>_KNOWLEDGE_CUTOFF", "unknown"

    @property
    def until_ms(self) -> int | None:
        """The end of the cutoff day (UTC), epoch ms."""
        if self.until is None:
            return None
        end = datetime(self.until.year, self.until.month, self.until.day, tzinfo=UTC)
        return int(end.timestamp() * 1000) + 86_400_000

    def knew(self, start_ms: int) -> bool:
        """Does this model's training data reach into a period starting at `start_ms`?"""
        until = self.until_ms
        return until is None or start_ms < until

    def label(self) -> str:
        known = f"training data to {self.until.isoformat()}" if self.until else "training cutoff unknown"
        return f"contaminated: {self.voter} knew this period ({known})"


def parse_cutoff(name: str, value: str) -> date:
    """YYYY-MM-DD, or YYYY-MM meaning the last day of that month."""
    text = value.strip()
    try:
        if len(text) == 7:
            y, m = int(text[:4]), int(text[5:7])
            return date(y, m, calendar.monthrange(y, m)[1])
        return date.fromisoformat(text)
    except ValueError:
        raise CutoffError(f"{name}={value!r}: not a date; write it as YYYY-MM-DD or YYYY-MM "
                          "(the model's training-data cutoff)") from None


def table_cutoff(model: str) -> date | None:
    """The bundled table's cutoff for a model id (vendor prefixes like `openai/` ignored)."""
    mid = model.strip().lower().rsplit("/", 1)[-1]
    if "latest" in mid:
        return None  # an alias whose target moves
    best = None
    for key in CUTOFFS:
        if mid == key or (mid.startswith(key) and mid[len(key)] in _BOUNDARY):
            if best is None or len(key) > len(best):
                best = key
    return CUTOFFS[best] if best else None


def cutoff_for(voter: str, env: Mapping[str, str]) -> Cutoff:
    """The cutoff of one `provider:model` voter."""
    provider, _, model = voter.partition(":")
    name = f"{provider.upper()}_KNOWLEDGE_CUTOFF"
    raw = (env.get(name) or "").strip()
    if raw:
        return Cutoff(voter, parse_cutoff(name, raw), name)
    found = table_cutoff(model or provider)
    return Cutoff(voter, found, "table" if found else "unknown")


def contamination(voters: Sequence[str], start_ms: int, env: Mapping[str, str]) -> dict[str, str]:
    """voter → its contamination label, for every model voter that knew a period starting at
    `start_ms` (empty: the period is clean for all of them)."""
    out = {}
    for v in voters:
        c = cutoff_for(v, env)
        if c.knew(start_ms):
            out[v] = c.label()
    return out


def refusal(labels: Mapping[str, str], start_ms: int, env: Mapping[str, str]) -> str:
    """The one line that refuses a contaminated run."""
    first = next(iter(labels))
    c = cutoff_for(first, env)
    start = datetime.fromtimestamp(start_ms / 1000, UTC).date().isoformat()
    known = (f"its training data runs to {c.until.isoformat()}" if c.until else
             f"its training cutoff is unknown (set {first.partition(':')[0].upper()}_KNOWLEDGE_CUTOFF)")
    more = f" (and {len(labels) - 1} more)" if len(labels) > 1 else ""
    return (f"{first}{more} may know what happened after {start}: {known}; start after the cutoff, "
            "or add --allow-contaminated to run anyway with every output labelled")


def checked_period(voters: Sequence[str], start_ms: int, allow: bool) -> dict[str, str]:
    """voter → label for the `voters` that knew a period starting at `start_ms` (settings and
    `.env` read for the cutoffs); `ContaminatedPeriod` (one line) when there are some and not
    `allow`, `CutoffError` for a bad cutoff setting."""
    from quorum.config.values import env_with_dotenv

    env = env_with_dotenv()
    labels = contamination(voters, start_ms, env)
    if labels and not allow:
        raise ContaminatedPeriod(refusal(labels, start_ms, env))
    return labels
