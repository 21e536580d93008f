"""OpenAI and every OpenAI-compatible endpoint (DeepSeek, Qwen, xAI, OpenRouter, Ollama,
llama.cpp) through the official `openai` SDK with a `base_url`. SDK retries are off: the
tenacity policy in `quorum.ai.retry` owns retries. A reply with several choices or several
different tool calls is ambiguous (an abstention); one tool call's arguments are the vote. A
reply the content filter stopped (finish_reason "content_filter") is a refusal (an abstention)."""

from __future__ import annotations

from typing import Any

import openai

from quorum.ai.client import VOTE_JSON_SCHEMA, Completion, Message

# Reasoning models reject `temperature`.
_NO_TEMPERATURE_PREFIXES = ("o1", "o3", "o4", "gpt-5")


class OpenAIChatClient:
    """Chat-completions client. `structured` selects the response format: "json_schema"
    (OpenAI structured output), "json_object" (most compatible servers) or "none"."""

    def __init__(
        self,
        provider: str,
        model: str,
        *,
        api_key: str,
        base_url: str | None,
        timeout_seconds: float,
        temperature: float,
        structured: str | None = None,
        max_tokens: int = 800,
    ) -> None:
        self.provider = provider
        self.model = model
        self.temperature = temperature
        self.structured = structured or ("json_schema" if provider == "openai" else "json_object")
        self.max_tokens = max_tokens
        self._client = openai.AsyncOpenAI(api_key=api_key, base_url=base_url, timeout=timeout_seconds, max_retries=0)

    def _response_format(self) -> Any:
        if self.structured == "json_schema":
            return {"type": "json_schema",
                    "json_schema": {"name": "vote", "schema": VOTE_JSON_SCHEMA, "strict": True}}
        if self.structured == "json_object":
            return {"type": "json_object"}
        return openai.omit

    async def complete(self, system: str, messages: list[Message]) -> Completion:
        msgs: list[Any] = [{"role": "system", "content": system}]
        msgs += [{"role": m.role, "content": m.content} for m in messages]
        reasoning = self.model.startswith(_NO_TEMPERATURE_PREFIXES)

        async def create() -> Any:
            return await self._client.chat.completions.create(
                model=self.model,
                messages=msgs,
                temperature=openai.omit if reasoning else self.temperature,
                response_format=self._response_format(),
                max_completion_tokens=self.max_tokens if reasoning else openai.omit,
                max_tokens=openai.omit if reasoning else self.max_tokens,
            )

        try:
            resp = await create()
        except openai.BadRequestError as exc:
            # Some compatible servers reject structured output: fall back to plain JSON text
            # (the tolerant parser copes) for this and every later call.
            if self.structured == "none" or "response_format" not in str(exc):
                raise
            self.structured = "none"
            resp = await create()
        choice = resp.choices[0] if resp.choices else None
        msg = choice.message if choice else None
        usage = resp.usage
        text = (msg.content or "") if msg else ""
        ambiguous = None
        if len(resp.choices or ()) > 1:  # one was asked for: several are several votes
            ambiguous = f"{len(resp.choices)} choices in one reply"
        calls = [getattr(getattr(c, "function", None), "arguments", None) or "" for c in (msg.tool_calls or ())] \
            if msg else []
        if len(set(calls)) > 1:
            ambiguous = f"{len(calls)} tool calls with {len(set(calls))} different votes in one reply"
        elif calls and "{" in text:
            ambiguous = "a tool call and a vote in the text of one reply"
        elif calls:
            text = calls[0]  # an endpoint that answers with a tool call: its arguments are the vote
        finish = choice.finish_reason if choice else None
        refusal = getattr(msg, "refusal", None) if msg else None
        if finish == "content_filter":  # whatever text came is cut by the filter: not an answer
            refusal = f"stopped by the content filter{': ' + refusal if refusal else ''}"
        return Completion(
            text=text,
            tokens_in=usage.prompt_tokens if usage else 0,
            tokens_out=usage.completion_tokens if usage else 0,
            refusal=refusal,
            finish_reason=finish,
            ambiguous=ambiguous,
        )

    async def close(self) -> None:
        await self._client.close()
