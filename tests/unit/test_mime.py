"""The MIME writer: every message is parsed back with the stdlib parser (``policy.default``)
and checked for structure, raw-byte properties, header round-trips and hostile input."""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import email
import email.policy
import email.utils
import re
import time
from email.headerregistry import Address
from email.message import EmailMessage as StdMessage
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tidings import model
from tidings.channels.email import mime

DATE_US = 1_512_115_200_768_000  # 2017-12-01T08:00:00.768Z
SENDER = model.EmailAddress("news@example.com", "Example News")
TO = model.EmailAddress("ann@example.org", "Ann Example")

# Control characters a header value may not carry (CR and LF in a subject or a display
# name become a space first; TAB is allowed).
HEADER_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
ENCODED_WORD = re.compile(rb"=\?([^?\s]*)\?([^?\s]*)\?([^?\s]*)\?=")
STRUCTURAL_TOP = {"date", "from", "to", "subject", "message-id", "mime-version", "content-type"}


def make(**changes: Any) -> model.EmailMessage:
    fields: dict[str, Any] = {
        "event_id": 1,
        "message_id": "evt-1@tidings.test",
        "sender": SENDER,
        "to": TO,
        "subject": "Hello",
        "html": "<p>Hello</p>\n",
        "text": "Hello\n",
    }
    fields.update(changes)
    return model.EmailMessage(**fields)


def check_raw(raw: bytes) -> None:
    """7-bit, CRLF only, no line over 998 octets, a header section ended by a blank line."""
    assert raw.isascii()
    assert b"\r" not in raw.replace(b"\r\n", b""), "bare CR"
    assert b"\n" not in raw.replace(b"\r\n", b""), "bare LF"
    assert b"\r\n\r\n" in raw
    for line in raw.split(b"\r\n"):
        assert len(line) <= 998


def header_lines(raw: bytes) -> list[bytes]:
    return raw.partition(b"\r\n\r\n")[0].split(b"\r\n")


def check_folding(raw: bytes) -> None:
    """Header lines stay within 78 characters wherever a space would have allowed a fold."""
    for line in header_lines(raw):
        if len(line) <= 78:
            continue
        # A continuation line, or a first line (never folded between the name and the value).
        continued = line.startswith((b" ", b"\t"))
        rest = line.lstrip(b" \t") if continued else line.partition(b": ")[2]
        assert b" " not in rest, f"header line could have been folded: {line!r}"


def unfolded(raw: bytes, name: str) -> bytes:
    """The raw value of the header ``name``, unfolded (CRLF removed)."""
    out: list[bytes] = []
    found = False
    for line in header_lines(raw):
        if line.startswith((b" ", b"\t")):
            if found:
                out.append(line)
            continue
        found = line.lower().startswith(name.lower().encode("ascii") + b":")
        if found:
            out.append(line.partition(b":")[2])
    return b"".join(out)


def check_encoded_words(value: bytes) -> None:
    """Each encoded word is ≤ 75 characters, UTF-8 base64, and valid UTF-8 on its own."""
    for match in ENCODED_WORD.finditer(value):
        assert len(match.group(0)) <= 75
        assert match.group(1).lower() == b"utf-8"
        assert match.group(2).lower() == b"b"
        base64.b64decode(match.group(3), validate=True).decode("utf-8")  # strict


def parse(raw: bytes) -> StdMessage:
    check_raw(raw)
    msg = email.message_from_bytes(raw, policy=email.policy.default)
    assert isinstance(msg, StdMessage)
    assert not msg.defects
    return msg


def build(message: model.EmailMessage, **kwargs: Any) -> tuple[bytes, StdMessage]:
    raw = mime.build(message, date_us=kwargs.pop("date_us", DATE_US), **kwargs)
    return raw, parse(raw)


def lines_of(text: str) -> str:
    """Line ends normalised to LF (the writer sends CRLF; the parser hands back CRLF)."""
    return text.replace("\r\n", "\n").replace("\r", "\n")


def phrase(name: str) -> str:
    """A display name as RFC 5322 reads a phrase: a run of whitespace is one space (the
    stdlib parser collapses runs even inside decoded encoded words)."""
    return re.sub(r"[ \t]\s*", " ", name)


