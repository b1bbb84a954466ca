"""How many SMS segments a text takes: GSM-7 (160 characters in one segment, 153 per part
of a longer message; the extension characters ``^{}\\[~]|€`` count twice) or, as soon as one
character is outside GSM-7, UCS-2 (70, then 67 UTF-16 code units per part).
"""

from __future__ import annotations

import math

import msgspec

_BASIC = (
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞ\x1bÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
_EXTENSION = "\f^{}\\[~]|€"
GSM7 = frozenset(_BASIC)
GSM7_EXTENSION = frozenset(_EXTENSION)


class Segments(msgspec.Struct, frozen=True):
    """A text's encoding, its length in that encoding's units, and its segment count."""

    encoding: str  # "GSM-7" or "UCS-2"
    units: int
    segments: int


def count(text: str) -> Segments:
    """The encoding and segment count of ``text`` (an empty text takes one segment)."""
    units = 0
    for char in text:
        if char in GSM7:
            units += 1
        elif char in GSM7_EXTENSION:
            units += 2
        else:
            return _ucs2(text)
    return Segments("GSM-7", units, 1 if units <= 160 else math.ceil(units / 153))


def _ucs2(text: str) -> Segments:
    units = len(text.encode("utf-16-le")) // 2
    return Segments("UCS-2", units, 1 if units <= 70 else math.ceil(units / 67))
