"""ASGI middleware: every HTTP response body the API sends passes through `quorum.scrub`.

Routes already build their JSON from scrubbed values (`safe_json`); this is the boundary that
holds for every route, present or future, and for texts such as /metrics. A JSON body is parsed,
scrubbed value by value and re-serialised (so a replacement can never break the JSON); any other
body is scrubbed as text. Content-Length is recomputed; bodies are small (no streaming routes).
"""

from __future__ import annotations

import json
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from quorum.scrub import scrub, scrub_value


def scrub_body(body: bytes, content_type: str) -> bytes:
    """The body with key-like material replaced (JSON value by value, text as text)."""
    if not body:
        return body
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        return body
    if "json" in content_type:
        try:
            value = json.loads(text)
        except ValueError:
            pass
        else:
            cleaned = scrub_value(value)
            return body if cleaned == value else json.dumps(cleaned, separators=(",", ":")).encode()
    cleaned_text = scrub(text)
    return body if cleaned_text == text else cleaned_text.encode("utf-8")


class ScrubResponses:
    """Buffers each response, scrubs its body, then sends it with the right Content-Length."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start: Message | None = None
        chunks: list[bytes] = []

        async def buffered(message: Message) -> None:
            nonlocal start
            if message["type"] == "http.response.start":
                start = message
                return
            if message["type"] != "http.response.body" or start is None:
                await send(message)
                return
            chunks.append(message.get("body", b""))
            if message.get("more_body"):
                return
            headers: list[Any] = list(start.get("headers", []))
            ctype = next((v.decode("latin-1") for k, v in headers if k.lower() == b"content-type"), "")
            body = scrub_body(b"".join(chunks), ctype)
            headers = [(k, v) for k, v in headers if k.lower() != b"content-length"]
            headers.append((b"content-length", str(len(body)).encode()))
            await send({**start, "headers": headers})
            await send({"type": "http.response.body", "body": body, "more_body": False})

        await self.app(scope, receive, buffered)
