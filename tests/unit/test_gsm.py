"""GSM 03.38 and UCS-2 encoding, segment counting and UDH splitting."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tidings.channels.sms import gsm

GSM_CHARS = st.sampled_from([c for c in gsm.BASIC if c != "\x1b"] + list(gsm.EXTENSION))
gsm_text = st.text(GSM_CHARS, max_size=800)
any_text = st.text(st.characters(blacklist_categories=("Cs",)), max_size=400)


@pytest.mark.parametrize(
    ("text", "encoding", "count", "units"),
    [
        ("", gsm.Encoding.GSM7, 0, 0),
        ("a" * 160, gsm.Encoding.GSM7, 1, 160),
        ("a" * 161, gsm.Encoding.GSM7, 2, 161),
        ("a" * 306, gsm.Encoding.GSM7, 2, 306),
        ("a" * 307, gsm.Encoding.GSM7, 3, 307),
        ("€" * 80, gsm.Encoding.GSM7, 1, 160),  # escapes count double
        ("€" * 81, gsm.Encoding.GSM7, 2, 162),
        ("a" * 152 + "€", gsm.Encoding.GSM7, 1, 154),
        ("a" * 159 + "€", gsm.Encoding.GSM7, 2, 161),  # the escape is not cut from its char
        ("café àÉñ", gsm.Encoding.GSM7, 1, 8),
        ("ç", gsm.Encoding.UCS2, 1, 1),  # only the capital Ç is in GSM 03.38
        ("ł" * 70, gsm.Encoding.UCS2, 1, 70),
        ("ł" * 71, gsm.Encoding.UCS2, 2, 71),
        ("ł" * 134, gsm.Encoding.UCS2, 2, 134),
        ("ł" * 135, gsm.Encoding.UCS2, 3, 135),
        ("🎉" * 35, gsm.Encoding.UCS2, 1, 70),  # two code units each
        ("🎉" * 36, gsm.Encoding.UCS2, 2, 72),
    ],
)
def test_segments(text: str, encoding: gsm.Encoding, count: int, units: int) -> None:
    info = gsm.segments(text)
    assert (info.encoding, info.count, info.units) == (encoding, count, units)
    assert info.count == (len(gsm.split(text, 1).parts) if text else 0)


def test_extension_characters_are_escaped() -> None:
    assert gsm.encode_gsm("{€}") == bytes((0x1B, 0x28, 0x1B, 0x65, 0x1B, 0x29))
    assert gsm.encode_gsm("@£$") == b"\x00\x01\x02"
    with pytest.raises(ValueError, match="not in the GSM"):
        gsm.encode_gsm("ç")


def test_split_udh() -> None:
    encoded = gsm.split("x" * 200, 0x1A2)
    assert encoded.udh
    assert encoded.data_coding == 0
    assert [p[:6] for p in encoded.parts] == [
        bytes((5, 0, 3, 0xA2, 2, 1)),
        bytes((5, 0, 3, 0xA2, 2, 2)),
    ]
    assert len(encoded.parts[0]) == 6 + 153


def test_too_long() -> None:
    with pytest.raises(gsm.TooLong):
        gsm.split("a" * 153 * 256, 1)


def test_decode_tolerates_hostile_bytes() -> None:
    assert gsm.decode_gsm(b"\x1b\x00\x1b") == "@ "
    assert gsm.decode_gsm(bytes(range(256))) != ""


@given(gsm_text)
def test_gsm_round_trip(text: str) -> None:
    assert gsm.encoding_for(text) is gsm.Encoding.GSM7
    assert gsm.decode_gsm(gsm.encode_gsm(text)) == text
    encoded = gsm.split(text, 7)
    if encoded.udh:
        assert gsm.join(list(encoded.parts), encoded.encoding) == text
    else:
        assert gsm.decode_gsm(encoded.parts[0]) == text
    assert all(len(p) <= 160 for p in encoded.parts)
    if encoded.udh:
        assert all(len(p) <= 6 + 153 for p in encoded.parts)


@given(any_text)
def test_any_text_round_trip(text: str) -> None:
    encoded = gsm.split(text, 200)
    info = gsm.segments(text)
    assert info.encoding is encoded.encoding
    if encoded.udh:
        assert len(encoded.parts) == info.count
        assert gsm.join(list(encoded.parts), encoded.encoding) == text
        assert all(len(p) <= 140 for p in encoded.parts if encoded.encoding is gsm.Encoding.UCS2)
    elif encoded.encoding is gsm.Encoding.UCS2:
        assert encoded.parts[0].decode("utf-16-be") == text
        assert len(encoded.parts[0]) <= 140
