"""The seam between an analyst and a provider SDK: one `complete()` call, one `Completion`."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

VOTE_JSON_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "symbol": {"type": "string"},
        "action": {"type": "string", "enum": ["LONG", "SHORT", "HOLD", "CLOSE"]},
        "confidence": {"type": "number", "minimum": 0, "maximum": 1},
        "leverage": {"type": ["number", "null"]},
        "stop_loss": {"type": ["number", "null"]},
        "take_profits": {"type": "array", "items": {"type": "number"}},
        "horizon": {"type": ["string", "null"]},
        "reasoning": {"type": "string"},
    },
    "required": ["symbol", "action", "confidence", "leverage", "stop_loss", "take_profits", "horizon", "reasoning"],
    "additionalProperties": False,
}


@dataclass(frozen=True, slots=True)
class Completion:
    """One provider reply. `text` is the JSON text (a tool call's input is serialised);
    `refusal` is set when the provider flagged a refusal (or a content filter stopped the reply);
    `ambiguous` says why the reply holds more than one vote (several tool calls or choices)."""

    text: str
    tokens_in: int = 0
    tokens_out: int = 0
    refusal: str | None = None
    finish_reason: str | None = None
    ambiguous: str | None = None


@dataclass(frozen=True, slots=True)
class Message:
    role: str  # "user" | "assistant"
    content: str


class ModelClient(Protocol):
    """A provider adapter. Raises the SDK's exceptions; retries are the caller's business."""

    provider: str
    model: str

    async def complete(self, system: str, messages: list[Message]) -> Completion: ...

    async def close(self) -> None: ...
