"""Email over SMTP: a pool of connections that pipeline their commands (RFC 2920).

``send`` puts a message on a queue and waits for its outcome. Up to ``pool_size`` connections
are opened as messages arrive; each takes messages from the queue until it has been idle for
``idle_timeout`` seconds, then says QUIT. Where the server offers PIPELINING a connection
works in round trips of one write and the replies to it, read in order::

    write  [body of A + "."]  [RSET]  MAIL FROM:<B>  RCPT TO:<B>  DATA
    read   [final reply to A] [RSET]  MAIL reply     RCPT reply   DATA reply (354: B is ready)

The bracketed parts are there when they apply: A's body goes first when A's DATA was answered
354 in the previous round trip, and B is taken only if a message is queued at that moment
(otherwise A's body travels alone), so a busy connection spends one round trip per message.
When MAIL or RCPT fails, the server answers DATA with an error too and B's body is not sent;
B gets its outcome from the first failing reply and the next transaction starts with RSET.
Without PIPELINING (or with ``pipelining=False``) the same commands go one at a time.

What the server says becomes an :mod:`~tidings.channels.errors` exception, then an Outcome:

=====================================  ====================================================
2xx after the body                     delivered; ``reply`` is that line
4xx                                    ``TemporaryFailure``
421 (any command)                      ``TemporaryFailure``; the connection is closed
5xx                                    ``PermanentFailure``
5xx with 5.1.{1,2,3,6,10} on RCPT      ``RecipientRejected`` (quarantine the address)
refused, reset, timeout, TLS, EOF      ``ConnectionFailure``; the connection is dropped
AUTH refused                           ``TemporaryFailure`` (a configuration error)
message over the server's SIZE         ``PermanentFailure``, nothing sent
=====================================  ====================================================

A message whose commands were sent but not answered when its connection went away (closed,
reset or 421) is put back on the queue once, since the server cannot have accepted it. When a
connection cannot be set up and no other is open or opening, every queued message gets that
failure at once (a server that is down fails fast); while others are working, the pool just
stops growing for a moment.
"""

from __future__ import annotations

import asyncio
import base64
import collections
import dataclasses
import ipaddress
import logging
import math
import re
import socket
import ssl

from tidings import model
from tidings.channels import errors
from tidings.channels.email import mime

log = logging.getLogger("tidings.smtp")

TLS_MODES = frozenset({"none", "opportunistic", "starttls", "implicit"})

#: Enhanced status codes (RFC 3463) that say the recipient's address itself is bad, so it is
#: quarantined: 5.1.1 no such mailbox, 5.1.2 no such domain, 5.1.3 malformed address, 5.1.6
#: mailbox moved without a forwarding address, 5.1.10 the domain accepts no mail (null MX,
#: RFC 7505). Not 5.1.0 (servers use it for any address trouble, sender-side policy
#: included) nor 5.2.x (a full or disabled mailbox can recover).
_NO_SUCH_RECIPIENT = frozenset({(5, 1, 1), (5, 1, 2), (5, 1, 3), (5, 1, 6), (5, 1, 10)})

#: After a connection could not be set up while others are working, the pool does not grow
#: for this many seconds, so a server capping our connections is not hammered.
_GROW_PAUSE = 1.0

#: Longest reply line taken (RFC 5321 allows 512 octets; servers exceed it in the wild).
_MAX_REPLY_LINE = 65536

_ENHANCED = re.compile(r"([245])\.(\d{1,3})\.(\d{1,3})(?=\s|$)")
_QUEUE_ID = re.compile(r"\bqueued as\s+<?([^\s>]+)|\bid=(\S+)", re.IGNORECASE)
_BAD_ADDRESS = re.compile(r"[\x00-\x1f\x7f<>]")
_LINE_END = re.compile(rb"\r\n|\r|\n")
_HOSTNAME = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?")