def check_display_name(raw: bytes, msg: StdMessage, header: str, name: str) -> None:
    """The one mailbox of ``header`` carries ``name`` (its CR/LF runs made spaces).

    Written as encoded words, it must decode to exactly that name per RFC 2047 (white space
    between adjacent encoded words is not part of the text). The stdlib parser must read the
    same phrase; before the fix for CPython gh-128110 it keeps the white space between the
    encoded words of a display name, so that reading is accepted too.
    """
    expected = re.sub(r"[\r\n]+", " ", name)
    parsed = msg[header]
    assert not parsed.defects
    assert len(parsed.addresses) == 1
    got = parsed.addresses[0].display_name
    value = unfolded(raw, header).strip()
    raw_phrase = value.rpartition(b" <")[0] if value.endswith(b">") else b""
    matches = [ENCODED_WORD.fullmatch(word) for word in raw_phrase.split(b" ")]
    if raw_phrase and all(matches):
        texts = [base64.b64decode(m.group(3)).decode("utf-8") for m in matches if m]
        assert "".join(texts) == expected
        assert phrase(got) in {phrase("".join(texts)), phrase(" ".join(texts))}
    else:
        assert phrase(got) == phrase(expected)
        assert bool(raw_phrase) == bool(expected)


def parts_of(msg: StdMessage) -> list[tuple[str, str | None, str, str]]:
    parts = list(msg.iter_parts()) if msg.is_multipart() else [msg]
    out = []
    for part in parts:
        assert isinstance(part, StdMessage)
        out.append(
            (
                part.get_content_type(),
                part.get_content_charset(),
                part["Content-Transfer-Encoding"],
                lines_of(part.get_content()),
            )
        )
    return out


def header_names(msg: StdMessage) -> set[str]:
    return {name.lower() for name in msg}


# -- structure -------------------------------------------------------------------------------


def test_html_and_text_make_multipart_alternative() -> None:
    raw, msg = build(make(text="Hello\nthere\n", html="<p>Hello</p>\n<p>there</p>"))
    assert msg.get_content_type() == "multipart/alternative"
    assert msg["MIME-Version"] == "1.0"
    assert parts_of(msg) == [
        ("text/plain", "utf-8", "7bit", "Hello\nthere\n"),
        ("text/html", "utf-8", "7bit", "<p>Hello</p>\n<p>there</p>"),
    ]
    assert raw.endswith(b"--" + msg.get_boundary().encode("ascii") + b"--\r\n")
    assert header_names(msg) == STRUCTURAL_TOP
    check_folding(raw)


@pytest.mark.parametrize(
    ("text", "html", "expected"),
    [
        ("Only text\n", "", ("text/plain", "utf-8", "7bit", "Only text\n")),
        ("", "<b>Only html</b>", ("text/html", "utf-8", "7bit", "<b>Only html</b>")),
        ("", "", ("text/plain", "utf-8", "7bit", "")),
    ],
)
def test_one_part_is_not_multipart(text: str, html: str, expected: tuple[str, ...]) -> None:
    _, msg = build(make(text=text, html=html))
    assert not msg.is_multipart()
    assert parts_of(msg) == [expected]
    assert header_names(msg) == STRUCTURAL_TOP | {"content-transfer-encoding"}


def test_single_part_line_ends() -> None:
    raw, _ = build(make(text="a\nb\n", html=""))
    assert raw.endswith(b"\r\n\r\na\r\nb\r\n")
    raw, _ = build(make(text="", html=""))
    assert raw.endswith(b'charset="utf-8"\r\nContent-Transfer-Encoding: 7bit\r\n\r\n')


@pytest.mark.parametrize(
    "text",
    [
        "Grüße, Zoë!\n",
        "日本語のテキスト\n二行目",
        "emoji 🎉🎉 and combining e\u0301\n",
        "trailing spaces   \nand tabs\t\t\n=3D is not an escape, é  \n",
        "nul\x00inside\n",
        "ASCII until the end é",
    ],
)
def test_non_ascii_or_nul_body_is_quoted_printable(text: str) -> None:
    _, msg = build(make(text=text, html=""))
    assert parts_of(msg) == [("text/plain", "utf-8", "quoted-printable", text)]


def test_line_breaks_are_normalised_to_crlf() -> None:
    raw, msg = build(make(text="a\r\nb\rc\nd\n\r\n", html="<p>\r</p>"))
    assert b"\r\n\r\na\r\nb\r\nc\r\nd\r\n\r\n\r\n--" in raw
    assert [part[3] for part in parts_of(msg)] == ["a\nb\nc\nd\n\n", "<p>\n</p>"]


