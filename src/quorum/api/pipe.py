"""JSON messages between the engine process and its API process, over one end of a socketpair.

Both ends are read and written by their event loop only. A `multiprocessing.Connection` cannot
be: an event loop that watches a descriptor may make it non-blocking (libuv does, so uvloop
does), and `Connection.recv_bytes` then fails with EAGAIN in the middle of any message larger than
what has arrived so far — which ended the API process as soon as the engine's metrics grew.

Frames are those of `multiprocessing.Connection` (a signed 32-bit big-endian length, then the
bytes), so a blocking `Connection` on the other end can still exchange messages before its loop
takes over.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import struct
from multiprocessing.connection import Connection
from typing import Any

HEADER = struct.Struct("!i")
MAX_FRAME = 2**31 - 1


class PipeClosed(Exception):
    """The other end is gone (closed, exited or killed)."""


class MessagePipe:
    """One end of the pipe, owned by the running event loop."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._reader = reader
        self._writer = writer

    @classmethod
    async def open(cls, conn: Connection) -> MessagePipe:
        """Take `conn` over (it is closed; its socket lives on, owned by the loop)."""
        sock = socket.socket(fileno=os.dup(conn.fileno()))
        conn.close()
        sock.setblocking(False)
        reader, writer = await asyncio.open_unix_connection(sock=sock)
        return cls(reader, writer)

    async def recv(self) -> dict[str, Any]:
        """The next message; raises `PipeClosed` at the end of the stream."""
        try:
            (size,) = HEADER.unpack(await self._reader.readexactly(HEADER.size))
            if size < 0:
                raise PipeClosed("frame longer than 2 GiB")
            data = await self._reader.readexactly(size)
        except asyncio.IncompleteReadError:
            raise PipeClosed("the other process closed the pipe") from None
        except (ConnectionError, OSError) as exc:
            raise PipeClosed(type(exc).__name__) from None
        message: dict[str, Any] = json.loads(data)
        return message

    def send(self, message: dict[str, Any]) -> bool:
        """Queue `message` (whole, never interleaved with another); False when the pipe is closed."""
        if self._writer.is_closing():
            return False
        data = json.dumps(message, default=str).encode()
        if len(data) > MAX_FRAME:
            raise ValueError("message longer than 2 GiB")
        self._writer.write(HEADER.pack(len(data)) + data)
        return True

    @property
    def backlog(self) -> int:
        """Bytes written but not yet taken by the other end's socket."""
        transport = self._writer.transport
        return 0 if transport is None or transport.is_closing() else transport.get_write_buffer_size()

    async def drain(self, timeout: float = 5.0) -> None:
        try:
            await asyncio.wait_for(self._writer.drain(), timeout)
        except (TimeoutError, ConnectionError, OSError):
            pass

    def close(self) -> None:
        self._writer.close()
