"""Real HTTP receivers for webhook and status-callback tests, on loopback with port 0.

:class:`Receiver` is uvicorn serving a small ASGI app that records every request and answers
from a script (status, headers, body; ``hang`` waits until the receiver stops, for timeouts).
:func:`dropping_server` accepts connections and closes them after reading the request, and
:func:`closed_port` is a port nobody listens on.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import uvicorn


@dataclass(frozen=True)
class Answer:
    """One scripted answer."""

    status: int = 200
    body: bytes = b'{"ok":true}'
    headers: tuple[tuple[str, str], ...] = (("content-type", "application/json"),)
    hang: bool = False


@dataclass(frozen=True)
class Received:
    """One recorded request."""

    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    client_port: int = 0


@dataclass
class Receiver:
    """A running receiver: ``url`` to call, ``requests`` it got, ``script`` of answers
    (consumed in order; when empty, ``default`` answers)."""

    host: str
    port: int
    script: list[Answer] = field(default_factory=list)
    default: Answer = field(default_factory=Answer)
    requests: list[Received] = field(default_factory=list)
    released: asyncio.Event = field(default_factory=asyncio.Event)
    arrived: asyncio.Event = field(default_factory=asyncio.Event)
    on_request: Callable[[Received], None] | None = None

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        chunks = []
        while True:
            message = await receive()
            chunks.append(message.get("body", b""))
            if not message.get("more_body"):
                break
        request = Received(
            method=scope["method"],
            path=scope["path"]
            + (f"?{scope['query_string'].decode()}" if scope["query_string"] else ""),
            headers={k.decode().lower(): v.decode() for k, v in scope["headers"]},
            body=b"".join(chunks),
            client_port=(scope.get("client") or ("", 0))[1],
        )
        self.requests.append(request)
        if self.on_request is not None:
            self.on_request(request)
        self.arrived.set()
        answer = self.script.pop(0) if self.script else self.default
        if answer.hang:
            await self.released.wait()
            return
        await send(
            {
                "type": "http.response.start",
                "status": answer.status,
                "headers": [(k.encode(), v.encode()) for k, v in answer.headers],
            }
        )
        await send({"type": "http.response.body", "body": answer.body})

    async def wait_for(self, count: int, within: float = 15.0) -> list[Received]:
        """Until at least ``count`` requests arrived."""
        deadline = asyncio.get_running_loop().time() + within
        while len(self.requests) < count:
            if asyncio.get_running_loop().time() > deadline:
                raise AssertionError(f"{len(self.requests)} requests arrived, not {count}")
            self.arrived.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.arrived.wait(), 0.1)
        return self.requests


@contextlib.asynccontextmanager
async def receiver(
    host: str = "127.0.0.1", port: int = 0, tls: tuple[str, str] | None = None, **kwargs: Any
) -> AsyncIterator[Receiver]:
    """A receiver listening on ``host`` (``::1`` for IPv6) at ``port`` (default a free one);
    with ``tls`` (certificate and key files), over HTTPS."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(128)
    sock.setblocking(False)
    app = Receiver(host, sock.getsockname()[1], **kwargs)
    config = uvicorn.Config(
        app,
        log_level="warning",
        lifespan="off",
        access_log=False,
        timeout_graceful_shutdown=2,
        ssl_certfile=tls[0] if tls else None,
        ssl_keyfile=tls[1] if tls else None,
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve(sockets=[sock]))
    while not server.started:
        if task.done():
            task.result()
        await asyncio.sleep(0.01)
    try:
        yield app
    finally:
        app.released.set()
        server.should_exit = True
        await task
        sock.close()


@contextlib.asynccontextmanager
async def dropping_server() -> AsyncIterator[str]:
    """A server that reads a request and closes the connection without answering; its URL."""

    async def drop(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(Exception):
            await reader.readuntil(b"\r\n\r\n")
        writer.close()

    server = await asyncio.start_server(drop, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.close()
        await server.wait_closed()


def closed_port() -> int:
    """A loopback port with no listener (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])
