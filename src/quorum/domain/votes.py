"""A voter's answer as recorded: `CallRecord` (one `model_votes` row: prompt version, reply,
parsed vote or abstention, latency, tokens, cost) and the vote <-> dict mapping. Plain data, no
I/O: the analysts (`quorum.ai.analysts`, which re-exports them) build records, the store writes
and reads them.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from quorum.domain.models import Action, Vote


@dataclass(frozen=True, slots=True)
class CallRecord:
    """Everything about one voter's answer to one question (a `model_votes` row)."""

    voter: str
    provider: str
    model: str
    symbol: str
    snapshot_hash: str
    prompt_version: str
    raw_reply: str | None = None
    parsed: dict[str, Any] | None = None
    action: str | None = None
    confidence: float | None = None
    abstain_reason: str | None = None
    latency_ms: int = 0
    tokens_in: int = 0
    tokens_out: int = 0
    cost_usd: float = 0.0
    cached: bool = False
    error: str | None = None
    attempts: int = 0
    notes: tuple[str, ...] = ()
    usage_anomaly: str | None = None  # reported usage not trusted (see `quorum.ai.cost.checked_usage`)
    contaminated: str | None = None  # the period was in the model's training data (`quorum.ai.cutoffs`)


def vote_to_dict(v: Vote) -> dict[str, Any]:
    """The vote as a JSON-ready dict (what `CallRecord.parsed` holds)."""
    d = asdict(v)
    d["action"] = v.action.value
    d["take_profits"] = list(v.take_profits)
    return d


def vote_from_dict(d: dict[str, Any]) -> Vote:
    """The vote a `vote_to_dict` dict (or a stored `parsed_vote`) describes."""
    return Vote(voter=d["voter"], symbol=d["symbol"], action=Action(d["action"]), confidence=float(d["confidence"]),
                leverage=d.get("leverage"), stop_loss=d.get("stop_loss"),
                take_profits=tuple(float(x) for x in d.get("take_profits") or ()), horizon=d.get("horizon"),
                reasoning=d.get("reasoning") or "")
