"""The API's connections send what one turn of the event loop wrote in one system call
(``server._Coalescing``), over a real loopback connection, on uvloop as the server runs
(libuv sends with ``write(2)``, which ``/proc/self/io`` counts)."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from pathlib import Path
from typing import Any, cast

import uvloop

from tidings import server


def writes() -> int:
    """Write system calls this process has made (``syscw`` of ``/proc/self/io``)."""
    for line in Path("/proc/self/io").read_text().splitlines():
        if line.startswith("syscw:"):
            return int(line.split()[1])
    raise AssertionError("no syscw in /proc/self/io")


Connected = tuple[asyncio.Transport, asyncio.StreamReader, asyncio.StreamWriter, asyncio.Server]


async def connected() -> Connected:
    """A server-side transport of a loopback connection, and the client's end."""
    loop = asyncio.get_running_loop()
    accepted: asyncio.Future[asyncio.Transport] = loop.create_future()

    class Accept(asyncio.Protocol):
        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            accepted.set_result(cast(asyncio.Transport, transport))  # uvloop's is not a subclass

    listening = await loop.create_server(Accept, "127.0.0.1", 0)
    port = listening.sockets[0].getsockname()[1]
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    return await accepted, reader, writer, listening


def on_uvloop(test: Coroutine[Any, Any, None]) -> None:
    uvloop.run(test)


def test_a_response_written_in_parts_leaves_in_one_write() -> None:
    on_uvloop(a_response_written_in_parts_leaves_in_one_write())


async def a_response_written_in_parts_leaves_in_one_write() -> None:
    transport, reader, _, listening = await connected()
    coalescing = server._Coalescing(transport, asyncio.get_running_loop())
    head = b"HTTP/1.1 201 Created\r\ncontent-length: 2\r\n\r\n"
    before = writes()
    coalescing.write(head)
    coalescing.write(memoryview(b"ok"))
    assert writes() == before  # held until the end of this turn of the loop
    await asyncio.sleep(0)
    assert writes() == before + 1
    assert await reader.readexactly(len(head) + 2) == head + b"ok"
    # The next turn's writes go on their own; closing sends what waits, then the end.
    coalescing.write(b"more")
    coalescing.write(b" and the last")
    coalescing.close()
    assert await reader.read() == b"more and the last"
    assert coalescing.is_closing()
    listening.close()


def test_writes_after_the_connection_closed_are_dropped() -> None:
    on_uvloop(writes_after_the_connection_closed_are_dropped())


async def writes_after_the_connection_closed_are_dropped() -> None:
    transport, reader, _, listening = await connected()
    coalescing = server._Coalescing(transport, asyncio.get_running_loop())
    coalescing.write(b"sent")
    await asyncio.sleep(0)
    transport.close()
    coalescing.write(b"never")
    await asyncio.sleep(0)
    assert await reader.read() == b"sent"
    listening.close()