@dataclasses.dataclass(frozen=True, slots=True)
class SMTPConfig:
    """Where and how to reach the SMTP server."""

    host: str
    port: int = 25
    #: "none", "opportunistic" (STARTTLS when offered), "starttls" (required) or "implicit".
    tls: str = "opportunistic"
    tls_verify: bool = True
    #: A PEM bundle of trusted CAs; empty means the system's.
    ca_file: str = ""
    #: AUTH (PLAIN, else LOGIN) when set; only over TLS unless the server is on loopback.
    username: str = ""
    password: str = ""
    pool_size: int = 8
    #: Seconds allowed for connecting and for each round trip.
    timeout: float = 30.0
    #: Use PIPELINING when the server advertises it.
    pipelining: bool = True
    #: The name given in EHLO; empty means this host's fully qualified name.
    helo_name: str = ""
    #: Seconds a connection may stay unused before it is closed.
    idle_timeout: float = 30.0

    def __post_init__(self) -> None:
        if self.tls not in TLS_MODES:
            raise ValueError(f"tls must be one of {sorted(TLS_MODES)}, not {self.tls!r}")
        if self.pool_size < 1:
            raise ValueError("pool_size must be at least 1")
        if self.timeout <= 0 or self.idle_timeout <= 0:
            raise ValueError("timeout and idle_timeout must be positive")
        if self.helo_name and not _HOSTNAME.fullmatch(self.helo_name):
            raise ValueError(f"helo_name is not a host name: {self.helo_name!r}")


@dataclasses.dataclass(frozen=True, slots=True)
class _Reply:
    code: int
    lines: tuple[str, ...]

    @property
    def enhanced(self) -> tuple[int, int, int] | None:
        match = _ENHANCED.match(self.lines[0])
        return None if match is None else (int(match[1]), int(match[2]), int(match[3]))

    def __str__(self) -> str:
        if len(self.lines) == 1:
            return f"{self.code} {self.lines[0]}".rstrip()
        # Continuation lines repeat the enhanced code; say it once.
        first, *rest = self.lines
        match = _ENHANCED.match(first)
        if match:
            rest = [line.removeprefix(match[0]).lstrip() for line in rest]
        return " ".join([str(self.code), first, *rest]).rstrip()


class _Lost(Exception):
    """The connection cannot go on. ``error`` is what unsettled messages on it get;
    ``again`` says another connection may well take them (it was closed, not stuck)."""

    def __init__(self, error: errors.DeliveryError, *, again: bool):
        super().__init__(error.reply)
        self.error = error
        self.again = again


@dataclasses.dataclass(slots=True, eq=False)
class _Job:
    sender: bytes
    recipient: bytes
    size: int
    body: bytes  # dot-stuffed, with the end-of-data line
    future: asyncio.Future[model.Outcome]
    body_sent: bool = False
    requeued: bool = False


class _Watchdog:
    """Cancels the connection's task when a network wait outlives the timeout.

    It does what ``asyncio.timeout`` does, but moves its timer only when the timer fires:
    arming costs a clock read where ``asyncio.timeout`` costs a timer handle (~6 µs), and a
    pipelining connection arms it once per message.
    """

    __slots__ = ("_deadline", "_fired", "_handle", "_loop", "_task", "_timeout")

    def __init__(self, timeout: float):
        self._loop = asyncio.get_running_loop()
        task = asyncio.current_task()
        assert task is not None
        self._task = task
        self._timeout = timeout
        self._deadline = math.inf
        self._handle: asyncio.TimerHandle | None = None
        self._fired = False

    def arm(self) -> None:
        self._deadline = self._loop.time() + self._timeout
        if self._handle is None:
            self._handle = self._loop.call_at(self._deadline, self._check)

    def disarm(self) -> None:
        self._deadline = math.inf

    def claim(self) -> bool:
        """After a CancelledError: whether it was this watchdog's (and only its) doing."""
        fired, self._fired = self._fired, False
        return fired and self._task.uncancel() == 0

    def close(self) -> None:
        self._deadline = math.inf
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None

    def _check(self) -> None:
        self._handle = None
        if self._deadline == math.inf:
            return
        if self._loop.time() < self._deadline:
            self._handle = self._loop.call_at(self._deadline, self._check)
        else:
            self._fired = True
            self._task.cancel()


