"""Fault injection and a control API for the live-style fake Binance (`binance_live.py`).

A mixin over `FakeBinanceMarket`: its `_rest` answers blackholes and rate limits itself and hands
every other request to the plain fake, whose `fail_next` (status, Binance code/msg or a raw body,
delay) carries the 5xx bursts and late answers. Every fault is recorded in `faults` with its wall
time (and so is the escalation of a 429 into a 418 ban).

- `rest_errors(status=500, count=N, code=None, msg=None, paths=())`: the next N REST calls answer
  `status`. Without `code` the body is a gateway's HTML page (ccxt: ExchangeNotAvailable); with a
  Binance `code`/`msg` it is Binance's JSON error (ccxt maps the code, e.g. -1001 →
  OperationFailed, -1007 → RequestTimeout).
- `rest_timeouts(count=N, delay_s=...)`: the next N REST calls are answered, correctly, but only
  after `delay_s` wall seconds (a client with a shorter timeout sees RequestTimeout).
- `rate_limit(retry_after_s, ban_s=None)`: the next call gets 429 with Retry-After; a call before
  that has passed gets 418 with Retry-After `ban_s` (default 4 × retry_after_s), and so does every
  call during the ban (Retry-After = what is left), as Binance escalates.
- `drop_websockets()`: close every websocket (clients reconnect).
- `blackhole(seconds, mode="hang"|"refuse")`: for `seconds`, REST calls and websocket handshakes
  hang until the end and then get 503 ("hang"), or the port refuses connections ("refuse"; the
  control API is unreachable meanwhile); open websockets are dropped at the start.

Control API on the same server: `POST /_fake/fault` with JSON `{"kind": "rest_errors", "count": 5,
"status": 500}` (kind = one of the method names above, the rest its keyword arguments) and
`GET /_fake/stats` (request counts by endpoint and status, websocket connects, faults, clock).
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from collections import defaultdict
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

RATE_MSG = ("Too many requests; current limit of IP(127.0.0.1) is 2400 requests per minute. Please use the "
            "websocket for live updates to avoid polling the API.")
BAN_MSG = ("Way too many requests; IP(127.0.0.1) banned until {until}. Please use the websocket for live updates "
           "to avoid bans.")
HTML = "<html><head><title>{status}</title></head><body><center><h1>{status}</h1></center></body></html>"
REASONS = {500: "500 Internal Server Error", 502: "502 Bad Gateway", 503: "503 Service Temporarily Unavailable",
           504: "504 Gateway Time-out"}


class BinanceError(Exception):
    """Raised by a handler: answered as Binance's JSON error {"code", "msg"} with `status`."""

    def __init__(self, status: int, code: int, msg: str) -> None:
        super().__init__(msg)
        self.status, self.code, self.msg = status, code, msg


