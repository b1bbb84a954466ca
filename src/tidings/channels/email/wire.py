"""The SMTP wire layer under :mod:`tidings.channels.email.smtp`: the settings, one connection
(writing commands, reading multi-line replies, the watchdog that times them out), the job a
queued message becomes, and the pure functions that prepare envelopes and bodies and turn
replies into outcomes (the table in :mod:`~tidings.channels.email.smtp`). The pool that opens
connections, greets, authenticates and schedules jobs over them is in ``smtp``.
"""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import ipaddress
import math
import re
import ssl

from tidings import model
from tidings.channels import errors

TLS_MODES = frozenset({"none", "opportunistic", "starttls", "implicit"})

#: Enhanced status codes (RFC 3463) that say the recipient's address itself is bad, so it is
#: quarantined: 5.1.1 no such mailbox, 5.1.2 no such domain, 5.1.3 malformed address, 5.1.6
#: mailbox moved without a forwarding address, 5.1.10 the domain accepts no mail (null MX,
#: RFC 7505). Not 5.1.0 (servers use it for any address trouble, sender-side policy
#: included) nor 5.2.x (a full or disabled mailbox can recover).
NO_SUCH_RECIPIENT = frozenset({(5, 1, 1), (5, 1, 2), (5, 1, 3), (5, 1, 6), (5, 1, 10)})

#: After a connection could not be set up while others are working, the pool does not grow
#: for this many seconds, so a server capping our connections is not hammered.
GROW_PAUSE = 1.0

#: Longest reply line taken (RFC 5321 allows 512 octets; servers exceed it in the wild).
MAX_REPLY_LINE = 65536

ENHANCED = re.compile(r"([245])\.(\d{1,3})\.(\d{1,3})(?=\s|$)")
QUEUE_ID = re.compile(r"\bqueued as\s+<?([^\s>]+)|\bid=(\S+)", re.IGNORECASE)
BAD_ADDRESS = re.compile(r"[\x00-\x1f\x7f<>]")
LINE_END = re.compile(rb"\r\n|\r|\n")
HOSTNAME = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?")


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
        if self.helo_name and not HOSTNAME.fullmatch(self.helo_name):
            raise ValueError(f"helo_name is not a host name: {self.helo_name!r}")


@dataclasses.dataclass(frozen=True, slots=True)
class Reply:
    code: int
    lines: tuple[str, ...]

    @property
    def enhanced(self) -> tuple[int, int, int] | None:
        match = ENHANCED.match(self.lines[0])
        return None if match is None else (int(match[1]), int(match[2]), int(match[3]))

    def __str__(self) -> str:
        if len(self.lines) == 1:
            return f"{self.code} {self.lines[0]}".rstrip()
        # Continuation lines repeat the enhanced code; say it once.
        first, *rest = self.lines
        match = ENHANCED.match(first)
        if match:
            rest = [line.removeprefix(match[0]).lstrip() for line in rest]
        return " ".join([str(self.code), first, *rest]).rstrip()


class Lost(Exception):
    """The connection cannot go on. ``error`` is what unsettled messages on it get;
    ``again`` says another connection may well take them (it was closed, not stuck)."""

    def __init__(self, error: errors.DeliveryError, *, again: bool):
        super().__init__(error.reply)
        self.error = error
        self.again = again


@dataclasses.dataclass(slots=True, eq=False)
class Job:
    sender: bytes
    recipient: bytes
    size: int
    body: bytes  # dot-stuffed, with the end-of-data line
    future: asyncio.Future[model.Outcome]
    body_sent: bool = False
    requeued: bool = False


class Watchdog:
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


#: Single-line replies already parsed, by their bytes (shared by every connection: a reply
#: is immutable). Filled until it holds ``_KNOWN_REPLIES_MAX`` lines.
_KNOWN_REPLIES: dict[bytes, Reply] = {}
_KNOWN_REPLIES_MAX = 256


