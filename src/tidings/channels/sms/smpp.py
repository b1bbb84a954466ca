"""SMS over SMPP 3.4: one transceiver session to an SMSC, kept bound, and ``send``.

``send`` normalises the number to E.164 (an invalid one fails at once, nothing is sent),
encodes the text (GSM-7 or UCS-2, see :mod:`~tidings.channels.sms.gsm`) and submits it: in one
``submit_sm`` when it fits, else in concatenated parts with a UDH, or with
``use_message_payload`` whole in the ``message_payload`` parameter. At most ``window``
``submit_sm`` wait for their responses at once and at most ``throughput`` are sent a second.

The Outcome of an accepted message is ``delivered`` (the SMSC took it; the handset's receipt
comes later) with ``provider_id`` the SMSC's message id; for a message in several parts,
the first part's id (receipts are matched on it) while ``reply`` lists every part's id. A part
refused after others were accepted makes the whole message's outcome, and a retry sends every
part again.

What the SMSC says becomes an :mod:`~tidings.channels.errors` exception, then an Outcome:

==========================================  =================================================
``ESME_RTHROTTLED``, ``ESME_RMSGQFUL``        ``TemporaryFailure``, ``retry_after`` 1 s / 10 s
``ESME_RSYSERR``, ``ESME_RX_T_APPN``,        ``TemporaryFailure``
``ESME_RSUBMITFAIL``, unknown/vendor codes
``ESME_RINVBNDSTS``, no answer, EOF, reset   ``ConnectionFailure``; the session is dropped
bind refused (``ESME_RINVPASWD`` and kin)    ``ConnectionFailure`` naming the status; binds are
                                             retried no faster than the reconnect backoff
other SMPP 3.4 errors (``ESME_RINVDSTADR``,  ``PermanentFailure``
``ESME_RINVMSGLEN``, ...), invalid numbers
==========================================  =================================================

The session is opened on the first ``send`` and then kept bound (``enquire_link`` every
``enquire_link_interval`` seconds) so that receipts can arrive; when it drops it is opened again
at once (unless it lived less than ``reconnect_min`` seconds), and after a failed attempt no
sooner than ``reconnect_min`` seconds, doubling up to ``reconnect_max``. Meanwhile ``send``
fails fast with a ``ConnectionFailure``; a ``send`` waiting for a session being opened gives
up after ``timeout`` seconds. Receipts
(``deliver_sm`` with a receipt) go to ``on_receipt``; if it raises, the SMSC is told to send
the receipt again.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import hashlib
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import smpp34

from tidings import model
from tidings.channels import errors
from tidings.channels.sms import gsm, pdu, phone, receipt, session

log = logging.getLogger("tidings.smpp")

ReceiptHandler = Callable[[receipt.Receipt], Awaitable[None]]

_TEMPORARY = {0x08, 0x14, 0x45, 0x58, 0x64, 0xFE, 0xFF}
_RETRY_AFTER = {0x58: 1.0, 0x14: 10.0}
_CONNECTION = {0x04}


@dataclasses.dataclass(frozen=True, slots=True)
class SmppConfig:
    """Where the SMSC is and how to talk to it. Durations are in seconds."""

    host: str
    port: int = 2775
    system_id: str = ""
    password: str = ""
    system_type: str = ""
    source_ton: int = 5  # alphanumeric sender; a numeric sender is sent as 1/1
    source_npi: int = 0
    dest_ton: int = 1  # international
    dest_npi: int = 1  # E.164
    source: str = ""  # the sender when a message names none
    default_region: str = ""
    window: int = 10
    throughput: float = 0.0  # submit_sm a second; 0: unlimited
    enquire_link_interval: float = 30.0
    timeout: float = 10.0
    use_message_payload: bool = False
    registered_delivery: bool = True
    reconnect_min: float = 1.0
    reconnect_max: float = 60.0


def error_for(status: int) -> errors.DeliveryError:
    """The delivery error a ``submit_sm_resp`` status means."""
    reply = f"submit_sm refused: {pdu.status_name(status)}"
    if status in _CONNECTION:
        return errors.ConnectionFailure(reply)
    if status in _TEMPORARY or status not in pdu.STATUS_NAMES:
        return errors.TemporaryFailure(reply, retry_after=_RETRY_AFTER.get(status))
    return errors.PermanentFailure(reply)


class SmppTransport:
    """Sends SMS to one SMSC over one bound transceiver session."""

    name = "smpp"

    def __init__(self, config: SmppConfig, on_receipt: ReceiptHandler | None = None) -> None:
        self._config = config
        self._on_receipt = on_receipt
        self._where = f"{config.host}:{config.port}"
        self._session: session.Session | None = None
        self._attempt: asyncio.Future[session.Session] | None = None
        self._keeper: asyncio.Task[None] | None = None
        self._failure: errors.DeliveryError | None = None
        self._retry_at = 0.0
        self._next_slot = 0.0
        self._closing = False

    # -- the surface --------------------------------------------------------------------

    async def send(self, message: model.SmsMessage) -> model.Outcome:
        """Submit ``message``; never raises for a delivery problem."""
        try:
            return await self._send(message)
        except errors.DeliveryError as error:
            return errors.outcome_for(error)

    async def aclose(self) -> None:
        """Unbind and close the session."""
        self._closing = True
        if self._keeper is not None:
            self._keeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._keeper
        if self._session is not None:
            await self._session.aclose()
            self._session = None

    # -- sending ------------------------------------------------------------------------

    async def _send(self, message: model.SmsMessage) -> model.Outcome:
        c = self._config
        destination = phone.normalise(message.to, c.default_region)
        submits = self._submits(message, destination[1:])
        bound = await self._bound()
        ids: list[str] = []
        for submit in submits:
            await self._pace()
            try:
                status, message_id = await bound.submit(submit)
            except session.Lost as exc:
                raise errors.ConnectionFailure(f"{self._where}: {exc}") from None
            if status != pdu.ESME_ROK:
                error = error_for(status)
                if isinstance(error, errors.ConnectionFailure):
                    await bound.aclose(unbind=False)
                raise error
            ids.append(message_id)
        parts = f" ({len(ids)} parts: {' '.join(ids)})" if len(ids) > 1 else ""
        return model.Outcome(
            model.OutcomeKind.DELIVERED,
            reply=f"submit_sm_resp ESME_ROK message_id {ids[0]}{parts}",
            provider_id=ids[0],
        )

    def _submits(self, message: model.SmsMessage, destination: str) -> list[smpp34.SubmitSm]:
        c = self._config
        source = message.sender or c.source
        if source.lstrip("+").isdigit():
            source_ton, source_npi, source = 1, 1, source.lstrip("+")
        else:
            source_ton, source_npi = c.source_ton, c.source_npi
        registered = 1 if c.registered_delivery else 0

        def submit(short_message: bytes, data_coding: int, **extra: Any) -> smpp34.SubmitSm:
            return smpp34.SubmitSm(
                source,
                destination,
                short_message,
                source_addr_ton=source_ton,
                source_addr_npi=source_npi,
                dest_addr_ton=c.dest_ton,
                dest_addr_npi=c.dest_npi,
                registered_delivery=registered,
                data_coding=data_coding,
                **extra,
            )

        if c.use_message_payload:
            encoding = gsm.encoding_for(message.text)
            data = gsm.encode(message.text, encoding)
            tlvs = [smpp34.Tlv(pdu.TLV_MESSAGE_PAYLOAD, data)] if len(data) > 140 else []
            return [submit(b"" if tlvs else data, gsm.DATA_CODING[encoding], tlvs=tlvs)]
        # The same reference for every attempt of an event, so a handset joins a re-sent
        # message's parts as one.
        reference = hashlib.blake2b(message.reference.encode(), digest_size=1).digest()[0]
        try:
            encoded = gsm.split(message.text, reference)
        except gsm.TooLong as exc:
            raise errors.PermanentFailure(str(exc)) from None
        esm_class = gsm.ESM_UDHI if encoded.udh else 0
        return [submit(part, encoded.data_coding, esm_class=esm_class) for part in encoded.parts]

    async def _pace(self) -> None:
        """Keep to ``throughput`` submit_sm a second."""
        if self._config.throughput <= 0:
            return
        loop = asyncio.get_running_loop()
        now = loop.time()
        slot = max(now, self._next_slot)
        self._next_slot = slot + 1.0 / self._config.throughput
        if slot > now:
            await asyncio.sleep(slot - now)

    # -- the session --------------------------------------------------------------------

    async def _bound(self) -> session.Session:
        """The live session, waiting for one being opened; fails fast during backoff."""
        if self._closing:
            raise errors.ConnectionFailure("the SMPP transport is closed")
        if self._session is not None and self._session.alive:
            return self._session
        if self._keeper is None:
            self._keeper = asyncio.create_task(self._keep(), name="smpp-keeper")
        loop = asyncio.get_running_loop()
        if self._failure is not None and self._attempt is None:
            wait = max(0.0, self._retry_at - loop.time())
            raise type(self._failure)(self._failure.reply, retry_after=wait or None)
        if self._attempt is None:
            self._attempt = loop.create_future()
        try:
            async with asyncio.timeout(self._config.timeout):
                return await asyncio.shield(self._attempt)
        except TimeoutError:
            raise errors.ConnectionFailure(
                f"no SMPP session with {self._where} within {self._config.timeout:g} s"
            ) from None

    async def _keep(self) -> None:
        """Open the session, keep it open, open it again when it drops."""
        c = self._config
        loop = asyncio.get_running_loop()
        backoff = c.reconnect_min
        while not self._closing:
            if self._attempt is None:
                self._attempt = loop.create_future()
            attempt = self._attempt
            try:
                opened = await session.Session.open(
                    c.host,
                    c.port,
                    system_id=c.system_id,
                    password=c.password,
                    system_type=c.system_type,
                    ton=c.source_ton,
                    npi=c.source_npi,
                    window=c.window,
                    answer_within=c.timeout,
                    enquire_link_interval=c.enquire_link_interval,
                    on_deliver=self._delivered,
                )
            except (OSError, TimeoutError, session.Lost, session.BindRefused) as exc:
                failure = errors.ConnectionFailure(f"cannot bind to {self._where}: {exc}")
                log.error("%s; next attempt in %.0f s", failure.reply, backoff)
                self._failure = failure
                self._retry_at = loop.time() + backoff
                self._attempt = None
                if not attempt.done():
                    attempt.set_exception(failure)
                    attempt.exception()  # retrieved: nobody may be waiting
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, c.reconnect_max)
                continue
            log.info("SMPP session bound to %s as %s", self._where, c.system_id)
            self._session, self._failure, self._attempt = opened, None, None
            backoff = c.reconnect_min
            if not attempt.done():
                attempt.set_result(opened)
            opened_at = loop.time()
            await asyncio.shield(opened.closed)
            self._session = None
            await opened.aclose(unbind=False)
            if loop.time() - opened_at < c.reconnect_min:
                # An SMSC that binds and then hangs up at once is not bound again in a loop.
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, c.reconnect_max)

    async def _delivered(self, deliver: smpp34.DeliverSm) -> None:
        if not receipt.is_receipt(deliver):
            log.info("ignoring a mobile-originated SMS from %s", deliver.source_addr)
            return
        parsed = receipt.parse(deliver)
        if parsed is None:
            log.warning("delivery receipt without a message id: %r", deliver.short_message[:200])
            return
        if self._on_receipt is not None:
            await self._on_receipt(parsed)