@pytest.mark.parametrize("before", [0, 1, 2, 499, 500, 501, 997, 998, 999, 1500, 2999])
@pytest.mark.parametrize("length", [997, 998, 999, 1000, 1499, 1500, 3000])
def test_long_lines_switch_to_quoted_printable(before: int, length: int) -> None:
    # Short lines, then one line of `length`, then short lines again: every alignment of
    # the long line against the writer's 500-character blocks.
    head = ("x" * 9 + "\n") * (before // 10) + "y" * (before % 10) + "\n"
    text = head + "L" * length + "\n" + "tail\n" * 3
    _, msg = build(make(text=text, html=""))
    encoding = "7bit" if length <= 998 else "quoted-printable"
    assert parts_of(msg) == [("text/plain", "utf-8", encoding, text)]


@pytest.mark.parametrize("length", [998, 999, 5000])
def test_one_long_line_without_line_break(length: int) -> None:
    text = "z" * length
    _, msg = build(make(text=text, html=""))
    encoding = "7bit" if length <= 998 else "quoted-printable"
    assert parts_of(msg) == [("text/plain", "utf-8", encoding, text)]


# -- headers ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "when",
    [
        dt.datetime(2017, 12, 1, 8, 0, 0, 768000, tzinfo=dt.UTC),
        dt.datetime(1970, 1, 1, tzinfo=dt.UTC),
        dt.datetime(2024, 2, 29, 23, 59, 59, 999999, tzinfo=dt.UTC),
        dt.datetime(2099, 12, 31, 12, 0, 1, tzinfo=dt.UTC),
    ],
)
def test_date(when: dt.datetime) -> None:
    us = int(when.timestamp()) * 1_000_000 + when.microsecond
    _, msg = build(make(), date_us=us)
    assert email.utils.parsedate_to_datetime(msg["Date"]) == when.replace(microsecond=0)
    assert re.fullmatch(r"\w{3}, \d{2} \w{3} \d{4} \d{2}:\d{2}:\d{2} \+0000", msg["Date"])


def test_date_defaults_to_now() -> None:
    msg = parse(mime.build(make()))
    sent = email.utils.parsedate_to_datetime(msg["Date"]).timestamp()
    assert abs(sent - time.time()) < 5


@pytest.mark.parametrize(
    "given", ["evt-1@tidings.test", "<evt-1@tidings.test>", " <evt-1@tidings.test> "]
)
def test_message_id(given: str) -> None:
    raw, msg = build(make(message_id=given))
    assert msg["Message-ID"] == "<evt-1@tidings.test>"
    assert b"\r\nMessage-ID: <evt-1@tidings.test>\r\n" in raw


@pytest.mark.parametrize(
    "given",
    [
        "",
        "<>",
        "no-at-sign",
        "a b@x.test",
        "é@x.test",
        "a\r\nBcc: x@evil.test",
        "<a<b@x>",
        "a\x00@x",
        "a" * 1000 + "@x.test",
    ],
)
def test_bad_message_id_is_refused(given: str) -> None:
    with pytest.raises(mime.HeaderError):
        mime.build(make(message_id=given), date_us=DATE_US)


NAMES = [
    "Ann Example",
    "O'Neil & Sons",
    "Doe, John",
    'Say "hi"',
    "back\\slash",
    "a.b (comment?)",
    "<angle@brackets>",
    "semi;colon:",
    "  padded  ",
    "Zoë Ångström",
    "山田 太郎",
    "🎉 Party 🎉",
    "e\u0301" * 40,
    "Ünïcödé " * 12,
    'Ｆｕｌｌｗｉｄｔｈ, "quoted" \\ 名前',
    "x" * 120,
    "word " * 30,
    "=?utf-8?q?Admin?=",
    "=?utf-8?b?QWRtaW4=?= <admin@bank.test>",
    "Totally =?fake?=, really",
]


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("field", ["sender", "to", "reply_to"])
def test_display_names_round_trip(field: str, name: str) -> None:
    address = model.EmailAddress("someone@example.net", name)
    raw, msg = build(make(**{field: address}))
    header = {"sender": "From", "to": "To", "reply_to": "Reply-To"}[field]
    assert msg[header].addresses[0].addr_spec == "someone@example.net"
    check_display_name(raw, msg, header, name)
    check_encoded_words(unfolded(raw, header))
    check_folding(raw)


