"""A wire-level fake of the Anthropic Messages API (`/v1/messages`) on 127.0.0.1.

Point the official SDK at `server.root` (the SDK appends /v1/messages). Replies: a forced
`tool_use` block (`Reply.tool_input`; more blocks from `Reply.tool_calls`; `Reply.text` then comes
first as a preamble), a text block (`Reply.text`), a refusal
(`stop_reason="refusal"`), or an Anthropic error body (429 rate_limit_error, 529
overloaded_error, 401 authentication_error, ...). Requests are recorded."""

from __future__ import annotations

import json
from typing import Any

from tests.fakes.openai_server import FakeServer, Reply

__all__ = ["FakeAnthropicServer", "Reply"]

_ERROR_TYPES = {400: "invalid_request_error", 401: "authentication_error", 403: "permission_error",
                429: "rate_limit_error", 500: "api_error", 529: "overloaded_error"}


class FakeAnthropicServer(FakeServer):
    route = "/v1/messages"

    @property
    def base_url(self) -> str:
        return self.root

    def error_body(self, reply: Reply) -> dict[str, Any]:
        etype = reply.error_type or _ERROR_TYPES.get(reply.status, "api_error")
        return {"type": "error", "error": {"type": etype, "message": reply.error_message},
                "request_id": f"req_{len(self.requests)}"}

    def success_body(self, body: dict[str, Any], reply: Reply) -> dict[str, Any]:
        content: list[dict[str, Any]] = []
        if reply.text is not None and (reply.tool_input is not None or reply.tool_calls):
            content.append({"type": "text", "text": reply.text})  # a preamble before the tool call(s)
        if reply.tool_input is not None or reply.tool_calls:
            tool = (body.get("tools") or [{"name": "submit_vote"}])[0]["name"]
            inputs = ([reply.tool_input] if reply.tool_input is not None else []) + list(reply.tool_calls or ())
            content += [{"type": "tool_use", "id": f"toolu_{len(self.requests)}_{i}", "name": tool, "input": args}
                        for i, args in enumerate(inputs)]
            stop = reply.stop_reason or "tool_use"
        else:
            content.append({"type": "text", "text": reply.text or ""})
            stop = reply.stop_reason or "end_turn"
        tin = reply.tokens_in if reply.tokens_in is not None else max(1, len(json.dumps(body)) // 4)
        tout = reply.tokens_out if reply.tokens_out is not None else max(1, len(json.dumps(content)) // 4)
        return {
            "id": f"msg_{len(self.requests)}",
            "type": "message",
            "role": "assistant",
            "model": body.get("model", "unknown"),
            "content": content,
            "stop_reason": stop,
            "stop_sequence": None,
            "usage": {"input_tokens": tin, "output_tokens": tout},
        }
