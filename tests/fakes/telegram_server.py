"""A fake Telegram Bot API on 127.0.0.1 speaking the real wire format.

Implements `POST|GET /bot<token>/sendMessage`, `/getUpdates` (long polling with `offset` and
`timeout`) and `/getMe`. A wrong token gets Telegram's 401 `{"ok": false, ...}` reply. Tests
push incoming messages with `push_message(chat_id, text)` and read what the bot sent in
`sent` (a list of the JSON/form parameters of each sendMessage call).
"""

from __future__ import annotations

import asyncio
import itertools
import time
from typing import Any

from aiohttp import web

from tests.fakes.loopback import serve_on_loopback


class FakeTelegram:
    def __init__(self, token: str) -> None:
        self.token = token
        self.sent: list[dict[str, Any]] = []
        self.requests: list[str] = []
        self._updates: list[dict[str, Any]] = []
        self._ids = itertools.count(1)
        self._new = asyncio.Event()
        self._runner: web.AppRunner | None = None
        self.url = ""
        self.fail_next_send = 0  # respond 502 to this many sendMessage calls

    async def start(self) -> str:
        app = web.Application()
        app.router.add_route("*", "/bot{token}/{method}", self._handle)
        self._runner, port = await serve_on_loopback(app, access_log=None)
        self.url = f"http://127.0.0.1:{port}"
        return self.url

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    def push_message(self, chat_id: int | str, text: str) -> int:
        uid = next(self._ids)
        self._updates.append({
            "update_id": uid,
            "message": {"message_id": uid, "date": int(time.time()), "text": text,
                        "chat": {"id": int(chat_id), "type": "private"},
                        "from": {"id": int(chat_id), "is_bot": False, "first_name": "t"}},
        })
        self._new.set()
        return uid

    async def _params(self, request: web.Request) -> dict[str, Any]:
        params: dict[str, Any] = dict(request.query)
        if request.can_read_body:
            if request.content_type == "application/json":
                params.update(await request.json())
            else:
                params.update(dict(await request.post()))
        return params

    async def _handle(self, request: web.Request) -> web.Response:
        method = request.match_info["method"]
        self.requests.append(method)
        if request.match_info["token"] != self.token:
            return web.json_response({"ok": False, "error_code": 401, "description": "Unauthorized"}, status=401)
        params = await self._params(request)
        if method == "getMe":
            return web.json_response({"ok": True, "result": {"id": 1, "is_bot": True, "username": "quorum_bot"}})
        if method == "sendMessage":
            if self.fail_next_send > 0:
                self.fail_next_send -= 1
                return web.json_response({"ok": False, "error_code": 502, "description": "Bad Gateway"}, status=502)
            if "chat_id" not in params or not params.get("text"):
                return web.json_response({"ok": False, "error_code": 400,
                                          "description": "Bad Request: message text is empty"}, status=400)
            self.sent.append(params)
            return web.json_response({"ok": True, "result": {
                "message_id": next(self._ids), "date": int(time.time()), "text": params["text"],
                "chat": {"id": int(params["chat_id"]), "type": "private"}}})
        if method == "getUpdates":
            offset = int(params.get("offset", 0) or 0)
            timeout = float(params.get("timeout", 0) or 0)
            self._updates = [u for u in self._updates if u["update_id"] >= offset]
            if not self._updates and timeout > 0:
                self._new.clear()
                try:
                    await asyncio.wait_for(self._new.wait(), min(timeout, 5.0))
                except TimeoutError:
                    pass
            return web.json_response({"ok": True, "result": [u for u in self._updates if u["update_id"] >= offset]})
        return web.json_response({"ok": False, "error_code": 404, "description": "Not Found"}, status=404)
