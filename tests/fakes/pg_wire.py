"""A counting TCP proxy for PostgreSQL: how many round trips does the code under test make?

    proxy = PgWireProxy(upstream_port=5432)
    await proxy.start()                    # listens on 127.0.0.1:<ephemeral>
    pool = await create_pool(proxy.dsn(url))   # the same URL with the proxy's host and port
    proxy.reset(); ...; snap = proxy.snapshot()
    snap.round_trips, snap.queries.most_common(10)
    await proxy.stop()

Every byte is forwarded unchanged in both directions (with backpressure: each write is drained
before the next read). The frontend stream (client → server) of every connection is parsed on
the side:

- start-up: an optional SSLRequest (int32 length 8, code 80877103; if the server answers 'S'
  the rest is encrypted and the connection is left uncounted: `opaque_connections`), an optional
  GSSENCRequest (code 80877104, likewise), a CancelRequest (a connection of its own), then the
  StartupMessage (no type byte: int32 length including itself + payload);
- then typed messages (1 byte type + int32 length including itself + payload).

One round trip ends at each Sync ('S', the extended protocol: Parse/Bind/Describe/Execute...
then Sync, then the client waits for ReadyForQuery), at each simple Query ('Q'), and at a Flush
('H') that follows extended-protocol messages: asyncpg prepares a statement with Parse +
Describe + Flush and waits for the answer before it sends Bind + Execute + Sync, so a statement
a connection has not prepared yet (or one too large for its statement cache) costs two. Start-up
and authentication ('p' messages) contain neither, so they are never counted; asyncpg's pool
resetting a connection on release (one simple Query: `SELECT pg_advisory_unlock_all(); CLOSE
ALL; UNLISTEN *; RESET ALL;`) is counted, as is every BEGIN/COMMIT, prepare and execute.

Each round trip is also attributed to SQL text: a Parse ('P') carries statement name + query,
a Bind ('B') names the statement it executes (its text remembered from the Parse, per
connection), a simple Query carries its text. A round trip counts once for the statement(s)
bound since the previous one; with no Bind, for the statement(s) parsed, labelled
"(prepare) ..."; with neither (a Sync after an error), "(none)". Labels are the first
`width` characters of the SQL, whitespace collapsed.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import struct
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from urllib.parse import urlsplit, urlunsplit

SSL_REQUEST = 80877103
GSSENC_REQUEST = 80877104
CANCEL_REQUEST = 80877102
_WS = re.compile(r"\s+")
_EXTENDED = frozenset(b"PBDEC")  # Parse, Bind, Describe, Execute, Close


@dataclass
class WireSnapshot:
    round_trips: int = 0
    queries: Counter[str] = field(default_factory=Counter)
    connections: int = 0  # connections opened since the reset
    opaque_connections: int = 0  # encrypted: not parsed, not counted


class _Conn:
    """Parser state of one client connection's frontend stream."""

    def __init__(self, proxy: PgWireProxy) -> None:
        self.proxy = proxy
        self.buf = bytearray()
        self.started = False  # StartupMessage seen: typed messages follow
        self.opaque = False
        self.awaiting_answer = False  # SSLRequest/GSSENCRequest sent, the server's 1-byte answer pending
        self.statements: dict[str, str] = {}  # statement name → SQL label
        self.parsed: list[str] = []  # since the last Sync
        self.bound: list[str] = []
        self.pending = False  # extended-protocol messages since the last Sync/Flush

    def feed(self, data: bytes) -> None:
        if self.opaque:
            return
        try:
            self._feed(data)
        except Exception:  # a stream this parser cannot follow: forwarded still, no longer counted
            self.opaque = True
            self.proxy._opaque += 1

    def _feed(self, data: bytes) -> None:
        self.buf += data
        while not self.opaque:
            if not self.started:
                if len(self.buf) < 8:
                    return
                length, code = struct.unpack_from("!ii", self.buf, 0)
                if len(self.buf) < length:
                    return
                del self.buf[:length]
                if code in (SSL_REQUEST, GSSENC_REQUEST):
                    self.awaiting_answer = True
                elif code == CANCEL_REQUEST:
                    self.opaque = True  # nothing else comes on this connection
                else:
                    self.started = True
                continue
            if len(self.buf) < 5:
                return
            kind = self.buf[0]
            (length,) = struct.unpack_from("!i", self.buf, 1)
            if len(self.buf) < 1 + length:
                return
            body = bytes(self.buf[5:1 + length])
            del self.buf[:1 + length]
            self._message(kind, body)

    def server_answer(self, first: int) -> None:
        """The server's answer to an SSLRequest / GSSENCRequest: 'S'/'G' means encryption."""
        self.awaiting_answer = False
        if first in (ord("S"), ord("G")):
            self.opaque = True
            self.proxy._opaque += 1

    def _message(self, kind: int, body: bytes) -> None:
        if kind in _EXTENDED:
            self.pending = True
        if kind == ord("P"):
            name, rest = _cstring(body, 0)
            query, _ = _cstring(body, rest)
            label = self.proxy.label(query)
            self.statements[name] = label
            self.parsed.append(label)
        elif kind == ord("B"):
            _, rest = _cstring(body, 0)  # portal
            stmt, _ = _cstring(body, rest)
            self.bound.append(self.statements.get(stmt, "(unknown statement)"))
        elif kind == ord("C") and body[:1] == b"S":  # Close statement: forget its name
            name, _ = _cstring(body, 1)
            self.statements.pop(name, None)
        elif kind == ord("S") or (kind == ord("H") and self.pending):
            self.pending = False
            if self.bound:
                label = " + ".join(dict.fromkeys(self.bound))
            elif self.parsed:
                label = "(prepare) " + " + ".join(dict.fromkeys(self.parsed))
            else:
                label = "(none)"
            self.bound.clear()
            self.parsed.clear()
            self.proxy._count(label)
        elif kind == ord("Q"):
            query, _ = _cstring(body, 0)
            self.proxy._count(self.proxy.label(query))


