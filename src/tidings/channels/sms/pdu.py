"""SMPP 3.4 PDUs as bytes: framing, the few body-less or tiny PDUs, and command_status names.

``submit_sm`` is encoded and ``deliver_sm`` decoded by ``smpp34``'s codec (a maintained,
Rust-backed SMPP 3.4 library); what is left here is what that codec's Python surface does not
offer: the 16-byte header, ``bind_transceiver``, ``enquire_link``, ``unbind``, the responses an
ESME sends (``deliver_sm_resp``, ``enquire_link_resp``, ``unbind_resp``, ``generic_nack``) and
reading the C-octet string in a ``submit_sm_resp``.
"""

from __future__ import annotations

import struct

HEADER = struct.Struct(">IIII")
MAX_LENGTH = 70_000  # message_payload holds up to 64 KiB; anything longer is not SMPP

GENERIC_NACK = 0x80000000
BIND_TRANSCEIVER = 0x00000009
BIND_TRANSCEIVER_RESP = 0x80000009
SUBMIT_SM = 0x00000004
SUBMIT_SM_RESP = 0x80000004
DELIVER_SM = 0x00000005
DELIVER_SM_RESP = 0x80000005
UNBIND = 0x00000006
UNBIND_RESP = 0x80000006
ENQUIRE_LINK = 0x00000015
ENQUIRE_LINK_RESP = 0x80000015
RESPONSE_BIT = 0x80000000
INTERFACE_VERSION = 0x34

# optional parameter (TLV) tags
TLV_RECEIPTED_MESSAGE_ID = 0x001E
TLV_NETWORK_ERROR_CODE = 0x0423
TLV_MESSAGE_PAYLOAD = 0x0424
TLV_MESSAGE_STATE = 0x0427

# command_status values (SMPP 3.4 section 5.1.3)
ESME_ROK = 0x00
ESME_RSYSERR = 0x08
ESME_RX_T_APPN = 0x64

STATUS_NAMES = {
    0x00: "ESME_ROK",
    0x01: "ESME_RINVMSGLEN",
    0x02: "ESME_RINVCMDLEN",
    0x03: "ESME_RINVCMDID",
    0x04: "ESME_RINVBNDSTS",
    0x05: "ESME_RALYBND",
    0x06: "ESME_RINVPRTFLG",
    0x07: "ESME_RINVREGDLVFLG",
    0x08: "ESME_RSYSERR",
    0x0A: "ESME_RINVSRCADR",
    0x0B: "ESME_RINVDSTADR",
    0x0C: "ESME_RINVMSGID",
    0x0D: "ESME_RBINDFAIL",
    0x0E: "ESME_RINVPASWD",
    0x0F: "ESME_RINVSYSID",
    0x11: "ESME_RCANCELFAIL",
    0x13: "ESME_RREPLACEFAIL",
    0x14: "ESME_RMSGQFUL",
    0x15: "ESME_RINVSERTYP",
    0x33: "ESME_RINVNUMDESTS",
    0x34: "ESME_RINVDLNAME",
    0x40: "ESME_RINVDESTFLAG",
    0x42: "ESME_RINVSUBREP",
    0x43: "ESME_RINVESMCLASS",
    0x44: "ESME_RCNTSUBDL",
    0x45: "ESME_RSUBMITFAIL",
    0x48: "ESME_RINVSRCTON",
    0x49: "ESME_RINVSRCNPI",
    0x50: "ESME_RINVDSTTON",
    0x51: "ESME_RINVDSTNPI",
    0x53: "ESME_RINVSYSTYP",
    0x54: "ESME_RINVREPFLAG",
    0x55: "ESME_RINVNUMMSGS",
    0x58: "ESME_RTHROTTLED",
    0x61: "ESME_RINVSCHED",
    0x62: "ESME_RINVEXPIRY",
    0x63: "ESME_RINVDFTMSGID",
    0x64: "ESME_RX_T_APPN",
    0x65: "ESME_RX_P_APPN",
    0x66: "ESME_RX_R_APPN",
    0x67: "ESME_RQUERYFAIL",
    0xC0: "ESME_RINVOPTPARSTREAM",
    0xC1: "ESME_ROPTPARNOTALLWD",
    0xC2: "ESME_RINVPARLEN",
    0xC3: "ESME_RMISSINGOPTPARAM",
    0xC4: "ESME_RINVOPTPARAMVAL",
    0xFE: "ESME_RDELIVERYFAILURE",
    0xFF: "ESME_RUNKNOWNERR",
}


class Malformed(ValueError):
    """Bytes from the peer that are not a PDU this client can read."""


def status_name(status: int) -> str:
    """``ESME_RTHROTTLED (0x58)`` for 0x58; vendor codes by number only."""
    name = STATUS_NAMES.get(status, "vendor or unknown status")
    return f"{name} (0x{status:02X})"


def header(command_id: int, status: int, sequence: int, body: bytes = b"") -> bytes:
    """A whole PDU: the header and ``body``."""
    return HEADER.pack(HEADER.size + len(body), command_id, status, sequence) + body


def c_string(value: str, limit: int) -> bytes:
    """A C-octet string of at most ``limit`` bytes including the NUL (ASCII only)."""
    data = value.encode("ascii")
    if len(data) >= limit:
        raise ValueError(f"{value!r} is longer than {limit - 1} characters")
    return data + b"\0"


def bind_transceiver(
    sequence: int, system_id: str, password: str, system_type: str, ton: int, npi: int
) -> bytes:
    """``bind_transceiver`` with an empty address_range."""
    body = (
        c_string(system_id, 16)
        + c_string(password, 9)
        + c_string(system_type, 13)
        + bytes((INTERFACE_VERSION, ton, npi))
        + b"\0"
    )
    return header(BIND_TRANSCEIVER, 0, sequence, body)


def read_c_string(body: bytes, offset: int = 0) -> str:
    """The C-octet string at ``offset`` (to the end if the NUL is missing)."""
    end = body.find(b"\0", offset)
    raw = body[offset:] if end < 0 else body[offset:end]
    return raw.decode("ascii", "replace")


def parse_header(data: bytes) -> tuple[int, int, int, int]:
    """(length, command_id, status, sequence); raises :class:`Malformed` for a length no
    PDU has."""
    length, command_id, status, sequence = HEADER.unpack(data)
    if not HEADER.size <= length <= MAX_LENGTH:
        raise Malformed(f"PDU length {length} is out of range")
    return length, command_id, status, sequence
