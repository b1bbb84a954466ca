"""Email messages as bytes: our own MIME writer.

The stdlib's ``email.message.EmailMessage`` costs about 1.9 ms a message here, most of it in
its policy machinery; the messages Tidings sends always have the same small shape (one
``text/plain``, one ``text/html``, or both in ``multipart/alternative``), so this module writes
them directly, in a few microseconds, following RFC 5322 (headers), RFC 2045-2047 (MIME and
encoded words) and RFC 5890 (internationalised domain names):

- lines end in CRLF, every byte is 7-bit ASCII, no line is longer than 998 octets and header
  lines are folded near 78;
- a display name or subject that is not plain ASCII (or holds ``=?``, or starts with white
  space) becomes UTF-8 ``=?utf-8?b?...?=`` encoded words of at most 75 characters, never
  splitting a multi-byte character; an ASCII name with specials becomes a quoted string;
- domains are written in their IDNA (``xn--``) form; a non-ASCII local part cannot be written
  without SMTPUTF8 and is refused with :class:`HeaderError`;
- a body that is ASCII with short lines is sent ``7bit``, otherwise ``quoted-printable``;
- CR, LF and NUL in any header value never start a new header: a subject's line breaks become
  spaces, anything else carrying them is refused.

Tests parse every message with the stdlib parser (``tests/unit/test_mime.py``).
"""

from __future__ import annotations

import base64
import binascii
import functools
import itertools
import os
import re

from tidings import clock, model

__all__ = ["HeaderError", "build", "encode_domain", "format_address"]


class HeaderError(ValueError):
    """A header that cannot be written safely (bad address, forbidden name, control bytes)."""


#: Headers the writer owns; templates may not set them through extra headers.
STRUCTURAL = frozenset(
    {
        "bcc",
        "cc",
        "content-transfer-encoding",
        "content-type",
        "date",
        "from",
        "message-id",
        "mime-version",
        "reply-to",
        "return-path",
        "sender",
        "subject",
        "to",
    }
)

_FIELD_NAME = re.compile(r"[!-9;-~]+")  # RFC 5322 ftext: printable ASCII except ":"
_ATOM = re.compile(r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~ -]*")  # atext and spaces (a phrase)
_LOCAL_PART = re.compile(r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~.-]+")
_QUOTED_LOCAL_PART = re.compile(r'"(?:[!#-\[\]-~]|\\[!-~])*"')  # no space: refused before
# RFC 5322 domain: a dot-atom or a domain literal (checked after the IDNA encoding).
_DOMAIN = re.compile(
    r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*|\[[!-Z^-~]*\]"
)
_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")
_LINE_BREAKS = re.compile(r"[\r\n]+")
_MAX_LINE = 998
_FOLD_AT = 78
# An encoded word is at most 75 characters: "=?utf-8?b?" + payload + "?=" -> 63 payload
# characters, a multiple of 4, so 60 characters of base64 carry 45 bytes.
_WORD_PREFIX = "=?utf-8?b?"
_WORD_BYTES = 45


