"""One SMPP session: a TCP connection bound as transceiver, its reader and its keep-alive.

:meth:`Session.open` connects and binds (a refused bind raises :class:`BindRefused` with the
SMSC's ``command_status``); then a reader task matches responses to requests by sequence
number, answers the SMSC's ``enquire_link`` and ``unbind``, and hands each ``deliver_sm`` to
``on_deliver`` before acknowledging it (so a receipt that could not be recorded is answered
``ESME_RX_T_APPN`` and the SMSC sends it again). A keep-alive task sends ``enquire_link``
every ``enquire_link_interval`` seconds; an unanswered one closes the session. At most
``window`` requests wait for their responses at once.

Every way the connection can end (EOF, reset, a malformed PDU, an unanswered request, the
SMSC's ``unbind``) resolves :attr:`Session.closed` and fails the waiting requests with
:class:`Lost`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

import smpp34

from tidings.channels.sms import pdu

log = logging.getLogger("tidings.smpp")


class Lost(Exception):
    """The session ended before the request was answered."""


class BindRefused(Exception):
    """The SMSC answered ``bind_transceiver`` with an error status."""

    def __init__(self, status: int):
        super().__init__(f"bind refused: {pdu.status_name(status)}")
        self.status = status


class Response:
    """A response PDU's status and body."""

    __slots__ = ("body", "command_id", "status")

    def __init__(self, command_id: int, status: int, body: bytes):
        self.command_id = command_id
        self.status = status
        self.body = body


DeliverHandler = Callable[[smpp34.DeliverSm], Awaitable[None]]


