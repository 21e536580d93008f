"""The kline websocket pump of the live-style fake Binance (`binance_live.py`).

A background task that, every `tick_s` wall seconds, reads the clock and, for every subscribed
kline stream (`<symbol>@kline_<tf>`), sends the FINAL update (`x: true`) of each bar that closed
since the previous tick — only once the clock has reached its close — and then a first partial
update of the bar that opened. All streams' events of one tick go out in time order (by close
time, then finals before partials, then shorter timeframes first). Every `partial_every_s` wall
seconds it also refreshes the open bar of every stream (Binance sends one every 250 ms). A
blackhole silences it. What it sent is kept in `ws_log` (stream, bar open, final, event time).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections import deque
from typing import Any

from aiohttp import web

from quorum.market.data_files import timeframe_ms
from tests.fakes.binance_market import _f


class KlinePump:
    """Mixin for `LiveBinanceMarket`; call `_init_pump()` in `__init__`, `start_pump()` once serving."""

    # provided by the concrete class
    five: dict[str, Any]
    subscriptions: dict[web.WebSocketResponse, set[str]]
    ws_messages_sent: int
    timeframes: tuple[str, ...]

    def _init_pump(self, tick_s: float, partial_every_s: float | None, log_size: int) -> None:
        self.tick_s = tick_s
        self.partial_every_s = partial_every_s
        self.ws_log: deque[tuple[str, int, bool, int]] = deque(maxlen=log_size)
        self.pump_ticks = 0
        self.pump_errors: list[str] = []
        self._pump_task: asyncio.Task[None] | None = None

    def start_pump(self) -> None:
        self._pump_task = asyncio.create_task(self._pump(), name="binance-live-pump")

    async def stop_pump(self) -> None:
        if self._pump_task is not None:
            self._pump_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._pump_task
            self._pump_task = None

    def _stream_events(self, stream: str, last: int, now: int, partial_due: bool) -> list[tuple[Any, ...]]:
        sym, _, tf = stream.upper().partition("@KLINE_")
        tf = tf.lower()
        if sym not in self.five or tf not in self.timeframes:
            return []
        tf_ms, out = timeframe_ms(tf), []
        c = (last // tf_ms + 1) * tf_ms
        while c <= now:  # bars that closed in (last, now]: final updates, at their close time
            if self.bar_values(sym, tf, c - tf_ms, now) is not None:  # type: ignore[attr-defined]
                out.append((c, 0, tf_ms, sym, tf, c - tf_ms))
            c += tf_ms
        cur = now // tf_ms * tf_ms
        if cur > last or partial_due:
            out.append((max(cur, last), 1, tf_ms, sym, tf, cur))
        return out

    async def _pump(self) -> None:
        last, last_partial = self._clock_now(), time.monotonic()
        while True:
            await asyncio.sleep(self.tick_s)
            now = self._clock_now()
            if now <= last:
                continue
            wall = time.monotonic()
            partial_due = self.partial_every_s is not None and wall - last_partial >= self.partial_every_s
            if partial_due:
                last_partial = wall
            try:
                if not self.blackholed():  # type: ignore[attr-defined]
                    subscribed = self.subscribed()  # type: ignore[attr-defined]
                    events = [e for st in subscribed for e in self._stream_events(st, last, now, partial_due)]
                    for _, kind, _tf_ms, sym, tf, t in sorted(events):
                        await self._send_kline(sym, tf, t, now, final=(kind == 0))
            except Exception as exc:  # the pump must outlive any one bad tick; the error is kept for stats
                if len(self.pump_errors) < 20:
                    self.pump_errors.append(f"{type(exc).__name__}: {exc}")
            last = now
            self.pump_ticks += 1

    def _clock_now(self) -> int:
        return int(self.clock.now_ms())  # type: ignore[attr-defined]

    async def _send_kline(self, sym: str, tf: str, t: int, now: int, final: bool) -> None:
        got = self.bar_values(sym, tf, t, now)  # type: ignore[attr-defined]
        if got is None:
            return
        (o, h, lo, c, v), partial = got
        if partial == final:  # never a final update before the bar's close
            raise AssertionError(f"{sym} {tf} {t}: final={final} but partial={partial} at {now}")
        k = {"t": t, "T": t + timeframe_ms(tf) - 1, "s": sym, "i": tf, "f": 1, "L": 2, "o": _f(o), "c": _f(c),
             "h": _f(h), "l": _f(lo), "v": _f(v), "n": 100, "x": final, "q": _f(v * c), "V": _f(v / 2),
             "Q": _f(v * c / 2), "B": "0"}
        msg = json.dumps({"e": "kline", "E": now, "s": sym, "k": k})
        stream = f"{sym.lower()}@kline_{tf}"
        for ws, subs in list(self.subscriptions.items()):
            if stream in subs and not ws.closed:
                with contextlib.suppress(ConnectionError, RuntimeError):
                    await ws.send_str(msg)
                    self.ws_messages_sent += 1
        self.ws_log.append((stream, t, final, now))
