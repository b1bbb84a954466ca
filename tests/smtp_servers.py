"""SMTP servers for the transport's integration tests, on 127.0.0.1 with ephemeral ports.

:func:`aiosmtpd_server` runs aiosmtpd (a real, independent implementation) with a
:class:`Recorder` handler that keeps what it received and can refuse on command.
:class:`ScriptServer` is a small server of our own that advertises PIPELINING and keeps every
read as it arrived, so tests can see how commands travel, and that misbehaves on request
(421 after some messages, silence, a connection dropped mid-DATA).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import ssl
from collections.abc import AsyncIterator, Callable
from typing import Any

from aiosmtpd.smtp import SMTP, AuthResult, LoginPassword

#: Turns an address into a reply, or None to accept it.
Refuser = Callable[[str], "str | None"]


@dataclasses.dataclass
class Received:
    """One message as a server took it (data un-stuffed)."""

    mail_from: str
    rcpt_tos: list[str]
    data: bytes
    tls: bool = False
    mail_options: list[str] = dataclasses.field(default_factory=list)


class Recorder:
    """An aiosmtpd handler that records envelopes and data and refuses when told to."""

    def __init__(
        self,
        *,
        pipelining: bool = False,
        mail: Refuser | None = None,
        rcpt: Refuser | None = None,
        data: Callable[[bytes], str | None] | None = None,
    ):
        self.pipelining = pipelining
        self.mail = mail
        self.rcpt = rcpt
        self.data = data
        self.received: list[Received] = []
        self.quits = 0

    async def handle_EHLO(
        self, server: Any, session: Any, envelope: Any, hostname: str, responses: list[str]
    ) -> list[str]:
        session.host_name = hostname
        if self.pipelining:
            responses.insert(1, "250-PIPELINING")
        return responses

    async def handle_MAIL(
        self, server: Any, session: Any, envelope: Any, address: str, options: list[str]
    ) -> str:
        refusal = self.mail(address) if self.mail else None
        if refusal:
            return refusal
        envelope.mail_from = address
        envelope.mail_options.extend(options)
        return "250 2.1.0 Ok"

    async def handle_RCPT(
        self, server: Any, session: Any, envelope: Any, address: str, options: list[str]
    ) -> str:
        refusal = self.rcpt(address) if self.rcpt else None
        if refusal:
            return refusal
        envelope.rcpt_tos.append(address)
        return "250 2.1.5 Ok"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        content: bytes = envelope.original_content
        refusal = self.data(content) if self.data else None
        if refusal:
            return refusal
        tls = session.ssl is not None or server.transport.get_extra_info("cipher") is not None
        self.received.append(
            Received(
                envelope.mail_from,
                list(envelope.rcpt_tos),
                content,
                tls=tls,
                mail_options=list(envelope.mail_options),
            )
        )
        return f"250 2.0.0 Ok: queued as Q{len(self.received)}"

    async def handle_QUIT(self, server: Any, session: Any, envelope: Any) -> str:
        self.quits += 1
        return "221 2.0.0 Bye"


class Credentials:
    """An aiosmtpd authenticator accepting one user; it records the mechanisms used."""

    def __init__(self, login: str, password: str):
        self.login = login.encode()
        self.password = password.encode()
        self.mechanisms: list[str] = []

    def __call__(
        self, server: Any, session: Any, envelope: Any, mechanism: str, auth_data: Any
    ) -> AuthResult:
        self.mechanisms.append(mechanism)
        ok = isinstance(auth_data, LoginPassword) and auth_data == (self.login, self.password)
        # handled=False: let aiosmtpd answer "535 5.7.8" itself.
        return AuthResult(success=ok, handled=False)


@dataclasses.dataclass
class Running:
    """A listening server: its port and how many connections it accepted."""

    port: int
    connections: int = 0
    server: asyncio.Server | None = None


@contextlib.asynccontextmanager
async def aiosmtpd_server(
    handler: Any,
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    implicit_tls: ssl.SSLContext | None = None,
    **smtp_options: Any,
) -> AsyncIterator[Running]:
    """Serve aiosmtpd with ``handler``; ``smtp_options`` go to ``aiosmtpd.smtp.SMTP``."""
    running = Running(port)

    def protocol() -> SMTP:
        running.connections += 1
        return SMTP(handler, hostname="test.example", **smtp_options)

    loop = asyncio.get_running_loop()
    server = await loop.create_server(protocol, host, port, ssl=implicit_tls)
    running.port = server.sockets[0].getsockname()[1]
    running.server = server
    try:
        yield running
    finally:
        server.close()
        await server.wait_closed()


@dataclasses.dataclass
class _Session:
    mail_from: str | None = None
    rcpt_tos: list[str] = dataclasses.field(default_factory=list)
    lines: list[bytes] | None = None  # in DATA: the message so far
    messages: int = 0


class ScriptServer:
    """A pipelining SMTP server that records each read and can misbehave.

    ``rcpt`` refuses recipients; ``max_messages`` answers 421 (and closes) to the MAIL
    after that many messages on one connection; ``mute`` stops answering from the first
    line starting with it (a command, or b"." for the end of data); ``drop_in_data``
    hangs up as soon as message data arrives; ``esmtp=False`` refuses EHLO (HELO only);
    ``max_connections`` greets connections beyond that many at once with 421.
    """

    def __init__(
        self,
        *,
        pipelining: bool = True,
        size: int = 0,
        rcpt: Refuser | None = None,
        max_messages: int = 0,
        mute: bytes = b"",
        drop_in_data: bool = False,
        esmtp: bool = True,
        max_connections: int = 0,
    ):
        self.pipelining = pipelining
        self.size = size
        self.rcpt = rcpt
        self.max_messages = max_messages
        self.mute = mute.upper()
        self.drop_in_data = drop_in_data
        self.esmtp = esmtp
        self.max_connections = max_connections
        self.active = 0
        self.reads: list[bytes] = []
        self.received: list[Received] = []
        self.commands: list[bytes] = []
        self.connections = 0
        self.port = 0
        self._server: asyncio.Server | None = None
        self._handlers: set[asyncio.Task[Any]] = set()

    async def __aenter__(self) -> ScriptServer:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        assert self._server is not None
        self._server.close()
        for task in self._handlers:
            task.cancel()
        await asyncio.gather(*self._handlers, return_exceptions=True)
        await self._server.wait_closed()

    @property
    def data(self) -> bytes:
        """Everything the server read, in order."""
        return b"".join(self.reads)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._handlers.add(task)
        self.connections += 1
        self.active += 1
        session = _Session()
        pending = b""
        muted = closing = False
        try:
            if self.max_connections and self.active > self.max_connections:
                writer.write(b"421 4.7.0 script.example Too many connections\r\n")
                return
            writer.write(b"220 script.example ESMTP\r\n")
            while not closing and (chunk := await reader.read(65536)):
                self.reads.append(chunk)
                pending += chunk
                *lines, pending = pending.split(b"\r\n")
                replies: list[bytes] = []
                for line in lines:
                    if self.mute and line.upper().startswith(self.mute) and not muted:
                        muted = True
                        writer.write(b"".join(replies))
                    reply = self._line(session, line)
                    if reply == b"DROP":
                        return
                    if reply is not None:
                        replies.append(reply)
                        if reply.startswith((b"421", b"221")):
                            closing = True
                            break
                if not muted:
                    writer.write(b"".join(replies))
                    await writer.drain()
        except ConnectionError:
            pass
        finally:
            self.active -= 1
            if writer.transport.is_closing():
                writer.transport.abort()
            else:  # let what was written go out first
                writer.close()
            self._handlers.discard(task)

    def _line(self, session: _Session, line: bytes) -> bytes | None:
        """The reply to one line (None inside DATA, b"DROP" to hang up at once)."""
        if session.lines is not None:
            if self.drop_in_data:
                return b"DROP"
            if line != b".":
                session.lines.append(line[1:] if line.startswith(b".") else line)
                return None
            data = b"".join(part + b"\r\n" for part in session.lines)
            assert session.mail_from is not None
            self.received.append(Received(session.mail_from, session.rcpt_tos, data))
            session.mail_from, session.rcpt_tos, session.lines = None, [], None
            session.messages += 1
            return b"250 2.0.0 Ok: queued as S%d\r\n" % len(self.received)
        self.commands.append(line)
        verb, _, arg = line.partition(b" ")
        verb = verb.upper()
        if verb == b"EHLO" and not self.esmtp:
            return b"502 5.5.2 Error: command not recognized\r\n"
        if verb == b"EHLO":
            extensions = [b"script.example"]
            if self.pipelining:
                extensions.append(b"PIPELINING")
            if self.size:
                extensions.append(b"SIZE %d" % self.size)
            extensions.append(b"8BITMIME")
            head = b"".join(b"250-%s\r\n" % ext for ext in extensions[:-1])
            return head + b"250 %s\r\n" % extensions[-1]
        if verb == b"MAIL":
            if self.max_messages and session.messages >= self.max_messages:
                return b"421 4.7.0 script.example Too many messages, closing\r\n"
            session.mail_from = arg.partition(b"<")[2].partition(b">")[0].decode()
            return b"250 2.1.0 Ok\r\n"
        if verb == b"RCPT":
            if session.mail_from is None:
                return b"503 5.5.1 Error: need MAIL command\r\n"
            address = arg.partition(b"<")[2].partition(b">")[0].decode()
            refusal = self.rcpt(address) if self.rcpt else None
            if refusal:
                return refusal.encode() + b"\r\n"
            session.rcpt_tos.append(address)
            return b"250 2.1.5 Ok\r\n"
        if verb == b"DATA":
            if session.mail_from is None:
                return b"503 5.5.1 Error: need RCPT command\r\n"
            if not session.rcpt_tos:
                return b"554 5.5.1 Error: no valid recipients\r\n"
            session.lines = []
            return b"354 End data with <CR><LF>.<CR><LF>\r\n"
        if verb == b"RSET":
            session.mail_from, session.rcpt_tos = None, []
            return b"250 2.0.0 Ok\r\n"
        if verb == b"QUIT":
            return b"221 2.0.0 Bye\r\n"
        if verb in (b"NOOP", b"HELO"):
            return b"250 2.0.0 Ok\r\n"
        return b"502 5.5.2 Error: command not recognized\r\n"


# -- for the live-server tests (tests/acceptance) ------------------------------------------


class Staller(Recorder):
    """A :class:`Recorder` that counts MAIL commands and, for messages ``stall`` picks (by
    their recipients), takes the data and never answers; the silence lasts until the
    connection goes away (aiosmtpd then cancels the handler), so those messages are never
    recorded. ``stall`` may be changed while the server runs; ``stalled`` keeps the data of
    the messages it held. ``delay`` makes every other message wait that long for its reply."""

    def __init__(
        self,
        *,
        stall: Callable[[list[str]], bool] | None = None,
        delay: float = 0.0,
        **options: Any,
    ):
        super().__init__(**options)
        self.stall = stall
        self.delay = delay
        self.mails = 0
        self.stalled: list[bytes] = []

    async def handle_MAIL(
        self, server: Any, session: Any, envelope: Any, address: str, options: list[str]
    ) -> str:
        self.mails += 1
        return await super().handle_MAIL(server, session, envelope, address, options)

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        if self.stall is not None and self.stall(list(envelope.rcpt_tos)):
            self.stalled.append(envelope.original_content)
            await asyncio.get_running_loop().create_future()  # until cancelled
        if self.delay:
            await asyncio.sleep(self.delay)
        return await super().handle_DATA(server, session, envelope)


@dataclasses.dataclass
class Tracked(Running):
    """A listening server that also knows how many connections are open (and the most that
    ever were at once)."""

    active: int = 0
    peak: int = 0


@contextlib.asynccontextmanager
async def tracked_aiosmtpd_server(
    handler: Any,
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    implicit_tls: ssl.SSLContext | None = None,
    **smtp_options: Any,
) -> AsyncIterator[Tracked]:
    """:func:`aiosmtpd_server` that tracks open connections."""
    running = Tracked(port)

    class Counting(SMTP):
        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            if self._original_transport is None:  # not the same one again after STARTTLS
                running.connections += 1
                running.active += 1
                running.peak = max(running.peak, running.active)
            super().connection_made(transport)

        def connection_lost(self, error: Exception | None) -> None:
            running.active -= 1
            super().connection_lost(error)

    def protocol() -> SMTP:
        return Counting(handler, hostname="test.example", **smtp_options)

    loop = asyncio.get_running_loop()
    server = await loop.create_server(protocol, host, port, ssl=implicit_tls)
    running.port = server.sockets[0].getsockname()[1]
    running.server = server
    try:
        yield running
    finally:
        server.close()
        await server.wait_closed()


@contextlib.asynccontextmanager
async def silent_server(*, host: str = "127.0.0.1", port: int = 0) -> AsyncIterator[Running]:
    """Accepts connections and never says a word (not even a greeting); hangs up on every
    client when it stops."""
    running = Running(port)
    transports: set[asyncio.Transport] = set()

    class Silent(asyncio.Protocol):
        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            assert isinstance(transport, asyncio.Transport)
            running.connections += 1
            self.transport = transport
            transports.add(transport)

        def connection_lost(self, exc: Exception | None) -> None:
            transports.discard(self.transport)

    loop = asyncio.get_running_loop()
    server = await loop.create_server(Silent, host, port)
    running.port = server.sockets[0].getsockname()[1]
    running.server = server
    try:
        yield running
    finally:
        server.close()
        for transport in list(transports):
            transport.abort()
        await server.wait_closed()
