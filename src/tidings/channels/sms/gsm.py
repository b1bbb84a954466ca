"""SMS text: the GSM 03.38 alphabet, the choice of encoding, segments and their UDH.

A text goes as GSM-7 when every character is in the GSM 03.38 default alphabet or its
extension table (``^{}\\[~]|€`` and form feed, each sent as ESC + a character, so they count
as two septets); otherwise it goes as UCS-2 (UTF-16BE: characters outside the Basic
Multilingual Plane take two code units). SMPP carries GSM-7 unpacked, one septet a byte, with
``data_coding`` 0 (the SMSC default alphabet); UCS-2 with ``data_coding`` 8.

============  =========================  ==============================================
encoding      one message holds          each part of a concatenated message holds
============  =========================  ==============================================
GSM-7         160 septets                153 septets (the 6-byte UDH takes 7 septets)
UCS-2         70 code units              67 code units (140 bytes less the 6-byte UDH)
============  =========================  ==============================================

A part never ends between an escape and its character, nor between the two halves of a
surrogate pair, so a part may hold one unit less than its limit. :func:`segments` says how a
text will travel (the console shows it as "N segments"); :func:`split` produces the parts, each
prefixed by a concatenation UDH (IEI 0x00, an 8-bit reference, the count, the part's number).
"""

from __future__ import annotations

import enum

import msgspec