class _Connection:
    __slots__ = (
        "buffer",
        "busy",
        "extensions",
        "loopback",
        "needs_rset",
        "reader",
        "size_limit",
        "timeout",
        "tls",
        "watchdog",
        "where",
        "writer",
    )

    def __init__(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        *,
        where: str,
        timeout: float,
        tls: bool,
    ):
        self.reader = reader
        self.writer = writer
        self.where = where
        self.timeout = timeout
        self.tls = tls
        self.buffer = bytearray()
        self.watchdog = _Watchdog(timeout)
        self.extensions: dict[str, str] = {}
        self.size_limit = 0  # the server's SIZE, 0 when it states none
        self.needs_rset = False
        self.busy = False
        peer = writer.get_extra_info("peername")
        try:
            self.loopback = ipaddress.ip_address(peer[0]).is_loopback
        except (TypeError, ValueError, IndexError):
            self.loopback = False

    async def read_reply(self) -> _Reply:
        """Read one (possibly multi-line) reply; the caller bounds the wait."""
        # Replies are parsed from our own buffer, filled a whole read at a time: pipelined
        # replies arrive together, and one read serves them all.
        buffer = self.buffer
        lines: list[str] = []
        while True:
            end = buffer.find(b"\n")
            while end < 0:
                if len(buffer) > _MAX_REPLY_LINE:
                    raise _Lost(self.failure("sent an overlong reply line"), again=False)
                chunk = await self.reader.read(65536)
                if not chunk:
                    raise _Lost(self.failure("closed the connection"), again=True)
                start = len(buffer)
                buffer += chunk
                end = buffer.find(b"\n", start)
            line = bytes(buffer[: end + 1])
            del buffer[: end + 1]
            if not (line[:3].isdigit() and line[3:4] in (b" ", b"-", b"\r", b"\n")):
                raise _Lost(self.failure(f"sent a malformed reply {line[:80]!r}"), again=False)
            lines.append(line[4:].rstrip(b"\r\n").decode("utf-8", "replace"))
            if line[3:4] != b"-":
                break
            if len(lines) > 1000:
                raise _Lost(self.failure("sent an endless reply"), again=False)
        reply = _Reply(int(line[:3]), tuple(lines))
        if reply.code == 421:  # the server is closing this connection (RFC 5321 3.8)
            raise _Lost(errors.TemporaryFailure(str(reply)), again=True)
        return reply

    async def command(self, line: bytes | None) -> _Reply:
        """Send ``line`` (if any) and read the reply, within the timeout."""
        self.watchdog.arm()
        try:
            if line is not None:
                self.writer.write(line)
                await self.writer.drain()
            return await self.read_reply()
        except asyncio.CancelledError:
            if self.watchdog.claim():
                raise TimeoutError from None
            raise
        finally:
            self.watchdog.disarm()

    async def start_tls(self, context: ssl.SSLContext, host: str) -> None:
        # Bytes read before the handshake would be taken as if they came over TLS
        # (STARTTLS command injection, CVE-2011-0411), so a server that sent any is refused.
        if self.buffer or getattr(self.reader, "_buffer", None):
            raise errors.ConnectionFailure(f"{self.where} sent data after its STARTTLS reply")
        async with asyncio.timeout(self.timeout):
            await self.writer.start_tls(context, server_hostname=host)
        self.tls = True

    def failure(self, what: str) -> errors.ConnectionFailure:
        return errors.ConnectionFailure(f"{self.where} {what}")

    def abort(self) -> None:
        self.watchdog.close()
        self.writer.transport.abort()

    async def quit(self) -> None:
        """Say goodbye politely; a server that does not answer is simply left."""
        try:
            async with asyncio.timeout(min(self.timeout, 5.0)):
                self.writer.write(b"QUIT\r\n")
                await self.writer.drain()
                await self.read_reply()
                self.writer.close()
                await self.writer.wait_closed()
        except (_Lost, OSError, EOFError):  # TimeoutError is an OSError
            pass
        finally:
            self.abort()


