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
import collections
import logging
import socket
import ssl

from tidings import model
from tidings.channels import errors
from tidings.channels.email import mime, wire

log = logging.getLogger("tidings.smtp")

SMTPConfig = wire.SMTPConfig
TLS_MODES = wire.TLS_MODES


class SMTPTransport:
    """Sends email to one SMTP server over a pool of connections."""

    name = "smtp"

    def __init__(self, config: wire.SMTPConfig) -> None:
        self._config = config
        self._where = f"{config.host}:{config.port}"
        self._queue: collections.deque[wire.Job] = collections.deque()
        self._idle: collections.deque[asyncio.Future[None]] = collections.deque()
        self._tasks: set[asyncio.Task[None]] = set()
        self._connections: set[wire.Connection] = set()
        self._connecting = 0
        self._grow_after = 0.0
        self._closing = False
        self._ssl_context: ssl.SSLContext | None = None
        self._helo_name = config.helo_name

    # -- the surface --------------------------------------------------------------------

    async def send(self, message: model.EmailMessage) -> model.Outcome:
        """Deliver ``message`` to its ``to`` address, from its ``return_path`` (else its
        ``sender``) address."""
        try:
            data = mime.build(message)
        except ValueError as exc:  # includes UnicodeError: the message cannot be written
            return errors.outcome_for(errors.PermanentFailure(f"message not built: {exc}"))
        envelope_sender = message.return_path or message.sender.address
        return await self.send_raw(envelope_sender, message.to.address, data)

    async def send_raw(self, mail_from: str, rcpt_to: str, data: bytes) -> model.Outcome:
        """Deliver ``data`` (a whole message, CRLF line ends, not dot-stuffed) as given."""
        if self._closing:
            return errors.outcome_for(errors.ConnectionFailure("the SMTP transport is closed"))
        try:
            sender = wire.address(mail_from, "sender")
            recipient = wire.address(rcpt_to, "recipient")
        except errors.DeliveryError as error:
            return errors.outcome_for(error)
        size, body = wire.prepare(data)
        job = wire.Job(sender, recipient, size, body, asyncio.get_running_loop().create_future())
        self._queue.append(job)
        self._kick()
        return await job.future

    async def aclose(self) -> None:
        """Finish the queued messages, then say QUIT on every connection."""
        self._closing = True
        while self._idle:
            wire.resolve(self._idle.popleft())
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
            if wire.resolve(self._idle.popleft()):
                waiting -= 1
        if not waiting or (self._tasks and asyncio.get_running_loop().time() < self._grow_after):
            return
        for _ in range(min(waiting - self._connecting, self._config.pool_size - len(self._tasks))):
            self._connecting += 1
            task = asyncio.create_task(self._work())
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    def _take(self, conn: wire.Connection) -> wire.Job | None:
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
            wire.settle(job, errors.PermanentFailure(f"{too_big} of {self._where}"))
        return None

    async def _next(self, conn: wire.Connection) -> wire.Job | None:
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
        inflight: list[wire.Job] = []
        conn: wire.Connection | None = None
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
        except wire.Lost as lost:
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
            self._grow_after = asyncio.get_running_loop().time() + wire.GROW_PAUSE
            return
        while self._queue:
            wire.settle(self._queue.popleft(), error)

    def _drop(
        self,
        conn: wire.Connection | None,
        inflight: list[wire.Job],
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
                wire.settle(job, error)
        inflight.clear()

    # -- transactions -------------------------------------------------------------------

    async def _pipelined(self, conn: wire.Connection, inflight: list[wire.Job]) -> None:
        job = await self._next(conn)
        ready: wire.Job | None = None  # DATA got 354: its body opens the next write
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
                parts.append(wire.envelope(conn, job))
            conn.writer.write(b"".join(parts))
            conn.watchdog.arm()
            try:
                await conn.writer.drain()
                if ready is not None:
                    wire.finish(ready, await conn.read_reply())
                    inflight.remove(ready)
                    ready = None
                if job is not None:
                    if rset:
                        wire.expect_rset(conn, await conn.read_reply())
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
                failure = wire.refusal(mail, rcpt, data)
                if failure is None:
                    ready = job
                else:
                    wire.settle(job, failure)
                    inflight.remove(job)
                    conn.needs_rset = True
                    if data.code == 354:
                        # The server wants a body for a transaction it refused; ending it
                        # with "." could deliver an empty message, so the connection goes.
                        raise wire.Lost(conn.failure("accepted DATA after refusing"), again=False)
            job = self._take(conn)
            if job is None and ready is None:
                job = await self._next(conn)

    async def _lockstep(self, conn: wire.Connection, inflight: list[wire.Job]) -> None:
        while (job := await self._next(conn)) is not None:
            inflight.append(job)
            if conn.needs_rset:
                wire.expect_rset(conn, await conn.command(b"RSET\r\n"))
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
                    wire.settle(job, wire.error_for(reply, stage))
                    conn.needs_rset = True  # sent before the next transaction
                    break
            else:
                job.body_sent = True
                wire.finish(job, await conn.command(job.body))
            inflight.remove(job)

    # -- setting up a connection --------------------------------------------------------

    async def _open(self) -> wire.Connection:
        cfg = self._config
        implicit = cfg.tls == "implicit"
        conn: wire.Connection | None = None
        try:
            async with asyncio.timeout(cfg.timeout):
                reader, writer = await asyncio.open_connection(
                    cfg.host,
                    cfg.port,
                    ssl=self._tls_context() if implicit else None,
                    server_hostname=cfg.host if implicit else None,
                )
            conn = wire.Connection(
                reader, writer, where=self._where, timeout=cfg.timeout, tls=implicit
            )
            await self._handshake(conn)
            return conn
        except errors.DeliveryError as error:
            failure = error
        except wire.Lost as lost:
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

    async def _handshake(self, conn: wire.Connection) -> None:
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

    async def _hello(self, conn: wire.Connection) -> None:
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

    async def _local_name(self, conn: wire.Connection) -> str:
        # getfqdn may wait on DNS, so it runs in a thread and within the timeout.
        try:
            async with asyncio.timeout(self._config.timeout):
                fqdn = await asyncio.to_thread(socket.getfqdn)
        except TimeoutError:
            fqdn = ""
        if wire.HOSTNAME.fullmatch(fqdn) and "." in fqdn:
            self._helo_name = fqdn
        else:  # an address literal is always an acceptable EHLO argument
            host = conn.writer.get_extra_info("sockname")[0]
            self._helo_name = f"[IPv6:{host}]" if ":" in host else f"[{host}]"
        return self._helo_name

    async def _authenticate(self, conn: wire.Connection) -> None:
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
            reply = await conn.command(
                b"AUTH PLAIN %s\r\n" % wire.b64(b"\0%s\0%s" % (user, password))
            )
        elif "LOGIN" in offered:
            reply = await conn.command(b"AUTH LOGIN\r\n")
            for secret in (user, password):
                if reply.code != 334:
                    break
                reply = await conn.command(wire.b64(secret) + b"\r\n")
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