def test_display_name_forms() -> None:
    def line(name: str) -> bytes:
        raw = mime.build(make(sender=model.EmailAddress("a@b.test", name)), date_us=DATE_US)
        return unfolded(raw, "From").strip()

    assert line("Ann Example") == b"Ann Example <a@b.test>"
    assert line("Doe, John") == b'"Doe, John" <a@b.test>'
    assert line('Say "hi" \\o/') == b'"Say \\"hi\\" \\\\o/" <a@b.test>'
    assert line("") == b"a@b.test"
    zoe = line("Zoë")
    assert zoe == b"=?utf-8?b?" + base64.b64encode("Zoë".encode()) + b"?= <a@b.test>"
    fake = line("=?utf-8?q?Admin?=")
    assert fake == b"=?utf-8?b?" + base64.b64encode(b"=?utf-8?q?Admin?=") + b"?= <a@b.test>"
    assert mime.format_address(model.EmailAddress("a@b.test")) == "a@b.test"
    assert mime.format_address(model.EmailAddress("a@b.test", "A B")) == "A B <a@b.test>"


@pytest.mark.parametrize(
    ("address", "expected"),
    [
        ("user@exämple.com", "user@xn--exmple-cua.com"),
        ("user@EXÄMPLE.com", "user@xn--exmple-cua.com"),
        ("user@bücher.example", "user@xn--bcher-kva.example"),
        ("user@例え.テスト", "user@xn--r8jz45g.xn--zckzah"),
        ("user@plain.example", "user@plain.example"),
        ("user@[192.0.2.1]", "user@[192.0.2.1]"),
        ('"john..doe"@example.com', '"john..doe"@example.com'),
        ('"a@b"@example.com', '"a@b"@example.com'),
        ("first.last+tag@example.com", "first.last+tag@example.com"),
    ],
)
def test_addresses(address: str, expected: str) -> None:
    raw, msg = build(make(to=model.EmailAddress(address, "Ann")))
    local, _, domain = expected.rpartition("@")
    parsed = msg["To"].addresses[0]
    assert (parsed.username, parsed.domain) == (local.strip('"'), domain)
    assert parsed.display_name == "Ann"
    assert unfolded(raw, "To") == f" Ann <{expected}>".encode("ascii")


def test_encode_domain() -> None:
    assert mime.encode_domain("exämple.com") == "xn--exmple-cua.com"
    assert mime.encode_domain("example.com") == "example.com"
    with pytest.raises(mime.HeaderError):
        mime.encode_domain("a" * 64 + "ä.com")  # a label longer than 63 octets


@pytest.mark.parametrize(
    "address",
    [
        "",
        "nobody",
        "@example.com",
        "user@",
        "us er@example.com",
        "<user@example.com>",
        "user@example.com>",
        "user@example.com\r\nBcc: victim@example.net",
        "user@example.com\x00",
        "user@exa\tmple.com",
        "user@b,victim.example",
        "user@example.com;",
        "user@(comment)example.com",
        'user@exa"mple.com',
        "user@exä,mple.com",
        "user@exä(x).com",
        '"@example.com',
        '"a"@b"@example.com',
        "user,x@example.com",
    ],
)
def test_not_an_address_is_refused(address: str) -> None:
    with pytest.raises(mime.HeaderError):
        mime.format_address(model.EmailAddress(address))
    with pytest.raises(mime.HeaderError):
        mime.build(make(to=model.EmailAddress(address)), date_us=DATE_US)


@pytest.mark.parametrize("address", ["jürgen@example.com", "用户@例子.广告", "é@example.com"])
def test_non_ascii_local_part_is_refused(address: str) -> None:
    with pytest.raises(mime.HeaderError, match="SMTPUTF8"):
        mime.build(make(sender=model.EmailAddress(address)), date_us=DATE_US)


SUBJECTS = [
    "Hello",
    "漢字かな交じり文の長い件名、" * 12,
    "🎉🎈🎁" * 40,
    "e\u0301a\u0308o\u0302" * 50,
    "한국어 제목 " * 20,
    "Mixed ASCII and ünïcödé words " * 8,
    "A long ASCII subject with many words that has to be folded over several lines " * 4,
    "=?utf-8?b?SGVsbG8=?=",
    "Price =? 5 and =?x?q?y?= here",
    "?= =? ?==?",
    "  leading spaces",
    "trailing spaces  ",
    "inner   runs\tand\ttabs",
    "",
]