def build(
    message: model.EmailMessage, *, date_us: int | None = None, boundary: str | None = None
) -> bytes:
    """The whole message, headers and body, ready for SMTP ``DATA`` (not dot-stuffed)."""
    lines: list[str] = [
        "Date: " + _date((clock.now_us() if date_us is None else date_us) // 1_000_000),
        _mailbox_header("From", message.sender),
        _fold("To: " + format_address(message.to)),
    ]
    if message.reply_to is not None:
        lines.append(_mailbox_header("Reply-To", message.reply_to))
    lines.append(_fold("Subject: " + _unstructured(_LINE_BREAKS.sub(" ", message.subject))))
    lines.append("Message-ID: <" + _message_id(message.message_id) + ">")
    for name, value in message.headers:
        lines.append(_extra_header(name, value))
    lines.append("MIME-Version: 1.0")

    parts = []
    if message.text or not message.html:
        parts.append(_part("plain", message.text))
    if message.html:
        parts.append(_part("html", message.html))
    if len(parts) == 1:
        head, body = parts[0]
        return ("\r\n".join(lines + head) + "\r\n\r\n" + body).encode("ascii")

    if boundary is None:
        boundary = _boundary(parts)
    lines += [f'Content-Type: multipart/alternative; boundary="{boundary}"', "", ""]
    text = "\r\n".join(lines)
    for head, body in parts:
        text += f"--{boundary}\r\n" + "\r\n".join(head) + "\r\n\r\n" + body + "\r\n"
    text += f"--{boundary}--\r\n"
    return text.encode("ascii")


def format_address(address: model.EmailAddress) -> str:
    """``address`` as a header's mailbox: ``"Name" <local@domain>`` or ``local@domain``."""
    addr_spec = _addr_spec(address.address)
    if not address.name:
        return addr_spec
    return f"{_phrase(address.name)} <{addr_spec}>"


@functools.lru_cache(maxsize=1024)
def _mailbox_header(name: str, address: model.EmailAddress) -> str:
    """A From or Reply-To line: the same few addresses (a template's) in every message."""
    return _fold(f"{name}: {format_address(address)}")


@functools.lru_cache(maxsize=4096)
def encode_domain(domain: str) -> str:
    """The ASCII (IDNA) form of ``domain``; raises :class:`HeaderError` when it has none."""
    if domain.isascii():
        return domain
    try:
        return domain.encode("idna").decode("ascii")
    except UnicodeError as exc:
        raise HeaderError(f"the domain {domain!r} is not a valid internationalised name") from exc


@functools.lru_cache(maxsize=4)
def _date(seconds: int) -> str:
    return clock.format_rfc5322(seconds * 1_000_000)


# -- headers -------------------------------------------------------------------------------


def _addr_spec(address: str) -> str:
    local, at, domain = address.rpartition("@")
    if not at or not local or not domain:
        raise HeaderError(f"{address!r} is not an email address")
    if _CONTROL.search(address) or " " in address or "<" in address or ">" in address:
        raise HeaderError(f"{address!r} contains characters an address cannot hold")
    if not local.isascii():
        raise HeaderError(
            f"the local part of {address!r} is not ASCII; it needs SMTPUTF8, which is not used"
        )
    if not _LOCAL_PART.fullmatch(local) and not _QUOTED_LOCAL_PART.fullmatch(local):
        raise HeaderError(f"the local part of {address!r} is not valid")
    domain = encode_domain(domain)
    if not _DOMAIN.fullmatch(domain):
        raise HeaderError(f"the domain of {address!r} is not valid")
    return f"{local}@{domain}"


def _phrase(name: str) -> str:
    name = _LINE_BREAKS.sub(" ", name)
    if _CONTROL.search(name):
        raise HeaderError(f"the display name {name!r} contains control characters")
    if not name.isascii() or "=?" in name:  # parsers decode "=?" even in a quoted string
        return " ".join(_encoded_words(name))
    if _ATOM.fullmatch(name) and name == name.strip():
        return name
    return '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _unstructured(value: str) -> str:
    if _CONTROL.search(value):
        raise HeaderError("a header value contains control characters")
    if value.isascii() and "=?" not in value and not value.startswith((" ", "\t")):
        return value  # (leading white space would be taken for the space after the colon)
    return " ".join(_encoded_words(value))


def _encoded_words(value: str) -> list[str]:
    """``value`` as UTF-8 base64 encoded words, each ≤ 75 characters, split between
    characters (never inside one)."""
    data = value.encode("utf-8")
    words: list[str] = []
    start = 0
    while True:
        end = start + _WORD_BYTES
        if end < len(data):
            while data[end] & 0xC0 == 0x80:  # a continuation byte: back up to its lead byte
                end -= 1
        words.append(_WORD_PREFIX + base64.b64encode(data[start:end]).decode("ascii") + "?=")
        if end >= len(data):
            return words
        start = end


def _fold(line: str) -> str:
    """Fold a header line at spaces so each physical line stays near 78 characters; a run
    without spaces longer than 998 (which folding cannot split) is refused."""
    if len(line) <= _FOLD_AT:
        return line
    name, _, rest = line.partition(" ")
    words = rest.split(" ")
    out: list[str] = []
    current = name + " " + words[0]  # never fold between the field name and its value
    for word in words[1:]:
        if word and len(current) + 1 + len(word) > _FOLD_AT:
            out.append(current)
            current = " " + word
        else:
            current += " " + word
    out.append(current)
    if any(len(part) > _MAX_LINE for part in out):
        raise HeaderError("a header holds a word longer than a line may be")
    return "\r\n".join(out)


def _message_id(value: str) -> str:
    value = value.strip().removeprefix("<").removesuffix(">")
    if (
        not value
        or not value.isascii()
        or _CONTROL.search(value)
        or " " in value
        or "@" not in value
    ):
        raise HeaderError(f"{value!r} is not a valid Message-ID")
    if "<" in value or ">" in value or len(value) > _MAX_LINE - len("Message-ID: <>"):
        raise HeaderError(f"{value!r} is not a valid Message-ID")
    return value


def _extra_header(name: str, value: str) -> str:
    if not _FIELD_NAME.fullmatch(name):
        raise HeaderError(f"{name!r} is not a valid header name")
    if name.lower() in STRUCTURAL:
        raise HeaderError(f"the {name} header is written by Tidings and cannot be set")
    if "\r" in value or "\n" in value or "\x00" in value:
        raise HeaderError(f"the value of the {name} header contains a line break")
    return _fold(f"{name}: {_unstructured(value)}")


# -- bodies --------------------------------------------------------------------------------


def _part(subtype: str, content: str) -> tuple[list[str], str]:
    """The headers and encoded body of one ``text/<subtype>`` part."""
    text = content.replace("\r\n", "\n").replace("\r", "\n")
    if text.isascii() and "\x00" not in text and _short_lines(text):
        encoding, body = "7bit", text.replace("\n", "\r\n")
    else:
        encoding = "quoted-printable"
        encoded = binascii.b2a_qp(text.encode("utf-8"), istext=True, header=False)
        body = encoded.decode("ascii").replace("\n", "\r\n")
    head = [
        f'Content-Type: text/{subtype}; charset="utf-8"',
        f"Content-Transfer-Encoding: {encoding}",
    ]
    return head, body


_BOUNDARY_PREFIX = "=_" + base64.b32encode(os.urandom(10)).decode("ascii") + "."
_BOUNDARY_SEQ = itertools.count()


def _short_lines(text: str) -> bool:
    """No line of ``text`` is longer than 998 characters. A line of 999 or more always
    covers a whole aligned block of 500 characters, so when every such block holds a line
    break (the common case, checked with a few ``find`` calls) there is none."""
    if len(text) <= _MAX_LINE:
        return True
    for start in range(0, len(text) - 499, 500):
        if text.find("\n", start, start + 500) < 0:
            return max(map(len, text.split("\n"))) <= _MAX_LINE
    return True


def _boundary(parts: list[tuple[list[str], str]]) -> str:
    """A boundary unique to this process and message, absent from the bodies (``=_`` cannot
    appear in quoted-printable text, and a 7bit body holding it is checked)."""
    while True:
        candidate = f"{_BOUNDARY_PREFIX}{next(_BOUNDARY_SEQ):x}"
        if not any(candidate in body for _, body in parts):
            return candidate
