"""The engine <-> API process pipe: messages that arrive in pieces, under the API process's uvloop.

An event loop that watches a descriptor may make it non-blocking (libuv does). The API process
once read `multiprocessing.Connection` messages from such a descriptor with a blocking call; a
message that had only partly arrived failed with EAGAIN and ended the API process (the soak's
`api.process_gone` storms)."""

from __future__ import annotations

import asyncio
import json
import multiprocessing
import os
import struct
import threading
import time

import pytest
import uvloop

from quorum.api.pipe import MessagePipe, PipeClosed


def _dribble(fd: int, message: dict[str, object]) -> None:
    data = json.dumps(message).encode()
    frame = struct.pack("!i", len(data)) + data
    for i in range(0, len(frame), 150_000):  # the header first, the body in slow pieces
        os.write(fd, frame[i:i + 150_000])
        time.sleep(0.1)


def test_a_message_arriving_in_pieces_is_read_whole_under_uvloop() -> None:
    engine, api = multiprocessing.Pipe(duplex=True)
    message = {"type": "snapshot", "metrics": ["x" * 100] * 5_000}

    async def main() -> None:
        pipe = await MessagePipe.open(api)
        writer = threading.Thread(target=_dribble, args=(engine.fileno(), message))
        writer.start()
        assert await asyncio.wait_for(pipe.recv(), 10) == message
        writer.join()
        assert pipe.send({"type": "ready", "port": 1})
        await pipe.drain()
        assert json.loads(engine.recv_bytes()) == {"type": "ready", "port": 1}  # Connection's own framing
        engine.close()
        with pytest.raises(PipeClosed):
            await pipe.recv()
        pipe.close()

    uvloop.run(main())


def test_messages_queued_from_many_tasks_are_never_interleaved() -> None:
    engine, api = multiprocessing.Pipe(duplex=True)
    big = "y" * 400_000

    async def main() -> None:
        sender = await MessagePipe.open(engine)
        receiver = await MessagePipe.open(api)
        for i in range(20):
            assert sender.send({"i": i, "body": big if i % 2 else "small"})
        got = [await asyncio.wait_for(receiver.recv(), 10) for _ in range(20)]
        assert [m["i"] for m in got] == list(range(20))
        assert all(m["body"] == (big if m["i"] % 2 else "small") for m in got)
        sender.close()
        with pytest.raises(PipeClosed):
            await receiver.recv()
        receiver.close()

    asyncio.run(main())