def _cstring(data: bytes, start: int) -> tuple[str, int]:
    end = data.find(b"\0", start)
    if end < 0:
        end = len(data)
    return data[start:end].decode("utf-8", "replace"), end + 1


class PgWireProxy:
    """See the module docstring."""

    def __init__(self, upstream_host: str = "127.0.0.1", upstream_port: int = 5432, *, width: int = 90) -> None:
        self.upstream_host = upstream_host
        self.upstream_port = upstream_port
        self.width = width
        self.port = 0
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._writers: set[asyncio.StreamWriter] = set()
        self.reset()

    # --- counters ------------------------------------------------------------------------
    def reset(self) -> None:
        self._round_trips = 0
        self._queries: Counter[str] = Counter()
        self._connections = 0
        self._opaque = 0

    def snapshot(self) -> WireSnapshot:
        return WireSnapshot(self._round_trips, Counter(self._queries), self._connections, self._opaque)

    def _count(self, label: str) -> None:
        self._round_trips += 1
        self._queries[label] += 1

    def label(self, query: str) -> str:
        return _WS.sub(" ", query).strip()[: self.width]

    # --- serving -------------------------------------------------------------------------
    def dsn(self, url: str) -> str:
        """`url` with its host and port replaced by the proxy's."""
        parts = urlsplit(url)
        auth = parts.netloc.rpartition("@")[0]
        return urlunsplit(parts._replace(netloc=(auth + "@" if auth else "") + f"127.0.0.1:{self.port}"))

    async def start(self) -> PgWireProxy:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
        for w in list(self._writers):
            w.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()

    async def _accept(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        # served in a task of our own: `stop()` may cancel it (asyncio's callback task may not be)
        task = asyncio.ensure_future(self._serve(client_r, client_w))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _serve(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        self._writers.add(client_w)
        server_w: asyncio.StreamWriter | None = None
        try:
            try:
                server_r, server_w = await asyncio.open_connection(self.upstream_host, self.upstream_port)
            except OSError:
                return
            self._writers.add(server_w)
            self._connections += 1
            conn = _Conn(self)
            up = asyncio.ensure_future(self._pump(client_r, server_w, conn.feed))
            down = asyncio.ensure_future(self._pump(server_r, client_w, None, conn))
            try:
                await asyncio.wait({up, down}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for t in (up, down):
                    t.cancel()
                await asyncio.gather(up, down, return_exceptions=True)
        finally:
            for w in (client_w, server_w):
                if w is not None:
                    self._writers.discard(w)
                    w.close()
                    with contextlib.suppress(Exception):
                        await w.wait_closed()

    @staticmethod
    async def _pump(reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                    parse: Callable[[bytes], None] | None, answers: _Conn | None = None) -> None:
        """Copy until EOF or an error on either side; the parser sees each chunk before it is sent
        on, so a round trip is counted before its answer can arrive."""
        try:
            while True:
                data = await reader.read(65536)
                if not data:
                    break
                if parse is not None:
                    parse(data)
                elif answers is not None and answers.awaiting_answer:
                    answers.server_answer(data[0])
                writer.write(data)
                await writer.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            with contextlib.suppress(Exception):
                if writer.can_write_eof():
                    writer.write_eof()
