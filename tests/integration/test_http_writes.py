"""The API's connections send what one turn of the event loop wrote in one system call
(``server._Coalescing``), over real loopback connections, on uvloop as the server runs
(libuv sends with ``write(2)``, which ``/proc/thread-self/io`` counts for the loop's thread).
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any, cast

import pytest
import uvicorn
import uvloop

from tidings import server

_IO = Path("/proc/thread-self/io")


def writes() -> int:
    """Write system calls the calling thread has made."""
    for line in _IO.read_text().splitlines():
        if line.startswith("syscw:"):
            return int(line.split()[1])
    pytest.skip("this kernel does not count write calls per thread")


def on_uvloop(test: Callable[[], Coroutine[Any, Any, None]]) -> None:
    if not _IO.exists():
        pytest.skip("this kernel does not count write calls per thread")
    uvloop.run(test())


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


async def closed(writer: asyncio.StreamWriter, listening: asyncio.Server) -> None:
    writer.close()
    await writer.wait_closed()
    listening.close()
    await listening.wait_closed()


def test_parts_written_in_one_turn_leave_in_one_write() -> None:
    on_uvloop(parts_written_in_one_turn_leave_in_one_write)


async def parts_written_in_one_turn_leave_in_one_write() -> None:
    transport, reader, writer, listening = await connected()
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
    coalescing.writelines([b"more", b" and the last"])
    coalescing.close()
    assert await reader.read() == b"more and the last"
    assert coalescing.is_closing()
    await closed(writer, listening)


def test_writes_after_the_connection_closed_are_dropped() -> None:
    on_uvloop(writes_after_the_connection_closed_are_dropped)


async def writes_after_the_connection_closed_are_dropped() -> None:
    transport, reader, writer, listening = await connected()
    coalescing = server._Coalescing(transport, asyncio.get_running_loop())
    coalescing.write(b"sent")
    await asyncio.sleep(0)
    transport.close()
    coalescing.write(b"never")
    await asyncio.sleep(0)
    assert await reader.read() == b"sent"
    await closed(writer, listening)


BODY = b'{"id":"ok"}'


async def created(scope: Any, receive: Any, send: Any) -> None:
    """An ASGI app answering 201 in two messages, as the event intake does."""
    await receive()
    headers = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(BODY))]
    await send({"type": "http.response.start", "status": 201, "headers": headers})
    await send({"type": "http.response.body", "body": BODY})


def post(port: int, requests: int) -> bytes:
    """``requests`` POSTs on one keep-alive connection, one at a time; every answer."""
    request = b"POST /e HTTP/1.1\r\nhost: t\r\ncontent-length: 2\r\n\r\n{}"
    answers = b""
    with socket.create_connection(("127.0.0.1", port)) as client:
        for _ in range(requests):
            client.sendall(request)
            answer = b""
            while not answer.endswith(BODY):
                chunk = client.recv(65536)
                assert chunk, "the server closed the connection"
                answer += chunk
            answers += answer
    return answers


def test_uvicorn_with_the_protocol_sends_each_response_in_one_write() -> None:
    on_uvloop(uvicorn_with_the_protocol_sends_each_response_in_one_write)


async def uvicorn_with_the_protocol_sends_each_response_in_one_write() -> None:
    sock = server.listen("127.0.0.1", 0)
    config = uvicorn.Config(
        created, http=server._HttpProtocol, lifespan="off", log_config=None, access_log=False
    )
    running = uvicorn.Server(config)
    serving = asyncio.create_task(running.serve(sockets=[sock]))
    while not running.started:  # noqa: ASYNC110 (uvicorn sets a flag; it has no event)
        await asyncio.sleep(0.01)
    before = writes()  # this thread runs the server; the client runs in another
    loop = asyncio.get_running_loop()
    answers = await loop.run_in_executor(None, post, sock.getsockname()[1], 5)
    assert writes() - before == 5
    assert answers.count(b"HTTP/1.1 201 Created\r\n") == 5
    assert answers.count(b"content-length: 11\r\n") == 5
    running.should_exit = True
    await serving
    sock.close()
