"""Running Tidings: the HTTP API and/or the worker in this process, until a signal.

``tidings serve`` runs both (the default single-node set-up); ``tidings api`` and
``tidings worker`` run one each, to scale them apart on a shared database.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import math
import signal
import socket
import sys
from collections.abc import Awaitable, Callable, Iterable
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

import uvicorn
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from tidings import apikeys, operators
from tidings.app import App
from tidings.control import catalog as control_catalog
from tidings.control import folders
from tidings.settings import Settings
from tidings.store import keys

if TYPE_CHECKING:
    from tidings.api.fast import FastIntake

log = logging.getLogger("tidings")
SWITCH_INTERVAL = 0.0005
FIRST_ADMIN = "admin"  # the console admin a new database gets


def example_templates() -> Path:
    """The packaged example templates (``cartAbandonment``)."""
    return Path(str(resources.files("tidings") / "examples" / "templates"))


async def first_start(app: App) -> str | None:
    """On an empty database: publish the example event type and create an admin API key.
    Returns the new key (to print once), or None if the database was not empty."""
    if not await control_catalog.event_types(app.db):
        await folders.publish_folder(
            app.db, example_templates(), author="tidings", renderer=app.renderer
        )
        await app.refresh_routing()
    async with app.db.connection() as conn:
        if await keys.count_keys(conn):
            return None
    key, _ = await apikeys.create(app.db, "first key", frozenset({"admin"}))
    return key


async def run(
    settings: Settings,
    *,
    api: bool = True,
    worker: bool = True,
    ready: Callable[[App, str | None], Awaitable[None] | None] | None = None,
    first_admin: Callable[[str, str], None] | None = None,
    sock: socket.socket | None = None,
    setup: bool = True,
    serving: Callable[[], None] | None = None,
) -> None:
    """Serve until SIGINT/SIGTERM; ``ready`` is called once the process is up, with the App
    and the key created on first start (if any), then ``first_admin`` with the name and
    password of the console admin created on first start (if one was). The listening socket
    is bound first, so a port in use fails at once (:class:`PortInUse`), before anything is
    written.

    One of several processes (:mod:`tidings.supervisor`) passes the listening ``sock`` it
    inherited, and ``setup=False``: its parent migrated the database and made the first
    start's key and console admin already; ``serving`` is called once the API accepts
    requests (or, without the API, once the process is up)."""
    # The database driver threads (SQLite's writer and readers) hand results back to the
    # event loop and need the GIL to do so; with the default 5 ms switch interval a busy
    # loop keeps them waiting that long each time. 0.5 ms measured 4.1k -> 5.7k single-event
    # POSTs a second (BENCHMARKS.md).
    sys.setswitchinterval(SWITCH_INTERVAL)
    if sock is None and api:
        sock = listen(settings.host, settings.port)
    try:
        await _run(
            settings,
            sock,
            worker=worker,
            ready=ready,
            first_admin=first_admin,
            setup=setup,
            serving=serving,
        )
    finally:
        if sock is not None:
            sock.close()


def freeze_heap() -> None:
    """Once started: keep the ~100,000 objects of the imported libraries out of the garbage
    collector's scans (``gc.freeze``). Each full collection walked them all; measured with
    ``bench/batch.py`` (CPU time), preparing a batch of 1,000 events went from ~10.4 to
    ~6.3 µs an event, one of 500 from ~6.0 to ~5.8."""
    gc.collect()
    gc.freeze()


class PortInUse(OSError):
    """The API's address cannot be bound."""