#: The GSM 03.38 default alphabet; a character's index is its septet. 0x1B is the escape.
BASIC = (
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞ\x1bÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
ESCAPE = 0x1B
#: The extension table: character -> the septet that follows the escape.
EXTENSION = {
    "\f": 0x0A,
    "^": 0x14,
    "{": 0x28,
    "}": 0x29,
    "\\": 0x2F,
    "[": 0x3C,
    "~": 0x3D,
    "]": 0x3E,
    "|": 0x40,
    "€": 0x65,
}

_ENCODE = {char: code for code, char in enumerate(BASIC) if code != ESCAPE}
_DECODE = dict(enumerate(BASIC))
_DECODE_EXTENSION = {code: char for char, code in EXTENSION.items()}

#: SMPP ``data_coding`` values.
DATA_CODING_DEFAULT = 0x00
DATA_CODING_UCS2 = 0x08
#: ``esm_class`` bit saying the short message starts with a UDH.
ESM_UDHI = 0x40
MAX_PARTS = 255


class Encoding(enum.StrEnum):
    """How an SMS's text is encoded."""

    GSM7 = "gsm7"
    UCS2 = "ucs2"


#: (units in a single message, units in each part of a concatenated one)
LIMITS = {Encoding.GSM7: (160, 153), Encoding.UCS2: (70, 67)}
DATA_CODING = {Encoding.GSM7: DATA_CODING_DEFAULT, Encoding.UCS2: DATA_CODING_UCS2}


class SegmentInfo(msgspec.Struct, frozen=True):
    """How a text travels: its encoding, in how many segments, and its length in the
    encoding's units (septets for GSM-7, UTF-16 code units for UCS-2)."""

    encoding: Encoding
    count: int
    units: int
    per_segment: int


class Encoded(msgspec.Struct, frozen=True):
    """A text ready for ``submit_sm``: the ``data_coding``, and either one short message
    (``parts`` of one, no UDH) or the concatenated parts, each starting with its UDH."""

    encoding: Encoding
    data_coding: int
    parts: tuple[bytes, ...]
    udh: bool


class TooLong(ValueError):
    """The text needs more than 255 parts."""


def is_gsm(text: str) -> bool:
    """Whether every character of ``text`` has a GSM 03.38 septet (possibly escaped)."""
    return all(char in _ENCODE or char in EXTENSION for char in text)


def encoding_for(text: str) -> Encoding:
    """GSM-7 when the text allows it, else UCS-2."""
    return Encoding.GSM7 if is_gsm(text) else Encoding.UCS2


def encode_gsm(text: str) -> bytes:
    """``text`` as unpacked septets (one a byte), extension characters escaped.
    Raises ``ValueError`` for a character outside the alphabet."""
    out = bytearray()
    for char in text:
        code = _ENCODE.get(char)
        if code is not None:
            out.append(code)
        elif char in EXTENSION:
            out += bytes((ESCAPE, EXTENSION[char]))
        else:
            raise ValueError(f"{char!r} is not in the GSM 03.38 alphabet")
    return bytes(out)


def decode_gsm(data: bytes) -> str:
    """Unpacked septets back to text (an unknown escaped septet reads as its basic one, as
    GSM 03.38 asks; a trailing escape reads as a space)."""
    chars: list[str] = []
    escaped = False
    for byte in data:
        septet = byte & 0x7F
        if escaped:
            chars.append(_DECODE_EXTENSION.get(septet, _DECODE[septet]))
            escaped = False
        elif septet == ESCAPE:
            escaped = True
        else:
            chars.append(_DECODE[septet])
    if escaped:
        chars.append(" ")
    return "".join(chars)


def encode(text: str, encoding: Encoding | None = None) -> bytes:
    """The whole text in ``encoding`` (default: :func:`encoding_for`), no UDH (for
    ``message_payload``)."""
    encoding = encoding or encoding_for(text)
    return encode_gsm(text) if encoding is Encoding.GSM7 else text.encode("utf-16-be")


def segments(text: str) -> SegmentInfo:
    """How ``text`` travels: encoding and number of segments (0 for an empty text)."""
    encoding = encoding_for(text)
    width = 1 if encoding is Encoding.GSM7 else 2
    units = len(encode(text, encoding)) // width
    single, per_part = LIMITS[encoding]
    if units <= single:
        return SegmentInfo(encoding, 1 if units else 0, units, single)
    return SegmentInfo(encoding, len(_chunks(text, encoding, per_part)), units, per_part)


def _units(text: str, encoding: Encoding) -> list[bytes]:
    """The text's chunks as they may be cut: one per character, in the encoding's bytes."""
    if encoding is Encoding.GSM7:
        return [encode_gsm(char) for char in text]
    return [char.encode("utf-16-be") for char in text]


def _chunks(text: str, encoding: Encoding, limit: int) -> list[bytes]:
    """Consecutive pieces of at most ``limit`` units, never cutting a character."""
    width = 1 if encoding is Encoding.GSM7 else 2  # bytes per unit
    pieces: list[bytes] = []
    current = bytearray()
    for chunk in _units(text, encoding):
        if len(current) + len(chunk) > limit * width:
            pieces.append(bytes(current))
            current = bytearray()
        current += chunk
    if current or not pieces:
        pieces.append(bytes(current))
    return pieces


def split(text: str, reference: int) -> Encoded:
    """``text`` encoded, in one short message if it fits, else in parts with a
    concatenation UDH carrying ``reference`` (0-255; the same for every part).
    Raises :class:`TooLong` past 255 parts."""
    encoding = encoding_for(text)
    single, per_part = LIMITS[encoding]
    data = encode(text, encoding)
    width = 1 if encoding is Encoding.GSM7 else 2
    if len(data) <= single * width:
        return Encoded(encoding, DATA_CODING[encoding], (data,), udh=False)
    pieces = _chunks(text, encoding, per_part)
    if len(pieces) > MAX_PARTS:
        raise TooLong(f"the text needs {len(pieces)} parts; at most {MAX_PARTS} can be joined")
    total = len(pieces)
    ref = reference & 0xFF
    parts = tuple(
        bytes((0x05, 0x00, 0x03, ref, total, number)) + piece
        for number, piece in enumerate(pieces, start=1)
    )
    return Encoded(encoding, DATA_CODING[encoding], parts, udh=True)


def join(parts: list[bytes], encoding: Encoding) -> str:
    """The text of concatenated parts (each with its UDH), in the order given."""
    data = b"".join(part[part[0] + 1 :] for part in parts)
    return decode_gsm(data) if encoding is Encoding.GSM7 else data.decode("utf-16-be")