class Session:
    """A bound transceiver session."""

    def __init__(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        *,
        window: int,
        timeout: float,
        on_deliver: DeliverHandler,
    ):
        self._reader = reader
        self._writer = writer
        self._timeout = timeout
        self._on_deliver = on_deliver
        self._sequence = 0
        self._pending: dict[int, asyncio.Future[Response]] = {}
        self._window = asyncio.Semaphore(window)
        self._tasks: set[asyncio.Task[None]] = set()
        self.closed: asyncio.Future[str] = asyncio.get_running_loop().create_future()

    # -- opening and closing --------------------------------------------------------------

    @classmethod
    async def open(
        cls,
        host: str,
        port: int,
        *,
        system_id: str,
        password: str,
        system_type: str,
        ton: int,
        npi: int,
        window: int,
        answer_within: float,
        enquire_link_interval: float,
        on_deliver: DeliverHandler,
    ) -> Session:
        """Connect and bind; raises ``OSError``/``TimeoutError`` if the SMSC cannot be
        reached within ``answer_within`` seconds, :class:`BindRefused` if it refuses the
        credentials, :class:`Lost` if it hangs up during the bind."""
        async with asyncio.timeout(answer_within):
            reader, writer = await asyncio.open_connection(host, port)
        session = cls(reader, writer, window=window, timeout=answer_within, on_deliver=on_deliver)
        session._start(session._read(), "reader")
        try:
            bind = pdu.bind_transceiver(
                session._next_sequence(), system_id, password, system_type, ton, npi
            )
            response = await session._request(bind)
        except BaseException:
            await session.aclose(unbind=False)
            raise
        if response.status != pdu.ESME_ROK:
            await session.aclose(unbind=False)
            raise BindRefused(response.status)
        if enquire_link_interval > 0:
            session._start(session._keep_alive(enquire_link_interval), "enquire_link")
        return session

    async def aclose(self, *, unbind: bool = True) -> None:
        """Unbind (politely, if still connected) and close the connection."""
        if unbind and not self.closed.done():
            with contextlib.suppress(Lost, TimeoutError, OSError):
                await self._request(pdu.header(pdu.UNBIND, 0, self._next_sequence()))
        self._close("closed by Tidings")
        current = asyncio.current_task()
        tasks = [task for task in self._tasks if task is not current]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        with contextlib.suppress(OSError):
            await self._writer.wait_closed()

    @property
    def alive(self) -> bool:
        """Whether the session is still bound."""
        return not self.closed.done()

    # -- requests -------------------------------------------------------------------------

    async def submit(self, submit: smpp34.SubmitSm) -> tuple[int, str]:
        """Send one ``submit_sm`` (its sequence number is set here) and return the
        response's (command_status, message_id). Waits for room in the window first."""
        async with self._window:
            sequence = self._next_sequence()
            data = bytearray(submit.encode())
            data[12:16] = sequence.to_bytes(4, "big")
            response = await self._request(bytes(data), sequence)
        message_id = pdu.read_c_string(response.body) if response.body else ""
        return response.status, message_id

    def _next_sequence(self) -> int:
        self._sequence = self._sequence % 0x7FFFFFFF + 1
        return self._sequence

    async def _request(self, data: bytes, sequence: int | None = None) -> Response:
        if self.closed.done():
            raise Lost(self.closed.result())
        if sequence is None:
            sequence = int.from_bytes(data[12:16], "big")
        future: asyncio.Future[Response] = asyncio.get_running_loop().create_future()
        self._pending[sequence] = future
        try:
            self._writer.write(data)
            await self._writer.drain()
            async with asyncio.timeout(self._timeout):
                return await future
        except TimeoutError:
            self._close(f"no response within {self._timeout:g} s")
            raise Lost(f"the SMSC did not answer within {self._timeout:g} s") from None
        except OSError as exc:
            self._close(f"write failed: {exc}")
            raise Lost(f"connection lost: {exc}") from None
        finally:
            self._pending.pop(sequence, None)

    # -- background tasks ------------------------------------------------------------------

    def _start(self, coro: Awaitable[None], name: str) -> None:
        task = asyncio.ensure_future(coro)
        task.set_name(f"smpp-{name}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _close(self, reason: str) -> None:
        if not self.closed.done():
            self.closed.set_result(reason)
            log.info("SMPP session closed: %s", reason)
        for future in self._pending.values():
            if not future.done():
                future.set_exception(Lost(f"connection lost: {reason}"))
        self._pending.clear()
        self._writer.close()

    async def _keep_alive(self, interval: float) -> None:
        while not self.closed.done():
            await asyncio.sleep(interval)
            try:
                await self._request(pdu.header(pdu.ENQUIRE_LINK, 0, self._next_sequence()))
            except Lost:
                return

    async def _read(self) -> None:
        try:
            while True:
                head = await self._reader.readexactly(pdu.HEADER.size)
                length, command_id, status, sequence = pdu.parse_header(head)
                body = await self._reader.readexactly(length - pdu.HEADER.size)
                self._dispatch(head + body, command_id, status, sequence)
        except asyncio.IncompleteReadError:
            self._close("the SMSC closed the connection")
        except (OSError, pdu.Malformed) as exc:
            self._close(f"connection lost: {exc}")
        except asyncio.CancelledError:
            self._close("stopped")
            raise

    def _dispatch(self, data: bytes, command_id: int, status: int, sequence: int) -> None:
        if command_id & pdu.RESPONSE_BIT:
            future = self._pending.get(sequence)
            if future is not None and not future.done():
                future.set_result(Response(command_id, status, data[pdu.HEADER.size :]))
            elif command_id == pdu.GENERIC_NACK and status:
                log.warning(
                    "SMPP generic_nack %s for sequence %d", pdu.status_name(status), sequence
                )
            return
        if command_id == pdu.ENQUIRE_LINK:
            self._send(pdu.header(pdu.ENQUIRE_LINK_RESP, 0, sequence))
        elif command_id == pdu.UNBIND:
            self._send(pdu.header(pdu.UNBIND_RESP, 0, sequence))
            self._close("the SMSC unbound")
        elif command_id == pdu.DELIVER_SM:
            self._start(self._deliver(data, sequence), "deliver_sm")
        else:
            self._send(pdu.header(pdu.GENERIC_NACK, 0x03, sequence))  # ESME_RINVCMDID

    async def _deliver(self, data: bytes, sequence: int) -> None:
        status = pdu.ESME_ROK
        try:
            decoded = smpp34.decode(data)
            if not isinstance(decoded, smpp34.DeliverSm):
                raise pdu.Malformed("not a deliver_sm")
        except (smpp34.SmppError, pdu.Malformed) as exc:
            log.warning("unreadable deliver_sm from the SMSC: %s", exc)
            self._send(pdu.header(pdu.DELIVER_SM_RESP, 0x01, sequence, b"\0"))
            return
        try:
            await self._on_deliver(decoded)
        except Exception:
            log.exception("deliver_sm not handled; the SMSC will send it again")
            status = pdu.ESME_RX_T_APPN
        self._send(pdu.header(pdu.DELIVER_SM_RESP, status, sequence, b"\0"))

    def _send(self, data: bytes) -> None:
        if not self.closed.done():
            self._writer.write(data)