def listen(host: str, port: int) -> socket.socket:
    """A bound, listening TCP socket for the API."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # IPPROTO_TCP, not 0: asyncio sets TCP_NODELAY only on sockets that say they are TCP;
    # without it an answer written in two parts waits ~40 ms for a delayed ACK.
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise PortInUse(f"cannot listen on {host}:{port}: {exc.strerror}") from None
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


async def _run(
    settings: Settings,
    sock: socket.socket | None,
    *,
    worker: bool,
    ready: Callable[[App, str | None], Awaitable[None] | None] | None,
    first_admin: Callable[[str, str], None] | None = None,
    setup: bool,
    serving: Callable[[], None] | None = None,
) -> None:
    api = sock is not None
    if api:
        _asgi()  # loaded before the worker starts and before the heap is frozen
    async with App.running(settings, run_worker=worker, migrate_schema=setup) as app:
        new_key = await first_start(app) if api and setup else None
        password = await operators.first_admin(app.db, FIRST_ADMIN) if api and setup else None
        freeze_heap()
        if ready is not None:
            result = ready(app, new_key)
            if result is not None:
                await result
        if password is not None and first_admin is not None:
            first_admin(FIRST_ADMIN, password)
        if sock is not None:
            await serve_http(http_server(app), sock, serving)
        else:
            if serving is not None:
                serving()
            await _until_signal()


async def serve_http(
    server: uvicorn.Server, sock: socket.socket, serving: Callable[[], None] | None = None
) -> None:
    """Serve until SIGINT/SIGTERM. uvicorn re-raises the signal once it has stopped, which with
    the default handlers would kill the process before the worker released its events and the
    database closed; the handlers installed here take that second delivery instead, so the
    process stops in order and exits 0."""
    previous = {sig: signal.signal(sig, _after_uvicorn) for sig in (signal.SIGINT, signal.SIGTERM)}
    watch = None if serving is None else asyncio.create_task(_tell_started(server, serving))
    try:
        await server.serve(sockets=[sock])
    finally:
        if watch is not None:
            watch.cancel()
        for sig, handler in previous.items():
            signal.signal(sig, handler)


async def _tell_started(server: uvicorn.Server, serving: Callable[[], None]) -> None:
    while not server.started:  # noqa: ASYNC110 (uvicorn sets a flag; it has no event)
        await asyncio.sleep(0.01)
    serving()


def _after_uvicorn(sig: int, frame: object) -> None:
    log.info("stopping (signal %s)", signal.Signals(sig).name)


class _Coalescing:
    """A connection's transport that sends what one turn of the event loop wrote as one write.

    uvicorn writes a response in two parts, the status line with the headers and then the
    body, and each ``write`` is a ``send`` system call at once (uvloop writes while nothing is
    buffered): two TCP segments where one does, and on a busy intake the two calls were about
    a third of the event loop's time (py-spy, ``bench/run.py --scenarios ingest``). Here the
    parts wait for the end of the current turn (``call_soon``), so the ASGI messages of one
    response, written in one step of its task, leave in one call: a response leaves one turn
    of the loop later, for one system call less. What waits is sent before closing, before
    the end of the stream, and when the peer ends its side (:class:`_HttpProtocol`);
    everything else is the transport's own."""

    __slots__ = ("_loop", "_parts", "_transport")

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop):
        self._transport = transport
        self._loop = loop
        self._parts: list[bytes] = []

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if not self._parts:
            self._loop.call_soon(self.flush)
        self._parts.append(bytes(data))

    def writelines(self, lines: Iterable[bytes | bytearray | memoryview]) -> None:
        for data in lines:
            self.write(data)

    def flush(self) -> None:
        """Send what waits now."""
        parts, self._parts = self._parts, []
        if parts and not self._transport.is_closing():
            self._transport.write(parts[0] if len(parts) == 1 else b"".join(parts))

    def write_eof(self) -> None:
        self.flush()
        self._transport.write_eof()

    def close(self) -> None:
        self.flush()
        self._transport.close()

    def abort(self) -> None:
        self._parts = []
        self._transport.abort()

    def is_closing(self) -> bool:
        return self._transport.is_closing()

    def __getattr__(self, name: str) -> Any:
        if name in _Coalescing.__slots__:  # not set yet: no recursion through __getattr__
            raise AttributeError(name)
        return getattr(self._transport, name)


class _HttpProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol, writing through :class:`_Coalescing`."""

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        self._coalescing = _Coalescing(transport, self.loop)
        writer: Any = self._coalescing
        super().connection_made(writer)

    def eof_received(self) -> None:
        # uvicorn returns None here, so the event loop closes the real transport itself when
        # the peer ends its side: send a response that waits before it does.
        self._coalescing.flush()
        super().eof_received()


def http_server(app: App) -> uvicorn.Server:
    """The uvicorn server for ``app``'s API (serve it with ``serve(sockets=[listen(...)])``)."""
    config = uvicorn.Config(
        _asgi()(app),
        http=_HttpProtocol,
        lifespan="on",
        log_config=None,
        access_log=False,
        server_header=False,
        timeout_graceful_shutdown=math.ceil(app.settings.shutdown_grace),
    )
    return uvicorn.Server(config)


def _asgi() -> Callable[[App], FastIntake]:
    """The API's ASGI application factory. Its libraries (Litestar, the OpenAPI models, the
    console: ~0.7 s of imports) are loaded only in a process that serves it: a worker process
    starts without them."""
    from tidings.api import asgi

    return asgi


async def _until_signal() -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
    await stop.wait()
