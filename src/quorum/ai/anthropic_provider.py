"""Anthropic through the official `anthropic` SDK: the vote is requested as a forced tool call
(`submit_vote`) whose input schema is the vote schema; a plain-text reply is still accepted and
goes through the tolerant parser. Several tool calls with different inputs are several votes:
the reply is ambiguous (an abstention), never resolved to one of them. SDK retries are off (see
`quorum.ai.retry`)."""

from __future__ import annotations

import json
from typing import Any

import anthropic

from quorum.ai.client import VOTE_JSON_SCHEMA, Completion, Message

TOOL_NAME = "submit_vote"


class AnthropicClient:
    def __init__(
        self,
        model: str,
        *,
        api_key: str,
        base_url: str | None,
        timeout_seconds: float,
        temperature: float,
        max_tokens: int = 800,
        provider: str = "anthropic",
    ) -> None:
        self.provider = provider
        self.model = model
        self.temperature = temperature  # not sent: current Messages API versions dropped it
        self.max_tokens = max_tokens
        kwargs: dict[str, Any] = {"api_key": api_key, "timeout": timeout_seconds, "max_retries": 0}
        if base_url:
            kwargs["base_url"] = base_url
        self._client = anthropic.AsyncAnthropic(**kwargs)

    async def complete(self, system: str, messages: list[Message]) -> Completion:
        resp = await self._client.messages.create(  # type: ignore[call-overload]
            model=self.model,
            max_tokens=self.max_tokens,
            system=system,
            messages=[{"role": m.role, "content": m.content} for m in messages],
            tools=[{"name": TOOL_NAME, "description": "Submit your vote as structured data.",
                    "input_schema": VOTE_JSON_SCHEMA}],
            tool_choice={"type": "tool", "name": TOOL_NAME},
        )
        texts: list[str] = []
        calls: list[str] = []  # every tool call, serialised (each one is a vote)
        for block in resp.content:
            btype = getattr(block, "type", None)
            if btype == "tool_use":
                calls.append(json.dumps(block.input))  # type: ignore[union-attr]
            elif btype == "text":
                texts.append(block.text)  # type: ignore[union-attr]
        text = "\n".join(calls) if calls else "".join(texts)
        distinct = len(set(calls))
        stop = resp.stop_reason
        return Completion(
            text=text,
            tokens_in=resp.usage.input_tokens if resp.usage else 0,
            tokens_out=resp.usage.output_tokens if resp.usage else 0,
            # stopped by the safety classifiers: whatever came (even a whole tool call) is not an answer
            refusal=f"stopped by the content filter (stop_reason refusal){': ' + ''.join(texts) if texts else ''}"
            if stop == "refusal" else None,
            finish_reason=stop,
            ambiguous=f"{len(calls)} tool calls with {distinct} different votes in one reply" if distinct > 1 else None,
        )

    async def close(self) -> None:
        await self._client.close()
