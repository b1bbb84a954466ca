"""A small HTTP/1.1 load generator for the benchmarks: keep-alive connections over raw asyncio
streams, so the client spends as little CPU as possible next to the server it measures.

- :func:`closed_loop`: ``connections`` clients each POST as fast as answers come back.
- :func:`open_loop`: POSTs at a fixed rate whatever the answers (the latency scenario), so a
  slow server cannot slow the offered load down and hide its own latency.

Each accepted POST is kept as ``(event id, accept time in µs)``; the accept time is taken when
the 201 answer has been read, i.e. after Tidings has committed the event.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from urllib.parse import urlsplit


@dataclass
class Result:
    accepted: list[tuple[int, int]] = field(default_factory=list)
    errors: dict[int | str, int] = field(default_factory=dict)
    started: float = 0.0
    finished: float = 0.0

    @property
    def seconds(self) -> float:
        return self.finished - self.started


class Connection:
    """One keep-alive HTTP/1.1 connection."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter):
        self.reader = reader
        self.writer = writer

    @classmethod
    async def open(cls, host: str, port: int) -> Connection:
        reader, writer = await asyncio.open_connection(host, port)
        return cls(reader, writer)

    async def request(self, raw: bytes) -> tuple[int, bytes]:
        self.writer.write(raw)
        head = await self.reader.readuntil(b"\r\n\r\n")
        status = int(head[9:12])
        length = 0
        for line in head.split(b"\r\n"):
            if line[:15].lower() == b"content-length:":
                length = int(line[15:])
        body = await self.reader.readexactly(length) if length else b""
        return status, body

    def close(self) -> None:
        self.writer.close()


def post_request(url: str, key: str, body: bytes) -> bytes:
    parts = urlsplit(url)
    return (
        f"POST {parts.path} HTTP/1.1\r\nHost: {parts.netloc}\r\n"
        f"Authorization: Bearer {key}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode() + body


def _event_id(body: bytes) -> int:
    decoded = json.loads(body)
    return int(decoded.get("id") or decoded["PKey"])


async def closed_loop(
    url: str, key: str, body: Callable[[int], bytes], *, count: int, connections: int
) -> Result:
    """POST ``count`` events over ``connections`` keep-alive connections, as fast as possible."""
    parts = urlsplit(url)
    result = Result()
    next_n = 0

    async def client() -> None:
        nonlocal next_n
        conn = await Connection.open(parts.hostname or "127.0.0.1", parts.port or 80)
        try:
            while next_n < count:
                n = next_n
                next_n += 1
                status, answer = await conn.request(post_request(url, key, body(n)))
                if status == 201:
                    result.accepted.append((_event_id(answer), time.time_ns() // 1000))
                else:
                    result.errors[status] = result.errors.get(status, 0) + 1
        finally:
            conn.close()

    result.started = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(connections)))
    result.finished = time.perf_counter()
    return result


#: Seconds an idle connection may be reused: below the server's keep-alive timeout.
KEEP_ALIVE_REUSE = 4.0


async def open_loop(
    url: str, key: str, body: Callable[[int], bytes], *, rate: float, seconds: float
) -> Result:
    """POST at ``rate`` events a second for ``seconds``, on as many connections as needed."""
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    result = Result()
    # Idle connections with the time they were last used. One idle longer than the server's
    # keep-alive timeout (uvicorn: 5 s) may be closed by the server just as a request is
    # written to it; as HTTP clients do, such connections are dropped, not reused.
    idle: list[tuple[Connection, float]] = []
    pending: set[asyncio.Task[None]] = set()

    async def connection() -> Connection:
        while idle:
            conn, used = idle.pop()
            if time.monotonic() - used < KEEP_ALIVE_REUSE:
                return conn
            conn.close()
        return await Connection.open(host, port)

    async def one(n: int) -> None:
        conn = await connection()
        try:
            status, answer = await conn.request(post_request(url, key, body(n)))
        except (OSError, asyncio.IncompleteReadError) as exc:
            conn.close()
            name = type(exc).__name__
            result.errors[name] = result.errors.get(name, 0) + 1
            return
        idle.append((conn, time.monotonic()))
        if status == 201:
            result.accepted.append((_event_id(answer), time.time_ns() // 1000))
        else:
            result.errors[status] = result.errors.get(status, 0) + 1

    total = int(rate * seconds)
    result.started = start = time.perf_counter()
    for n in range(total):
        delay = start + n / rate - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        task = asyncio.create_task(one(n))
        pending.add(task)
        task.add_done_callback(pending.discard)
    if pending:
        await asyncio.gather(*pending)
    result.finished = time.perf_counter()
    for conn, _ in idle:
        conn.close()
    return result
