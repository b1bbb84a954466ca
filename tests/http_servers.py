"""A small real HTTP/1.1 server on a loopback socket (port 0) for tests of HTTP clients: each
request is answered by a handler the test chooses; it can answer slowly, answer anything, or
drop the connection. Every request is kept in ``requests``."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from urllib.parse import parse_qs, urlsplit


@dataclass
class Received:
    """One request as the server read it."""

    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: bytes


@dataclass
class Answer:
    """What to answer: ``drop`` closes the connection without a word."""

    status: int = 200
    body: bytes = b"{}"
    content_type: str = "application/json"
    delay: float = 0.0
    drop: bool = False


Handler = Callable[[Received], Awaitable[Answer] | Answer]


@dataclass
class HttpServer:
    """A running server: its URL and what it received."""

    url: str
    handler: Handler
    requests: list[Received] = field(default_factory=list)


async def _serve_one(
    server: HttpServer, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
) -> None:
    try:
        while True:
            line = await reader.readline()
            if not line:
                return
            method, target, _ = line.decode("latin-1").split(" ", 2)
            headers: dict[str, str] = {}
            while (header := await reader.readline()) not in (b"\r\n", b"\n", b""):
                name, _, value = header.decode("latin-1").partition(":")
                headers[name.strip().lower()] = value.strip()
            body = await reader.readexactly(int(headers.get("content-length", "0")))
            parts = urlsplit(target)
            query = {k: v[0] for k, v in parse_qs(parts.query).items()}
            received = Received(method, parts.path, query, headers, body)
            server.requests.append(received)
            answer = server.handler(received)
            if not isinstance(answer, Answer):
                answer = await answer
            if answer.delay:
                await asyncio.sleep(answer.delay)
            if answer.drop:
                return
            writer.write(
                f"HTTP/1.1 {answer.status} X\r\nContent-Type: {answer.content_type}\r\n"
                f"Content-Length: {len(answer.body)}\r\n\r\n".encode()
                + answer.body
            )
            await writer.drain()
    except (ConnectionError, asyncio.IncompleteReadError, ValueError):
        return
    finally:
        writer.close()


@contextlib.asynccontextmanager
async def http_server(handler: Handler) -> AsyncIterator[HttpServer]:
    """Serve ``handler`` on 127.0.0.1, a free port, until the block ends."""
    state = HttpServer("", handler)
    tasks: set[asyncio.Task[None]] = set()

    async def connected(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        tasks.add(task)
        try:
            await _serve_one(state, reader, writer)
        except asyncio.CancelledError:
            # Closing the server ends its connections; asyncio would log a cancelled
            # connection task as an error.
            writer.close()
        finally:
            tasks.discard(task)

    server = await asyncio.start_server(connected, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    state.url = f"http://127.0.0.1:{port}"
    try:
        yield state
    finally:
        server.close()
        for task in list(tasks):
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await server.wait_closed()