class SMTPTransport:
    """Sends email to one SMTP server over a pool of connections."""

    name = "smtp"

    def __init__(self, config: SMTPConfig) -> None:
        self._config = config
        self._where = f"{config.host}:{config.port}"
        self._queue: collections.deque[_Job] = collections.deque()
        self._idle: collections.deque[asyncio.Future[None]] = collections.deque()
        self._tasks: set[asyncio.Task[None]] = set()
        self._connections: set[_Connection] = set()
        self._connecting = 0
        self._grow_after = 0.0
        self._closing = False
        self._ssl_context: ssl.SSLContext | None = None
        self._helo_name = config.helo_name

    # -- the surface --------------------------------------------------------------------

    async def send(self, message: model.EmailMessage) -> model.Outcome:
        """Deliver ``message`` to its ``to`` address, from its ``sender`` address."""
        try:
            data = mime.build(message)
        except ValueError as exc:  # includes UnicodeError: the message cannot be written
            return errors.outcome_for(errors.PermanentFailure(f"message not built: {exc}"))
        return await self.send_raw(message.sender.address, message.to.address, data)

    async def send_raw(self, mail_from: str, rcpt_to: str, data: bytes) -> model.Outcome:
        """Deliver ``data`` (a whole message, CRLF line ends, not dot-stuffed) as given."""
        if self._closing:
            return errors.outcome_for(errors.ConnectionFailure("the SMTP transport is closed"))
        try:
            sender = _address(mail_from, "sender")
            recipient = _address(rcpt_to, "recipient")
        except errors.DeliveryError as error:
            return errors.outcome_for(error)
        size, body = _prepare(data)
        job = _Job(sender, recipient, size, body, asyncio.get_running_loop().create_future())
        self._queue.append(job)
        self._kick()
        return await job.future

    async def aclose(self) -> None:
        """Finish the queued messages, then say QUIT on every connection."""
        self._closing = True
        while self._idle:
            _resolve(self._idle.popleft())
        while self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)

    def stats(self) -> dict[str, int]:
        """Open and busy connections and messages waiting for one (for metrics)."""
        return {
            "open_connections": len(self._connections),
            "busy_connections": sum(1 for conn in self._connections if conn.busy),
            "queued_messages": len(self._queue),
        }

    # -- the pool -----------------------------------------------------------------------

    def _kick(self) -> None:
        """Hand queued messages to idle connections, and open more if allowed."""
        waiting = len(self._queue)
        while waiting and self._idle:
            if _resolve(self._idle.popleft()):
                waiting -= 1
        if not waiting or (self._tasks and asyncio.get_running_loop().time() < self._grow_after):
            return
        for _ in range(min(waiting - self._connecting, self._config.pool_size - len(self._tasks))):
            self._connecting += 1
            task = asyncio.create_task(self._work())
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    def _take(self, conn: _Connection) -> _Job | None:
        """The next queued message this connection can carry, if any."""
        while self._queue:
            job = self._queue.popleft()
            if job.future.done():  # its sender was cancelled
                continue
            limit = conn.size_limit
            if not limit or job.size <= limit:
                conn.busy = True
                return job
            too_big = f"message of {job.size} bytes exceeds the {limit}-byte limit (SIZE)"
            _settle(job, errors.PermanentFailure(f"{too_big} of {self._where}"))
        return None

    async def _next(self, conn: _Connection) -> _Job | None:
        """Wait for a message; None once idle too long or closing."""
        loop = asyncio.get_running_loop()
        while True:
            job = self._take(conn)
            if job is not None or self._closing:
                return job
            conn.busy = False
            ready = loop.create_future()
            self._idle.append(ready)
            try:
                async with asyncio.timeout(self._config.idle_timeout):
                    await ready
            except TimeoutError:
                if not self._queue:
                    return None
            finally:
                if ready in self._idle:
                    self._idle.remove(ready)

    async def _work(self) -> None:
        """One connection's life: open it, carry messages, close it."""
        inflight: list[_Job] = []
        conn: _Connection | None = None
        cancelled = False
        try:
            try:
                conn = await self._open()
            except errors.DeliveryError as error:
                self._open_failed(error)
                return
            finally:
                self._connecting -= 1
            self._connections.add(conn)
            if self._config.pipelining and "PIPELINING" in conn.extensions:
                await self._pipelined(conn, inflight)
            else:
                await self._lockstep(conn, inflight)
            await conn.quit()
        except _Lost as lost:
            self._drop(conn, inflight, lost.error, again=lost.again)
        except TimeoutError:
            failure = errors.ConnectionFailure(
                f"{self._where} did not answer within {self._config.timeout:g} s"
            )
            self._drop(conn, inflight, failure, again=False)
        except (OSError, EOFError) as exc:
            failure = errors.ConnectionFailure(f"connection to {self._where} lost: {exc}")
            self._drop(conn, inflight, failure, again=True)
        except asyncio.CancelledError:
            cancelled = True
            self._drop(conn, inflight, errors.ConnectionFailure("SMTP transport stopped"))
            raise
        except Exception as exc:
            log.exception("SMTP connection to %s failed", self._where)
            self._drop(conn, inflight, errors.ConnectionFailure(f"SMTP client error: {exc!r}"))
        finally:
            if conn is not None:
                self._connections.discard(conn)
            # Leave the pool before kicking it, so a replacement may be opened.
            task = asyncio.current_task()
            if task is not None:
                self._tasks.discard(task)
            if not cancelled:  # when the loop is being torn down, start nothing new
                self._kick()

    def _open_failed(self, error: errors.DeliveryError) -> None:
        if len(self._tasks) > 1:
            # Other connections are up (or coming up) and will carry the queue.
            self._grow_after = asyncio.get_running_loop().time() + _GROW_PAUSE
            return
        while self._queue:
            _settle(self._queue.popleft(), error)

    def _drop(
        self,
        conn: _Connection | None,
        inflight: list[_Job],
        error: errors.DeliveryError,
        *,
        again: bool = False,
    ) -> None:
        if conn is not None:
            conn.abort()
        for job in reversed(inflight):
            if job.future.done():
                continue
            if again and not job.body_sent and not job.requeued:
                job.requeued = True
                self._queue.appendleft(job)
            else:
                # When the body went out, the server may or may not have accepted the
                # message before the connection broke (SMTP cannot tell); it is retried,
                # and the stable Message-ID lets receivers drop a duplicate.
                _settle(job, error)
        inflight.clear()

    # -- transactions -------------------------------------------------------------------

    async def _pipelined(self, conn: _Connection, inflight: list[_Job]) -> None:
        job = await self._next(conn)
        ready: _Job | None = None  # DATA got 354: its body opens the next write
        while job is not None or ready is not None:
            parts: list[bytes] = []
            if ready is not None:
                parts.append(ready.body)
                ready.body_sent = True
            rset = False
            if job is not None:
                inflight.append(job)
                rset, conn.needs_rset = conn.needs_rset, False
                if rset:
                    parts.append(b"RSET\r\n")
                parts.append(_envelope(conn, job))
            conn.writer.write(b"".join(parts))
            conn.watchdog.arm()
            try:
                await conn.writer.drain()
                if ready is not None:
                    _finish(ready, await conn.read_reply())
                    inflight.remove(ready)
                    ready = None
                if job is not None:
                    if rset:
                        _expect_rset(conn, await conn.read_reply())
                    mail = await conn.read_reply()
                    rcpt = await conn.read_reply()
                    data = await conn.read_reply()
            except asyncio.CancelledError:
                if conn.watchdog.claim():
                    raise TimeoutError from None
                raise
            finally:
                conn.watchdog.disarm()
            if job is not None:
                failure = _refusal(mail, rcpt, data)
                if failure is None:
                    ready = job
                else:
                    _settle(job, failure)
                    inflight.remove(job)
                    conn.needs_rset = True
                    if data.code == 354:
                        # The server wants a body for a transaction it refused; ending it
                        # with "." could deliver an empty message, so the connection goes.
                        raise _Lost(conn.failure("accepted DATA after refusing"), again=False)
            job = self._take(conn)
            if job is None and ready is None:
                job = await self._next(conn)

    async def _lockstep(self, conn: _Connection, inflight: list[_Job]) -> None:
        while (job := await self._next(conn)) is not None:
            inflight.append(job)
            if conn.needs_rset:
                _expect_rset(conn, await conn.command(b"RSET\r\n"))
                conn.needs_rset = False
            size = b" SIZE=%d" % job.size if "SIZE" in conn.extensions else b""
            steps = (
                (b"MAIL FROM:<%s>%s\r\n" % (job.sender, size), "MAIL"),
                (b"RCPT TO:<%s>\r\n" % job.recipient, "RCPT"),
                (b"DATA\r\n", "DATA"),
            )
            for line, stage in steps:
                reply = await conn.command(line)
                accepted = reply.code == 354 if stage == "DATA" else reply.code // 100 == 2
                if not accepted:
                    _settle(job, _error_for(reply, stage))
                    conn.needs_rset = True  # sent before the next transaction
                    break
            else:
                job.body_sent = True
                _finish(job, await conn.command(job.body))
            inflight.remove(job)

    # -- setting up a connection --------------------------------------------------------

    async def _open(self) -> _Connection:
        cfg = self._config
        implicit = cfg.tls == "implicit"
        conn: _Connection | None = None
        try:
            async with asyncio.timeout(cfg.timeout):
                reader, writer = await asyncio.open_connection(
                    cfg.host,
                    cfg.port,
                    ssl=self._tls_context() if implicit else None,
                    server_hostname=cfg.host if implicit else None,
                )
            conn = _Connection(reader, writer, where=self._where, timeout=cfg.timeout, tls=implicit)
            await self._handshake(conn)
            return conn
        except errors.DeliveryError as error:
            failure = error
        except _Lost as lost:
            failure = lost.error
        except TimeoutError:
            failure = errors.ConnectionFailure(
                f"no session with {self._where} within {cfg.timeout:g} s"
            )
        except (OSError, EOFError) as exc:  # includes ssl.SSLError
            failure = errors.ConnectionFailure(f"cannot connect to {self._where}: {exc}")
        if conn is not None:
            conn.abort()
        raise failure

    async def _handshake(self, conn: _Connection) -> None:
        cfg = self._config
        greeting = await conn.command(None)
        if greeting.code != 220:
            raise errors.ConnectionFailure(f"{self._where} refused the session: {greeting}")
        await self._hello(conn)
        if cfg.tls in ("opportunistic", "starttls"):
            reply = await conn.command(b"STARTTLS\r\n") if "STARTTLS" in conn.extensions else None
            if reply is not None and reply.code == 220:
                try:
                    await conn.start_tls(self._tls_context(), cfg.host)
                except (OSError, ValueError) as exc:  # ssl errors; ValueError: a bad host name
                    why = str(exc) or type(exc).__name__
                    raise errors.ConnectionFailure(f"TLS with {self._where} failed: {why}") from exc
                await self._hello(conn)
            elif cfg.tls == "starttls":
                what = "does not offer STARTTLS" if reply is None else f"refused STARTTLS ({reply})"
                raise errors.ConnectionFailure(f"{self._where} {what}, which tls=starttls requires")
        if cfg.username:
            await self._authenticate(conn)

    async def _hello(self, conn: _Connection) -> None:
        name = (self._helo_name or await self._local_name(conn)).encode("ascii")
        reply = await conn.command(b"EHLO %s\r\n" % name)
        conn.extensions = {}
        if reply.code // 100 == 5:  # not an ESMTP server
            reply = await conn.command(b"HELO %s\r\n" % name)
        elif reply.code // 100 == 2:
            for line in reply.lines[1:]:
                keyword, _, params = line.partition(" ")
                keyword, _, legacy = keyword.partition("=")  # "AUTH=LOGIN" of old servers
                conn.extensions[keyword.upper()] = f"{legacy} {params}".strip()
        if reply.code // 100 != 2:
            raise errors.ConnectionFailure(f"{self._where} refused our EHLO: {reply}")
        size = conn.extensions.get("SIZE", "")
        conn.size_limit = int(size) if size.isdigit() else 0

    async def _local_name(self, conn: _Connection) -> str:
        # getfqdn may wait on DNS, so it runs in a thread and within the timeout.
        try:
            async with asyncio.timeout(self._config.timeout):
                fqdn = await asyncio.to_thread(socket.getfqdn)
        except TimeoutError:
            fqdn = ""
        if _HOSTNAME.fullmatch(fqdn) and "." in fqdn:
            self._helo_name = fqdn
        else:  # an address literal is always an acceptable EHLO argument
            host = conn.writer.get_extra_info("sockname")[0]
            self._helo_name = f"[IPv6:{host}]" if ":" in host else f"[{host}]"
        return self._helo_name

    async def _authenticate(self, conn: _Connection) -> None:
        # A refused login is the operator's configuration, not the message's fault: it is a
        # TemporaryFailure so messages wait for the fix instead of failing for good.
        cfg = self._config
        if not (conn.tls or conn.loopback):
            raise errors.TemporaryFailure(
                f"not sending the SMTP password to {self._where} unencrypted (use tls)"
            )
        offered = conn.extensions.get("AUTH", "").upper().split()
        user, password = cfg.username.encode(), cfg.password.encode()
        if "PLAIN" in offered:
            reply = await conn.command(b"AUTH PLAIN %s\r\n" % _b64(b"\0%s\0%s" % (user, password)))
        elif "LOGIN" in offered:
            reply = await conn.command(b"AUTH LOGIN\r\n")
            for secret in (user, password):
                if reply.code != 334:
                    break
                reply = await conn.command(_b64(secret) + b"\r\n")
        else:
            raise errors.TemporaryFailure(
                f"{self._where} offers no AUTH mechanism we speak (PLAIN, LOGIN): "
                f"{' '.join(offered) or 'none'}"
            )
        if reply.code != 235:
            raise errors.TemporaryFailure(f"{self._where} refused our login: {reply}")

    def _tls_context(self) -> ssl.SSLContext:
        if self._ssl_context is None:
            context = ssl.create_default_context(cafile=self._config.ca_file or None)
            if not self._config.tls_verify:
                context.check_hostname = False
                context.verify_mode = ssl.CERT_NONE
            self._ssl_context = context
        return self._ssl_context