class Connection:
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
        self.watchdog = Watchdog(timeout)
        self.extensions: dict[str, str] = {}
        self.size_limit = 0  # the server's SIZE, 0 when it states none
        self.needs_rset = False
        self.busy = False
        peer = writer.get_extra_info("peername")
        try:
            self.loopback = ipaddress.ip_address(peer[0]).is_loopback
        except (TypeError, ValueError, IndexError):
            self.loopback = False

    async def read_reply(self) -> Reply:
        """Read one (possibly multi-line) reply; the caller bounds the wait."""
        # Replies are parsed from our own buffer, filled a whole read at a time: pipelined
        # replies arrive together, and one read serves them all.
        buffer = self.buffer
        end = buffer.find(b"\n")
        if end >= 0:
            # Most replies are one line a server sends again and again ("250 2.1.5 Ok"):
            # those are parsed once.
            known = _KNOWN_REPLIES.get(bytes(buffer[: end + 1]))
            if known is not None:
                del buffer[: end + 1]
                return known
        lines: list[str] = []
        while True:
            end = buffer.find(b"\n")
            while end < 0:
                if len(buffer) > MAX_REPLY_LINE:
                    raise Lost(self.failure("sent an overlong reply line"), again=False)
                chunk = await self.reader.read(65536)
                if not chunk:
                    raise Lost(self.failure("closed the connection"), again=True)
                start = len(buffer)
                buffer += chunk
                end = buffer.find(b"\n", start)
            line = bytes(buffer[: end + 1])
            del buffer[: end + 1]
            if not (line[:3].isdigit() and line[3:4] in (b" ", b"-", b"\r", b"\n")):
                raise Lost(self.failure(f"sent a malformed reply {line[:80]!r}"), again=False)
            lines.append(line[4:].rstrip(b"\r\n").decode("utf-8", "replace"))
            if line[3:4] != b"-":
                break
            if len(lines) > 1000:
                raise Lost(self.failure("sent an endless reply"), again=False)
        reply = Reply(int(line[:3]), tuple(lines))
        if reply.code == 421:  # the server is closing this connection (RFC 5321 3.8)
            raise Lost(errors.TemporaryFailure(str(reply)), again=True)
        if len(lines) == 1 and len(_KNOWN_REPLIES) < _KNOWN_REPLIES_MAX:
            # Final replies often name a queue id, unique to each message, so the cache is
            # capped and never evicted: the repeated replies to MAIL, RCPT and DATA come in
            # a connection's first transaction, before unique lines can fill it.
            _KNOWN_REPLIES[line] = reply
        return reply

    async def command(self, line: bytes | None) -> Reply:
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
        except (Lost, OSError, EOFError):  # TimeoutError is an OSError
            pass
        finally:
            self.abort()


# -- pure helpers ---------------------------------------------------------------------------


def address(address: str, role: str) -> bytes:
    """``address`` as it goes between angle brackets, or PermanentFailure."""
    if BAD_ADDRESS.search(address) or (role == "recipient" and not address):
        raise errors.PermanentFailure(f"invalid {role} address {address!r}")
    try:
        return address.encode("ascii")
    except UnicodeEncodeError:
        raise errors.PermanentFailure(
            f"{role} address {address!r} is not ASCII (SMTPUTF8 is not supported)"
        ) from None


def prepare(data: bytes) -> tuple[int, bytes]:
    """The message's size (as SIZE counts it) and its dot-stuffed form ending in ".\\r\\n"."""
    crlf = data.count(b"\r\n")
    if data.count(b"\n") != crlf or data.count(b"\r") != crlf:
        # A bare CR or LF could end the data early on some servers (SMTP smuggling).
        data = LINE_END.sub(b"\r\n", data)
    if data and not data.endswith(b"\r\n"):
        data += b"\r\n"
    size = len(data)
    data = data.replace(b"\r\n.", b"\r\n..")
    if data.startswith(b"."):
        data = b"." + data
    return size, data + b".\r\n"


def envelope(conn: Connection, job: Job) -> bytes:
    size = b" SIZE=%d" % job.size if "SIZE" in conn.extensions else b""
    return b"MAIL FROM:<%s>%s\r\nRCPT TO:<%s>\r\nDATA\r\n" % (job.sender, size, job.recipient)


def refusal(mail: Reply, rcpt: Reply, data: Reply) -> errors.DeliveryError | None:
    """The first refusal among the envelope's replies, if any."""
    if mail.code // 100 != 2:
        return error_for(mail, "MAIL")
    if rcpt.code // 100 != 2:
        return error_for(rcpt, "RCPT")
    if data.code != 354:
        return error_for(data, "DATA")
    return None


def error_for(reply: Reply, stage: str) -> errors.DeliveryError:
    """The exception a refusal at ``stage`` stands for; decided by codes, never by text."""
    text = str(reply)
    if reply.code // 100 == 4:
        return errors.TemporaryFailure(text)
    if reply.code // 100 == 5:
        if stage == "RCPT" and reply.enhanced in NO_SUCH_RECIPIENT:
            return errors.RecipientRejected(text)
        return errors.PermanentFailure(text)
    return errors.TemporaryFailure(f"unexpected reply to {stage}: {text}")


def expect_rset(conn: Connection, reply: Reply) -> None:
    if reply.code // 100 != 2:
        raise Lost(conn.failure(f"refused RSET: {reply}"), again=True)


def finish(job: Job, reply: Reply) -> None:
    """Settle ``job`` with the server's answer to its body."""
    if reply.code // 100 != 2:
        settle(job, error_for(reply, "end of data"))
    elif not job.future.done():
        match = QUEUE_ID.search(reply.lines[-1])
        provider_id = (match[1] or match[2]) if match else ""
        job.future.set_result(
            model.Outcome(model.OutcomeKind.DELIVERED, reply=str(reply), provider_id=provider_id)
        )


def settle(job: Job, error: errors.DeliveryError) -> None:
    if not job.future.done():
        job.future.set_result(errors.outcome_for(error))


def resolve(future: asyncio.Future[None]) -> bool:
    if future.done():
        return False
    future.set_result(None)
    return True


def b64(data: bytes) -> bytes:
    return base64.b64encode(data)