@pytest.mark.parametrize("subject", SUBJECTS)
def test_subject_round_trips(subject: str) -> None:
    raw, msg = build(make(subject=subject))
    assert msg["Subject"] == subject
    value = unfolded(raw, "Subject")
    check_encoded_words(value)
    if not subject.isascii() or "=?" in subject:
        assert ENCODED_WORD.search(value)
    check_folding(raw)


def test_long_ascii_subject_is_folded_at_spaces() -> None:
    subject = " ".join(f"word{i}" for i in range(200))
    raw, msg = build(make(subject=subject))
    assert msg["Subject"] == subject
    lines = [line for line in header_lines(raw) if line.startswith((b"Subject:", b" "))]
    assert len(lines) > 10
    assert all(len(line) <= 78 for line in lines)


def test_unbreakable_subject_longer_than_a_line_is_refused() -> None:
    with pytest.raises(mime.HeaderError):
        mime.build(make(subject="x" * 1000), date_us=DATE_US)


# -- hostile input ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("subject", "expected"),
    [
        ("Hi\r\nBcc: victim@example.net", "Hi Bcc: victim@example.net"),
        ("Hi\nBcc: victim@example.net", "Hi Bcc: victim@example.net"),
        ("Hi\rBcc: victim@example.net", "Hi Bcc: victim@example.net"),
        ("Hi\r\n\r\nInjected body", "Hi Injected body"),
        ("Grüß\r\nBcc: victim@example.net", "Grüß Bcc: victim@example.net"),
        ("Hi\n Bcc: continued", "Hi  Bcc: continued"),
    ],
)
def test_line_breaks_in_subject_become_spaces(subject: str, expected: str) -> None:
    _, msg = build(make(subject=subject))
    assert msg["Subject"] == expected
    assert msg["Bcc"] is None
    assert header_names(msg) == STRUCTURAL_TOP
    assert parts_of(msg)[0][3] == "Hello\n"


@pytest.mark.parametrize(
    "name",
    [
        "Ann\r\nBcc: victim@example.net",
        "Ann\nBcc: victim@example.net",
        "Ann\r\n\r\nbody",
        "Änn\r\nBcc: victim@example.net",
        'Ann "x"\rBcc: victim@example.net',
    ],
)
@pytest.mark.parametrize("field", ["sender", "to", "reply_to"])
def test_line_breaks_in_display_names_create_no_header(field: str, name: str) -> None:
    address = model.EmailAddress("ann@example.org", name)
    raw, msg = build(make(**{field: address}))
    assert msg["Bcc"] is None
    extra = {"reply-to"} if field == "reply_to" else set()
    assert header_names(msg) == STRUCTURAL_TOP | extra
    header = {"sender": "From", "to": "To", "reply_to": "Reply-To"}[field]
    assert msg[header].addresses[0].addr_spec == "ann@example.org"
    check_display_name(raw, msg, header, name)


@pytest.mark.parametrize(
    "value", ["a\r\nBcc: victim@example.net", "a\nb", "a\rb", "a\x00b", "a\x01b", "é\nb"]
)
def test_control_characters_in_extra_header_values_are_refused(value: str) -> None:
    with pytest.raises(mime.HeaderError):
        mime.build(make(headers=(("X-Campaign", value),)), date_us=DATE_US)


@pytest.mark.parametrize(
    "name", ["", "X Campaign", "X:Campaign", "X-Campaïgn", "X\r\nBcc", "X\x00", "X\t", ":"]
)
def test_invalid_extra_header_names_are_refused(name: str) -> None:
    with pytest.raises(mime.HeaderError):
        mime.build(make(headers=((name, "value"),)), date_us=DATE_US)


@pytest.mark.parametrize(
    "name",
    [
        "From",
        "to",
        "SUBJECT",
        "Content-Type",
        "bcc",
        "Cc",
        "message-id",
        "Mime-Version",
        "content-transfer-encoding",
        "Date",
        "Reply-To",
        "Sender",
        "Return-Path",
    ],
)
def test_structural_headers_cannot_be_overridden(name: str) -> None:
    with pytest.raises(mime.HeaderError):
        mime.build(make(headers=((name, "x@example.net"),)), date_us=DATE_US)