# -- pure helpers ---------------------------------------------------------------------------


def _address(address: str, role: str) -> bytes:
    """``address`` as it goes between angle brackets, or PermanentFailure."""
    if _BAD_ADDRESS.search(address) or (role == "recipient" and not address):
        raise errors.PermanentFailure(f"invalid {role} address {address!r}")
    try:
        return address.encode("ascii")
    except UnicodeEncodeError:
        raise errors.PermanentFailure(
            f"{role} address {address!r} is not ASCII (SMTPUTF8 is not supported)"
        ) from None


def _prepare(data: bytes) -> tuple[int, bytes]:
    """The message's size (as SIZE counts it) and its dot-stuffed form ending in ".\\r\\n"."""
    crlf = data.count(b"\r\n")
    if data.count(b"\n") != crlf or data.count(b"\r") != crlf:
        # A bare CR or LF could end the data early on some servers (SMTP smuggling).
        data = _LINE_END.sub(b"\r\n", data)
    if data and not data.endswith(b"\r\n"):
        data += b"\r\n"
    size = len(data)
    data = data.replace(b"\r\n.", b"\r\n..")
    if data.startswith(b"."):
        data = b"." + data
    return size, data + b".\r\n"


def _envelope(conn: _Connection, job: _Job) -> bytes:
    size = b" SIZE=%d" % job.size if "SIZE" in conn.extensions else b""
    return b"MAIL FROM:<%s>%s\r\nRCPT TO:<%s>\r\nDATA\r\n" % (job.sender, size, job.recipient)


