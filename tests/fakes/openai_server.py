"""A wire-level fake of the OpenAI chat-completions API on 127.0.0.1 (ephemeral port).

Point the official SDK at `server.base_url`. Replies come from a script (consumed in order)
and then from `default`; each `Reply` can be a normal completion, a refusal, an error body
with any status and headers (429 + Retry-After, 401, 5xx...), and can be slow. Every request
is recorded (path, headers, JSON body, arrival time), and so is the number of requests in flight
at once (`in_flight`, its maximum `peak_in_flight`)."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from tests.fakes.loopback import serve_on_loopback


@dataclass
class Reply:
    text: str | None = None  # completion content (OpenAI) / text block (Anthropic)
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0
    refusal: str | None = None
    error_type: str | None = None
    error_message: str = "error"
    tool_input: dict[str, Any] | None = None  # Anthropic only
    stop_reason: str | None = None  # Anthropic only
    tokens_in: int | None = None
    tokens_out: int | None = None
    finish_reason: str | None = None  # OpenAI only ("stop" unless set, e.g. "content_filter")
    # Several votes in one reply: Anthropic sends one tool_use block per entry (after
    # `tool_input`'s); OpenAI one function tool call per entry (content as `text` says).
    tool_calls: list[dict[str, Any]] | None = None
    extra_choices: list[str] | None = None  # OpenAI only: more choices after the first


@dataclass
class Recorded:
    path: str
    headers: dict[str, str]
    body: dict[str, Any]
    at: float


class FakeServer:
    """Base: an aiohttp app on 127.0.0.1:0 with a reply script and a request log."""

    route = "/"

    def __init__(self, default: Reply | Callable[[dict[str, Any]], Reply] | None = None) -> None:
        self.script: list[Reply] = []
        self.default = default or Reply(text="{}")
        self.requests: list[Recorded] = []
        self.in_flight = 0
        self.peak_in_flight = 0
        self._runner: web.AppRunner | None = None
        self._closing = asyncio.Event()
        self.port = 0

    def push(self, *replies: Reply) -> None:
        self.script.extend(replies)

    @property
    def root(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> FakeServer:
        app = web.Application(client_max_size=10 * 1024 * 1024)
        app.router.add_post(self.route, self._handle)
        self._runner, self.port = await serve_on_loopback(app, access_log=None)
        return self

    async def stop(self) -> None:
        self._closing.set()  # wake slow handlers so shutdown does not wait for them
        if self._runner is not None:
            await self._runner.cleanup()

    async def __aenter__(self) -> FakeServer:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    def _next(self, body: dict[str, Any]) -> Reply:
        if self.script:
            return self.script.pop(0)
        return self.default(body) if callable(self.default) else self.default

    async def _handle(self, request: web.Request) -> web.Response:
        self.in_flight += 1
        self.peak_in_flight = max(self.peak_in_flight, self.in_flight)
        try:
            return await self._answer(request)
        finally:
            self.in_flight -= 1

    async def _answer(self, request: web.Request) -> web.Response:
        body = await request.json()
        self.requests.append(Recorded(request.path, dict(request.headers), body, time.monotonic()))
        reply = self._next(body)
        if reply.delay:
            try:
                await asyncio.wait_for(self._closing.wait(), reply.delay)
            except TimeoutError:
                pass
        if reply.status != 200:
            return web.json_response(self.error_body(reply), status=reply.status, headers=reply.headers)
        return web.json_response(self.success_body(body, reply), headers=reply.headers)

    def error_body(self, reply: Reply) -> dict[str, Any]:
        raise NotImplementedError

    def success_body(self, body: dict[str, Any], reply: Reply) -> dict[str, Any]:
        raise NotImplementedError


def _prompt_tokens(body: dict[str, Any]) -> int:
    return max(1, len(json.dumps(body.get("messages", ""))) // 4)


class FakeOpenAIServer(FakeServer):
    """`/v1/chat/completions`; use `base_url = server.base_url`."""

    route = "/v1/chat/completions"

    @property
    def base_url(self) -> str:
        return self.root + "/v1"

    def error_body(self, reply: Reply) -> dict[str, Any]:
        etype = reply.error_type or {429: "rate_limit_exceeded", 401: "invalid_request_error",
                                     400: "invalid_request_error"}.get(reply.status, "server_error")
        code = {401: "invalid_api_key", 429: "rate_limit_exceeded"}.get(reply.status)
        return {"error": {"message": reply.error_message, "type": etype, "param": None, "code": code}}

    def success_body(self, body: dict[str, Any], reply: Reply) -> dict[str, Any]:
        content = None if reply.refusal or (reply.tool_calls and reply.text is None) else (reply.text or "")
        tin = reply.tokens_in if reply.tokens_in is not None else _prompt_tokens(body)
        tout = reply.tokens_out if reply.tokens_out is not None else max(1, len(content or "") // 4)
        message: dict[str, Any] = {"role": "assistant", "content": content, "refusal": reply.refusal}
        if reply.tool_calls:
            message["tool_calls"] = [
                {"id": f"call_{len(self.requests)}_{i}", "type": "function",
                 "function": {"name": "submit_vote", "arguments": json.dumps(args)}}
                for i, args in enumerate(reply.tool_calls)]
        finish = reply.finish_reason or ("tool_calls" if reply.tool_calls else "stop")
        choices = [{"index": 0, "message": message, "logprobs": None, "finish_reason": finish}]
        choices += [{"index": i, "message": {"role": "assistant", "content": text, "refusal": None},
                     "logprobs": None, "finish_reason": "stop"}
                    for i, text in enumerate(reply.extra_choices or (), start=1)]
        return {
            "id": f"chatcmpl-{len(self.requests)}",
            "object": "chat.completion",
            "created": 1_700_000_000,
            "model": body.get("model", "unknown"),
            "choices": choices,
            "usage": {"prompt_tokens": tin, "completion_tokens": tout, "total_tokens": tin + tout},
        }