def test_extra_headers_round_trip() -> None:
    unsubscribe = ", ".join(f"<https://example.com/u/{i}?t=abcdef>" for i in range(6))
    headers = (
        ("X-Campaign", "spring-2024"),
        ("List-Unsubscribe", unsubscribe),
        ("X-Note", "héllo wörld"),
        ("X-Literal", "=?utf-8?q?not-encoded?="),
        ("x-lower", "tab\there"),
    )
    raw, msg = build(make(headers=headers))
    for name, value in headers:
        assert msg[name] == value
    check_folding(raw)
    assert header_names(msg) == STRUCTURAL_TOP | {name.lower() for name, _ in headers}


def test_body_cannot_break_the_multipart_structure() -> None:
    # Learn how the writer names its boundaries, then plant the next few in the bodies.
    _, probe = build(make())
    prefix, _, counter = probe.get_boundary().rpartition(".")
    assert prefix
    planted = []
    for n in range(int(counter, 16) + 1, int(counter, 16) + 40):
        planted += [f"--{prefix}.{n:x}", f"--{prefix}.{n:x}--", f"{prefix}.{n:x}"]
    text = "\n".join(["--", "----", "-- ", "--\t", *planted, "--"]) + "\n"
    html = "<pre>\n" + "\n".join(planted) + "\n--\n</pre>"
    _, msg = build(make(text=text, html=html))
    assert msg.get_boundary() not in text + html
    parts = parts_of(msg)
    assert len(parts) == 2
    assert [p[3] for p in parts] == [text, html]


def test_a_given_boundary_is_used() -> None:
    raw, msg = build(make(), boundary="tidings-test-boundary")
    assert msg.get_boundary() == "tidings-test-boundary"
    assert raw.count(b"\r\n--tidings-test-boundary\r\n") == 2
    assert raw.endswith(b"\r\n--tidings-test-boundary--\r\n")
    assert [p[3] for p in parts_of(msg)] == ["Hello\n", "<p>Hello</p>\n"]


# -- properties ------------------------------------------------------------------------------

PROPERTY = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@PROPERTY
@given(st.text(max_size=300))
def test_any_subject(subject: str) -> None:
    collapsed = re.sub(r"[\r\n]+", " ", subject)
    if HEADER_CONTROL.search(collapsed):
        with pytest.raises(mime.HeaderError, match="control"):
            mime.build(make(subject=subject), date_us=DATE_US)
        return
    raw, msg = build(make(subject=subject))
    assert msg["Subject"] == collapsed
    assert header_names(msg) == STRUCTURAL_TOP
    check_encoded_words(unfolded(raw, "Subject"))


@PROPERTY
@given(st.text(max_size=120), st.sampled_from(["sender", "to", "reply_to"]))
def test_any_display_name(name: str, field: str) -> None:
    address = model.EmailAddress("someone@example.net", name)
    collapsed = re.sub(r"[\r\n]+", " ", name)
    if HEADER_CONTROL.search(collapsed):
        with pytest.raises(mime.HeaderError, match="control"):
            mime.build(make(**{field: address}), date_us=DATE_US)
        return
    raw, msg = build(make(**{field: address}))
    header = {"sender": "From", "to": "To", "reply_to": "Reply-To"}[field]
    assert msg[header].addresses[0].addr_spec == "someone@example.net"
    check_display_name(raw, msg, header, name)
    extra = {"reply-to"} if field == "reply_to" else set()
    assert header_names(msg) == STRUCTURAL_TOP | extra
    check_encoded_words(unfolded(raw, header))


LONG_LINE = st.text(alphabet="abcé \t", min_size=990, max_size=1010)
BODY = st.one_of(
    st.text(max_size=600),
    st.lists(st.one_of(st.text(max_size=80), LONG_LINE), max_size=4).map("\n".join),
    st.lists(st.sampled_from(["\r", "\n", "\r\n", "--", " ", "=", ".", "a"])).map("".join),
)