def _refusal(mail: _Reply, rcpt: _Reply, data: _Reply) -> errors.DeliveryError | None:
    """The first refusal among the envelope's replies, if any."""
    if mail.code // 100 != 2:
        return _error_for(mail, "MAIL")
    if rcpt.code // 100 != 2:
        return _error_for(rcpt, "RCPT")
    if data.code != 354:
        return _error_for(data, "DATA")
    return None


def _error_for(reply: _Reply, stage: str) -> errors.DeliveryError:
    """The exception a refusal at ``stage`` stands for; decided by codes, never by text."""
    text = str(reply)
    if reply.code // 100 == 4:
        return errors.TemporaryFailure(text)
    if reply.code // 100 == 5:
        if stage == "RCPT" and reply.enhanced in _NO_SUCH_RECIPIENT:
            return errors.RecipientRejected(text)
        return errors.PermanentFailure(text)
    return errors.TemporaryFailure(f"unexpected reply to {stage}: {text}")


def _expect_rset(conn: _Connection, reply: _Reply) -> None:
    if reply.code // 100 != 2:
        raise _Lost(conn.failure(f"refused RSET: {reply}"), again=True)


def _finish(job: _Job, reply: _Reply) -> None:
    """Settle ``job`` with the server's answer to its body."""
    if reply.code // 100 != 2:
        _settle(job, _error_for(reply, "end of data"))
    elif not job.future.done():
        match = _QUEUE_ID.search(reply.lines[-1])
        provider_id = (match[1] or match[2]) if match else ""
        job.future.set_result(
            model.Outcome(model.OutcomeKind.DELIVERED, reply=str(reply), provider_id=provider_id)
        )


def _settle(job: _Job, error: errors.DeliveryError) -> None:
    if not job.future.done():
        job.future.set_result(errors.outcome_for(error))


def _resolve(future: asyncio.Future[None]) -> bool:
    if future.done():
        return False
    future.set_result(None)
    return True


def _b64(data: bytes) -> bytes:
    return base64.b64encode(data)
