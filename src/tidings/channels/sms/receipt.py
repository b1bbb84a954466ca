"""Delivery receipts: a ``deliver_sm`` whose ``esm_class`` says "SMSC delivery receipt".

The receipt names the message by the id the SMSC gave in ``submit_sm_resp`` and says what
became of it. Both forms SMSCs use are read, the TLVs winning where both are present:

- the optional parameters ``receipted_message_id``, ``message_state`` and
  ``network_error_code``;
- the text of SMPP 3.4 appendix B in ``short_message`` (or ``message_payload``)::

      id:IIIIIIIIII sub:SSS dlvrd:DDD submit date:YYMMDDhhmm done date:YYMMDDhhmm
      stat:DDDDDDD err:E text: . . .
"""

from __future__ import annotations

import enum
import re

import msgspec
import smpp34

from tidings.channels.sms import pdu

ESM_CLASS_TYPE = 0x3C  # bits 2-5: the message type
ESM_CLASS_RECEIPT = 0x04


class ReceiptState(enum.StrEnum):
    """What the SMSC says became of a message."""

    DELIVERED = "delivered"
    UNDELIVERABLE = "undeliverable"
    EXPIRED = "expired"
    REJECTED = "rejected"
    DELETED = "deleted"
    ACCEPTED = "accepted"
    ENROUTE = "enroute"
    UNKNOWN = "unknown"

    @property
    def final(self) -> bool:
        """Whether the message will not change state any more."""
        return self not in (ReceiptState.ACCEPTED, ReceiptState.ENROUTE, ReceiptState.UNKNOWN)


class Receipt(msgspec.Struct, frozen=True):
    """A delivery receipt: the SMSC's message id, the state, the error code and the raw
    receipt text."""

    message_id: str
    state: ReceiptState
    error: str
    text: str


_STAT = {
    "DELIVRD": ReceiptState.DELIVERED,
    "DELIVERED": ReceiptState.DELIVERED,
    "UNDELIV": ReceiptState.UNDELIVERABLE,
    "EXPIRED": ReceiptState.EXPIRED,
    "REJECTD": ReceiptState.REJECTED,
    "REJECTED": ReceiptState.REJECTED,
    "DELETED": ReceiptState.DELETED,
    "ACCEPTD": ReceiptState.ACCEPTED,
    "ENROUTE": ReceiptState.ENROUTE,
    "UNKNOWN": ReceiptState.UNKNOWN,
}
#: message_state TLV values (SMPP 3.4 section 5.2.28)
_MESSAGE_STATE = {
    1: ReceiptState.ENROUTE,
    2: ReceiptState.DELIVERED,
    3: ReceiptState.EXPIRED,
    4: ReceiptState.DELETED,
    5: ReceiptState.UNDELIVERABLE,
    6: ReceiptState.ACCEPTED,
    7: ReceiptState.UNKNOWN,
    8: ReceiptState.REJECTED,
}
_FIELD = re.compile(r"(id|stat|err):\s*([^\s]{0,100})", re.IGNORECASE)
_MAX_TEXT = 1000


def is_receipt(deliver: smpp34.DeliverSm) -> bool:
    """Whether a ``deliver_sm`` is a delivery receipt (not a mobile-originated message)."""
    return deliver.esm_class & ESM_CLASS_TYPE == ESM_CLASS_RECEIPT


def parse(deliver: smpp34.DeliverSm) -> Receipt | None:
    """The receipt a ``deliver_sm`` carries, or None when it names no message."""
    raw = deliver.short_message
    tlvs = {tlv.tag: tlv for tlv in deliver.tlvs}
    payload = tlvs.get(pdu.TLV_MESSAGE_PAYLOAD)
    if not raw and payload is not None:
        raw = payload.value
    text = raw[:_MAX_TEXT].decode("latin-1").replace("\0", "")
    fields = {key.lower(): value for key, value in _FIELD.findall(text)}
    message_id = fields.get("id", "")
    state = _STAT.get(fields.get("stat", "").upper(), ReceiptState.UNKNOWN)
    error = fields.get("err", "")
    receipted = tlvs.get(pdu.TLV_RECEIPTED_MESSAGE_ID)
    if receipted is not None:
        message_id = receipted.value.split(b"\0", 1)[0].decode("ascii", "replace") or message_id
    message_state = tlvs.get(pdu.TLV_MESSAGE_STATE)
    if message_state is not None and message_state.value:
        state = _MESSAGE_STATE.get(message_state.value[0], state)
    network_error = tlvs.get(pdu.TLV_NETWORK_ERROR_CODE)
    if network_error is not None and len(network_error.value) == 3 and not error:
        error = str(int.from_bytes(network_error.value[1:], "big"))
    if not message_id:
        return None
    return Receipt(message_id=message_id[:100], state=state, error=error, text=text)