@PROPERTY
@given(BODY, BODY)
def test_any_body(text: str, html: str) -> None:
    _, msg = build(make(text=text, html=html))
    expected = []
    if text or not html:
        expected.append(("text/plain", text))
    if html:
        expected.append(("text/html", html))
    parts = parts_of(msg)
    assert msg.is_multipart() == (len(expected) == 2)
    assert [(ctype, content) for ctype, _, _, content in parts] == [
        (ctype, lines_of(content)) for ctype, content in expected
    ]
    for (_, charset, encoding, _), (_, content) in zip(parts, expected, strict=True):
        assert charset == "utf-8"
        plain = (
            content.isascii()
            and "\x00" not in content
            and all(len(line) <= 998 for line in lines_of(content).split("\n"))
        )
        assert encoding == ("7bit" if plain else "quoted-printable")


@PROPERTY
@given(
    subject=st.text(alphabet=st.characters(blacklist_categories=["Cc", "Cs"]), max_size=200),
    name=st.text(alphabet=st.characters(blacklist_categories=["Cc", "Cs"]), max_size=80),
    body=st.text(max_size=300),
)
def test_any_whole_message(subject: str, name: str, body: str) -> None:
    message = make(
        subject=subject,
        sender=model.EmailAddress("news@exämple.com", name),
        reply_to=model.EmailAddress("help@example.com", name),
        text=body,
        html=f"<p>{body}</p>",
        headers=(("X-Subject-Copy", subject),),
    )
    raw, msg = build(message)
    assert msg["Subject"] == subject
    assert msg["X-Subject-Copy"] == subject
    assert msg["From"].addresses[0].addr_spec == "news@xn--exmple-cua.com"
    check_display_name(raw, msg, "From", name)
    check_display_name(raw, msg, "Reply-To", name)
    expected = ([lines_of(body)] if body else []) + [lines_of(f"<p>{body}</p>")]
    assert [p[3] for p in parts_of(msg)] == expected


# -- against the stdlib ----------------------------------------------------------------------


def test_same_as_the_stdlib_writer() -> None:
    subject = "Votre commande n° 1234 est expédiée — merci ! 📦"
    text = "Bonjour Zoë,\n\nVotre colis est en route.\n" + "Suivi : " + "x" * 20 + "\n"
    html = "<p>Bonjour Zoë,</p>\n<p>Votre colis est en route.</p>\n"
    ours = make(
        subject=subject,
        sender=model.EmailAddress("shop@example.com", "Boutique Zoë"),
        to=model.EmailAddress("zoe@example.org", "Zoë Dupont, Jr."),
        reply_to=model.EmailAddress("help@example.com", "Service client"),
        text=text,
        html=html,
        headers=(("X-Campaign", "orders"), ("List-Unsubscribe", "<https://example.com/u>")),
    )
    _, mine = build(ours)

    std = StdMessage(policy=email.policy.SMTP.clone(cte_type="7bit"))
    std["Date"] = email.utils.format_datetime(dt.datetime.fromtimestamp(DATE_US // 10**6, dt.UTC))
    std["From"] = Address("Boutique Zoë", addr_spec="shop@example.com")
    std["To"] = Address("Zoë Dupont, Jr.", addr_spec="zoe@example.org")
    std["Reply-To"] = Address("Service client", addr_spec="help@example.com")
    std["Subject"] = subject
    std["Message-ID"] = "<evt-1@tidings.test>"
    std["X-Campaign"] = "orders"
    std["List-Unsubscribe"] = "<https://example.com/u>"
    std.set_content(text)
    std.add_alternative(html, subtype="html")
    theirs = parse(std.as_bytes())

    assert header_names(mine) == header_names(theirs)
    for name in ("Date", "Subject", "Message-ID", "X-Campaign", "List-Unsubscribe"):
        assert mine[name] == theirs[name]
    for name in ("From", "To", "Reply-To"):
        assert mine[name].addresses == theirs[name].addresses
    assert mine.get_content_type() == theirs.get_content_type()
    assert [p[:2] + p[3:] for p in parts_of(mine)] == [p[:2] + p[3:] for p in parts_of(theirs)]


def test_qp_is_what_binascii_would_decode() -> None:
    # The quoted-printable body is standard: binascii decodes it to the UTF-8 text.
    text = "Grüße " * 40 + "\n= sign and trailing space \nend"
    raw = mime.build(make(text=text, html=""), date_us=DATE_US)
    body = raw.partition(b"\r\n\r\n")[2]
    assert max(len(line) for line in body.split(b"\r\n")) <= 76
    decoded = binascii.a2b_qp(body.replace(b"\r\n", b"\n")).decode("utf-8")
    assert decoded == text