class FaultInjection:
    """Mixin for a `FakeBinanceMarket` subclass; call `_init_faults()` in `__init__`."""

    # provided by FakeBinanceMarket / the concrete class
    ws_connects: int
    ws_messages_sent: int
    ws_clients: set[web.WebSocketResponse]

    def _init_faults(self) -> None:
        self.faults: list[dict[str, Any]] = []
        self.request_counts: defaultdict[str, defaultdict[str, int]] = defaultdict(lambda: defaultdict(int))
        self._rl_pending: tuple[float, float] | None = None
        self._rl_until = 0.0
        self._rl_ban_s = 0.0
        self._ban_until = 0.0
        self._blackhole_until = 0.0
        self._closing = asyncio.Event()
        self._weight_peak = 0

    def _record(self, kind: str, **params: Any) -> dict[str, Any]:
        rec = {"kind": kind, "wall": time.time(), **params}
        self.faults.append(rec)
        return rec

    # --- the injection API ----------------------------------------------------------------------
    async def rest_errors(self, status: int = 500, count: int = 1, code: int | None = None, msg: str | None = None,
                          paths: tuple[str, ...] | list[str] = (), for_s: float | None = None) -> dict[str, Any]:
        if not 500 <= int(status) <= 599 or int(count) < 1:
            raise ValueError(f"rest_errors: status must be 5xx and count >= 1 (got {status}, {count})")
        page = HTML.format(status=REASONS.get(int(status), f"{status} Error")) if code is None else None
        self.fail_next(int(status), None, int(count), tuple(paths), code=code,  # type: ignore[attr-defined]
                       msg=msg or "Internal error; unable to process your request. Please try again.", body=page,
                       for_s=for_s)
        return self._record("rest_errors", status=int(status), count=int(count), code=code, paths=list(paths))

    async def rest_timeouts(self, count: int = 1, delay_s: float = 15.0,
                            paths: tuple[str, ...] | list[str] = (), for_s: float | None = None) -> dict[str, Any]:
        if int(count) < 1 or float(delay_s) <= 0:
            raise ValueError(f"rest_timeouts: count must be >= 1 and delay_s > 0 (got {count}, {delay_s})")
        self.fail_next(200, None, int(count), tuple(paths), delay_s=float(delay_s),  # type: ignore[attr-defined]
                       for_s=for_s)
        return self._record("rest_timeouts", count=int(count), delay_s=float(delay_s), paths=list(paths))

    async def rate_limit(self, retry_after_s: float = 2.0, ban_s: float | None = None) -> dict[str, Any]:
        if float(retry_after_s) <= 0:
            raise ValueError(f"rate_limit: retry_after_s must be > 0 (got {retry_after_s})")
        ban = float(ban_s) if ban_s is not None else 4.0 * float(retry_after_s)
        self._rl_pending = (float(retry_after_s), max(ban, float(retry_after_s)))
        return self._record("rate_limit", retry_after_s=float(retry_after_s), ban_s=ban)

    async def drop_websockets(self) -> None:
        self._record("drop_websockets", clients=len(self.ws_clients))
        await super().drop_websockets()  # type: ignore[misc]

    async def blackhole(self, seconds: float, mode: str = "hang") -> dict[str, Any]:
        if float(seconds) <= 0 or mode not in ("hang", "refuse"):
            raise ValueError(f"blackhole: seconds must be > 0 and mode hang|refuse (got {seconds}, {mode!r})")
        rec = self._record("blackhole", seconds=float(seconds), mode=mode)
        self._blackhole_until = time.time() + float(seconds)
        await super().drop_websockets()  # type: ignore[misc]
        if mode == "refuse":
            await self._stop_listening()
            task = asyncio.create_task(self._reopen_after(float(seconds)))
            self._reopen_task = task
        return rec

    async def _reopen_after(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._closing.wait(), seconds)
        await self._start_listening()

    async def _stop_listening(self) -> None:  # the concrete server closes its port
        raise NotImplementedError

    async def _start_listening(self) -> None:
        raise NotImplementedError

    def blackholed(self) -> bool:
        return time.time() < self._blackhole_until

    async def _wait(self, seconds: float) -> None:
        """Sleep, but end early when the server stops (so shutdown never waits for a fault)."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._closing.wait(), max(seconds, 0.0))

    # --- the REST path --------------------------------------------------------------------------
    def _charge(self, weight: int) -> int:
        used: int = super()._charge(weight)  # type: ignore[misc]
        self._weight_peak = max(self._weight_peak, used)
        return used

    def _error(self, status: int, code: int, msg: str, headers: dict[str, str] | None = None) -> web.Response:
        return self._json({"code": code, "msg": msg}, 1, status, headers)  # type: ignore[attr-defined,no-any-return]

    async def _rest(self, request: web.Request) -> web.Response:
        endpoint = request.match_info["endpoint"]
        resp = await self._answer(request, endpoint)
        self.request_counts[endpoint][str(resp.status)] += 1
        return resp

    async def _answer(self, request: web.Request, endpoint: str) -> web.Response:
        now = time.time()
        if now < self._blackhole_until:
            await self._wait(self._blackhole_until - now)
            return web.Response(status=503, text=HTML.format(status=REASONS[503]), content_type="text/html")
        if now < self._ban_until:
            return self._banned(now)
        if now < self._rl_until:  # called again before Retry-After passed: banned
            self._ban_until, self._rl_until = now + self._rl_ban_s, 0.0
            self._record("rate_limit_ban", ban_s=self._rl_ban_s)
            return self._banned(now)
        if self._rl_pending is not None:
            retry, self._rl_ban_s = self._rl_pending
            self._rl_pending, self._rl_until = None, now + retry
            return self._error(429, -1003, RATE_MSG, {"Retry-After": str(math.ceil(retry))})
        try:
            return await super()._rest(request)  # type: ignore[misc,no-any-return]
        except BinanceError as exc:
            return self._error(exc.status, exc.code, exc.msg)
        except ValueError as exc:
            return self._error(400, -1100, f"Illegal characters found in a parameter. ({exc})")

    def _banned(self, now: float) -> web.Response:
        left = max(1, math.ceil(self._ban_until - now))
        msg = BAN_MSG.format(until=int(self._ban_until * 1000))
        return self._error(418, -1003, msg, {"Retry-After": str(left)})

    async def _ws(self, request: web.Request) -> web.StreamResponse:
        now = time.time()
        if now < self._blackhole_until:
            await self._wait(self._blackhole_until - now)
            return web.Response(status=503, text="blackholed")
        return await super()._ws(request)  # type: ignore[misc,no-any-return]

    # --- control API ----------------------------------------------------------------------------
    def add_control_routes(self, app: web.Application) -> None:
        app.router.add_post("/_fake/fault", self._control_fault)
        app.router.add_get("/_fake/stats", self._control_stats)

    async def _control_fault(self, request: web.Request) -> web.Response:
        try:
            body = await request.json()
            kind = body.pop("kind")
        except (ValueError, KeyError, AttributeError):
            return web.json_response({"error": 'expected JSON {"kind": ..., ...}'}, status=400)
        methods: dict[str, Callable[..., Awaitable[Any]]] = {
            "rest_errors": self.rest_errors, "rest_timeouts": self.rest_timeouts, "rate_limit": self.rate_limit,
            "drop_websockets": self.drop_websockets, "blackhole": self.blackhole}
        if kind not in methods:
            return web.json_response({"error": f"unknown fault kind {kind!r}; one of {sorted(methods)}"}, status=400)
        try:
            await methods[kind](**body)
        except (TypeError, ValueError) as exc:
            return web.json_response({"error": f"{kind}: {exc}"}, status=400)
        return web.json_response({"ok": True, "fault": self.faults[-1]})

    async def _control_stats(self, request: web.Request) -> web.Response:
        return web.json_response(self.stats())

    def stats(self) -> dict[str, Any]:
        """Request counts by endpoint and status, websocket figures, faults (JSON-ready)."""
        return {"requests": {k: dict(v) for k, v in sorted(self.request_counts.items())},
                "ws_connects": self.ws_connects, "ws_messages_sent": self.ws_messages_sent,
                "ws_clients": len(self.ws_clients), "faults": list(self.faults),
                "weight_peak_1m": self._weight_peak, "wall": time.time()}
