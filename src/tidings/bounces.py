"""Bounces: reading delivery status notifications and asynchronous bounces, and acting on them.

:func:`parse` reads an inbound message (bytes, as an MTA hands it over) into a :class:`Report`:

- an RFC 3464 delivery status notification (``multipart/report; report-type=delivery-status``,
  or any ``message/delivery-status`` part): one :class:`Recipient` per ``failed`` or
  ``delayed`` per-recipient block (``Action``, ``Status``, ``Final-Recipient``,
  ``Diagnostic-Code``);
- failing that, a common non-standard bounce (Exim's "Mail delivery failed", qmail's "failure
  notice"): a message that looks like one (from MAILER-DAEMON or postmaster, a bounce subject,
  ``X-Failed-Recipients``) and carries an SMTP status (``550 5.1.1``) in its text.

Either way the original message is found by its Message-ID: the ``message/rfc822`` or
``text/rfc822-headers`` part, the ``In-Reply-To`` / ``References`` headers, or a
``Message-ID:`` line in the text (the copy Exim and qmail append). Tidings' own Message-IDs
(``<event id>.tidings@<domain>``) name the event. When the bounce quotes none of that, the
address it was sent to does, with the ``bounce_address`` setting: every email then goes out
from ``local+<event id>@domain`` (VERP), and a bounce comes back to that address (the
listener's RCPT TO, or the bounce's own To / Delivered-To / X-Original-To).

:func:`classify` says what a status means: 5.x.x is ``hard`` (the address is bad) except
mailbox full (5.2.2), message too big (5.3.4) and policy (5.7.x), which like 4.x.x are
``soft``; a ``delayed`` report is only a warning. :func:`process` matches a report to the
delivery it is about and, in one transaction, keeps the bounce, adds it to the event's delivery
log and quarantines the address: for good on a hard bounce, for ``soft_bounce_quarantine``
seconds once soft bounces from ``soft_bounce_limit`` distinct events came within
``soft_bounce_window``. The same bounce twice counts once.

Errors: :func:`parse` never raises; hostile or broken input gives a report that says why it is
not a bounce. :func:`process` raises only the database's :class:`~tidings.store.database.
Unavailable` (the listener answers 451 so the MTA retries; the API 503).
"""

from __future__ import annotations

import email.message
import email.parser
import email.policy
import logging
import re
from collections.abc import Sequence
from typing import Any

import msgspec

from tidings import clock, ids, model
from tidings.settings import Settings
from tidings.store import bounces as store
from tidings.store import quarantine as quarantine_store
from tidings.store.database import Database

log = logging.getLogger("tidings.bounces")

DEFAULT_MAX_BYTES = 1 << 20
MAX_PARTS = 100  # a bounce has 2-4; more is not one
MAX_MESSAGE_IDS = 20
_MAX_TEXT = 200_000  # characters of text scanned for statuses and Message-IDs
_MAX_FIELD = 1000

_ENHANCED = re.compile(r"(?<![\d.])([245])\.(\d{1,3})\.(\d{1,3})(?![\d.]*\d)")
_REPLY_AND_ENHANCED = re.compile(r"(?<!\d)([45]\d\d)[ -]+([45]\.\d{1,3}\.\d{1,3})(?![\d.]*\d)")
_REPLY = re.compile(r"(?:^|[\s;:])([45][0-5]\d)[ -]", re.MULTILINE)
_BRACKETED = re.compile(r"<([^<>\s]{1,250})>")
_ID_LINE = re.compile(r"^\s*Message-ID:\s*<([^<>\s]{1,250})>", re.IGNORECASE | re.MULTILINE)
_OURS_IN_TEXT = re.compile(r"<?(\d{1,20}\.tidings@[A-Za-z0-9.-]{1,250})>?")
_OURS = re.compile(r"(\d{1,20})\.tidings@[A-Za-z0-9.-]{1,250}")
_BOUNCE_SENDER = re.compile(r"mailer-daemon|postmaster|mail delivery (sub)?system", re.I)
_BOUNCE_SUBJECT = re.compile(
    r"undeliver|undelivered|delivery (status|failure|failed|has failed|notification)|"
    r"returned mail|failure notice|mail delivery failed|could not be delivered|non-?delivery",
    re.I,
)
_VERP_CANDIDATE = re.compile(
    r"(?P<local>[A-Za-z0-9._%-]{1,64})\+(?P<id>\d{1,20})@(?P<domain>[A-Za-z0-9.-]{1,250})"
)
_STRAY = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")


class Recipient(msgspec.Struct, frozen=True):
    """One recipient a bounce reports on."""

    address: str  # Final-Recipient (or X-Failed-Recipients, the original To); may be ""
    original: str  # Original-Recipient, when given
    action: str  # failed or delayed
    status: str  # enhanced status code: 5.1.1
    diagnostic: str
    kind: model.BounceKind


class Report(msgspec.Struct, frozen=True):
    """What :func:`parse` read. ``format`` is ``dsn``, ``async`` or ``""`` (not a bounce:
    ``reason`` says why)."""

    format: str
    recipients: tuple[Recipient, ...] = ()
    message_ids: tuple[str, ...] = ()  # the original message's, best first, no brackets
    reason: str = ""
    addressed_to: tuple[str, ...] = ()  # the bounce's own To / Delivered-To / X-Original-To

    @property
    def is_bounce(self) -> bool:
        """Whether this is a bounce (matched or not)."""
        return bool(self.format)


def not_a_bounce(reason: str) -> Report:
    """A report saying why a message is not a bounce."""
    return Report("", reason=reason)


def classify(status: str, action: str = "failed") -> model.BounceKind:
    """Hard, soft or delayed, from an enhanced status code and a DSN action."""
    if action == "delayed":
        return model.BounceKind.DELAYED
    klass, _, rest = status.partition(".")
    subject, _, detail = rest.partition(".")
    if klass != "5" or subject == "7" or (subject, detail) in (("2", "2"), ("3", "4")):
        return model.BounceKind.SOFT
    return model.BounceKind.HARD


def status_of(status: str, diagnostic: str) -> str | None:
    """The enhanced status code from a DSN's ``Status`` and ``Diagnostic-Code`` (or a line
    of bounce text): a generic x.0.0 gives way to a more precise code of the same class in
    the diagnostic; a bare reply code (550) gives x.0.0."""
    given = _ENHANCED.match(status.strip())
    found = given.group(0) if given else None
    if found is None or found.endswith(".0.0"):
        said = _REPLY_AND_ENHANCED.search(diagnostic)
        precise = said.group(2) if said else None
        if precise is None and (m := _ENHANCED.search(diagnostic)) and m.group(1) != "2":
            precise = m.group(0)
        if precise is not None and (found is None or precise[0] == found[0]):
            found = precise
    if found is None and (reply := _REPLY.search(diagnostic)):
        found = f"{reply.group(1)[0]}.0.0"
    return found if found is not None and found[0] in "45" else None


def parse(raw: bytes, *, max_bytes: int = DEFAULT_MAX_BYTES) -> Report:
    """Read an inbound message as a bounce; never raises."""
    if not raw.strip():
        return not_a_bounce("the message is empty")
    if len(raw) > max_bytes:
        return not_a_bounce(f"the message is larger than {max_bytes} bytes")
    try:
        message = email.message_from_bytes(raw, policy=email.policy.default)
        return _read(message)
    except Exception as exc:  # hostile input: whatever the parser trips on
        log.debug("unreadable inbound message", exc_info=True)
        return not_a_bounce(f"the message cannot be read: {type(exc).__name__}")


def _read(message: email.message.Message) -> Report:
    parts = _parts(message)
    if parts is None:
        return not_a_bounce(f"the message has more than {MAX_PARTS} parts")
    originals = [_original_headers(p) for p in parts]
    original = next((o for o in originals if o is not None), None)
    texts = [_text(p) for p in parts if p.get_content_type() in ("text/plain", "text/html")]
    text = "\n".join(texts)[:_MAX_TEXT]
    message_ids = _message_ids(message, original, text)
    status_parts = [
        p
        for p in parts
        if p.get_content_type() in ("message/delivery-status", "message/global-delivery-status")
    ]
    if status_parts:
        recipients = _dsn_recipients(status_parts[0])
        if not recipients:
            return not_a_bounce("a delivery status notification that reports no failure")
        report = Report("dsn", tuple(recipients), message_ids)
    else:
        report = _async_bounce(message, original, text, message_ids)
    if not report.is_bounce:
        return report
    return msgspec.structs.replace(report, addressed_to=_addressed_to(message))


def _addressed_to(message: email.message.Message) -> tuple[str, ...]:
    """Where the bounce itself was sent: a bounce goes to the envelope sender, so with VERP
    these name the event."""
    found: list[str] = []
    for header in ("Delivered-To", "X-Original-To", "To"):
        for value in (message.get_all(header) or [])[:5]:
            found.extend(m.group(0) for m in _VERP_CANDIDATE.finditer(_clean(value)))
    return tuple(dict.fromkeys(found))[:MAX_MESSAGE_IDS]


def verp_event_id(address: str, bounce_address: str) -> int | None:
    """The event id in ``local+<id>@domain`` when ``bounce_address`` is ``local@domain``."""
    local, _, domain = bounce_address.rpartition("@")
    if not local:
        return None
    match = _VERP_CANDIDATE.fullmatch(address.strip().strip("<>"))
    if match is None or match.group("local").lower() != local.lower():
        return None
    if match.group("domain").lower() != domain.lower():
        return None
    return ids.parse(match.group("id"))


def _parts(message: email.message.Message) -> list[email.message.Message] | None:
    """The leaf parts, in order, without descending into attached messages (an attached
    original is not part of the bounce); None if there are too many."""
    leaves: list[email.message.Message] = []
    stack = [message]
    seen = 0
    while stack:
        part = stack.pop()
        seen += 1
        if seen > MAX_PARTS:
            return None
        payload = part.get_payload()
        if part.get_content_maintype() == "multipart" and isinstance(payload, list):
            stack.extend(p for p in reversed(payload) if isinstance(p, email.message.Message))
        else:
            leaves.append(part)
    return leaves


def _clean(value: object, limit: int = _MAX_FIELD) -> str:
    """A header or text value on one line, without control characters (NUL included:
    PostgreSQL text cannot hold it), at most ``limit`` characters."""
    return " ".join(_STRAY.sub(" ", str(value)).split())[:limit]


def _text(part: email.message.Message) -> str:
    """A text part's content, whatever its charset claims."""
    data = part.get_payload(decode=True)
    if not isinstance(data, bytes):
        return ""
    charset = part.get_content_charset() or "utf-8"
    try:
        return data.decode(charset, errors="replace")
    except LookupError:  # an unknown charset
        return data.decode("utf-8", errors="replace")


def _original_headers(part: email.message.Message) -> email.message.Message | None:
    """The original message's headers, from a ``message/rfc822`` or
    ``text/rfc822-headers`` part."""
    kind = part.get_content_type()
    if kind in ("message/rfc822", "message/global"):
        payload = part.get_payload()
        if isinstance(payload, list) and payload:
            inner = payload[0]
            return inner if isinstance(inner, email.message.Message) else None
        if isinstance(payload, str):
            return _headers(payload)
    if kind in ("text/rfc822-headers", "message/global-headers"):
        return _headers(_text(part))
    return None


def _headers(text: str) -> email.message.Message:
    return email.parser.Parser(policy=email.policy.default).parsestr(text, headersonly=True)


def _message_ids(
    message: email.message.Message, original: email.message.Message | None, text: str
) -> tuple[str, ...]:
    found: list[str] = []
    if original is not None:
        found += _BRACKETED.findall(str(original.get("Message-ID", "")))
    for name in ("In-Reply-To", "References"):
        found += _BRACKETED.findall(str(message.get(name, "")))
    found += _ID_LINE.findall(text)
    found += _OURS_IN_TEXT.findall(text)
    return tuple(dict.fromkeys(found))[:MAX_MESSAGE_IDS]


def _status_blocks(part: email.message.Message) -> list[dict[str, str]]:
    """The field blocks of a delivery-status part, field names in lower case."""
    payload = part.get_payload()
    if isinstance(payload, list):  # the stdlib splits message/delivery-status into blocks
        blocks = [b for b in payload if isinstance(b, email.message.Message)]
    else:  # message/global-delivery-status (UTF-8), or an encoded body
        data = part.get_payload(decode=True)
        text = data.decode("utf-8", errors="replace") if isinstance(data, bytes) else str(payload)
        blocks = [_headers(b) for b in re.split(r"\r?\n[ \t]*\r?\n", text) if b.strip()]
    return [{k.lower(): _clean(v) for k, v in b.items()} for b in blocks[:MAX_PARTS]]


def _address(field: str) -> str:
    """``rfc822; <jack@example.org>`` → ``jack@example.org``."""
    value = field.rpartition(";")[2].strip().strip("<>").strip()
    return value if "@" in value and len(value) <= 320 else ""


def _dsn_recipients(part: email.message.Message) -> list[Recipient]:
    recipients = []
    for block in _status_blocks(part):
        if not {"final-recipient", "original-recipient", "action"} & block.keys():
            continue  # the per-message block
        diagnostic = block.get("diagnostic-code", "")
        status = status_of(block.get("status", ""), diagnostic)
        if status is None:
            continue
        action = block.get("action", "").lower().split(" ")[0]
        if not action:  # RFC 3464 requires it; guess from the status class
            action = "failed" if status[0] == "5" else "delayed"
        if action not in ("failed", "delayed"):
            continue  # delivered, relayed, expanded: not a bounce
        recipients.append(
            Recipient(
                address=_address(block.get("final-recipient", "")),
                original=_address(block.get("original-recipient", "")),
                action=action,
                status=status,
                diagnostic=diagnostic,
                kind=classify(status, action),
            )
        )
    return recipients


def _async_bounce(
    message: email.message.Message,
    original: email.message.Message | None,
    text: str,
    message_ids: tuple[str, ...],
) -> Report:
    failed = _clean(message.get("X-Failed-Recipients", ""))
    looks_like_one = (
        bool(failed)
        or bool(_BOUNCE_SENDER.search(_clean(message.get("From", ""))))
        or bool(_BOUNCE_SUBJECT.search(_clean(message.get("Subject", ""))))
    )
    if not looks_like_one:
        return not_a_bounce("neither a delivery status notification nor a bounce")
    line = _status_line(text)
    if line is None:
        return not_a_bounce("a bounce-like message without an SMTP status")
    status, diagnostic = line
    address = _address(failed.split(",")[0])
    if not address and original is not None:
        to = _BRACKETED.findall(str(original.get("To", "")))
        address = _address(to[0] if to else _clean(original.get("To", "")))
    recipient = Recipient(address, "", "failed", status, diagnostic, classify(status))
    return Report("async", (recipient,), message_ids)


def _status_line(text: str) -> tuple[str, str] | None:
    """The SMTP status in a bounce's text and the line saying it (joined with the next one,
    as MTAs wrap long replies)."""
    lines = text.splitlines()
    for pattern in (_REPLY_AND_ENHANCED, _ENHANCED, _REPLY):
        for n, line in enumerate(lines):
            if pattern.search(line) is None:
                continue
            said = _clean(line + " " + (lines[n + 1] if n + 1 < len(lines) else ""))
            status = status_of("", said)
            if status is not None:
                return status, said
    return None


# -- acting on a report ---------------------------------------------------------------------


class Handled(msgspec.Struct, frozen=True):
    """What :func:`process` found and did. ``action``: ``quarantined`` (the address),
    ``counted`` (a soft bounce below the limit, or a delayed warning kept), ``duplicate``
    (this bounce was already kept), ``none`` (not a bounce, or no delivery of ours)."""

    report: Report
    event_id: int | None = None
    message_id: str | None = None
    address: str | None = None
    recipient: Recipient | None = None
    action: str = "none"
    soft_bounces: int | None = None
    quarantine: model.QuarantineEntry | None = None


async def process(
    db: Database, settings: Settings, raw: bytes, envelope_to: Sequence[str] = ()
) -> Handled:
    """Parse ``raw`` and act on it (see the module docstring). ``envelope_to`` are the
    addresses the bounce was delivered to (the listener's RCPT TO), read for VERP."""
    report = parse(raw, max_bytes=settings.bounce_max_bytes)
    if not report.is_bounce:
        return Handled(report)
    async with db.transaction() as conn:
        sent = None
        for message_id in report.message_ids:
            ours = _OURS.fullmatch(message_id)
            event_id = ids.parse(ours.group(1)) if ours else None
            if event_id is not None:
                sent = await store.find_delivery(conn, event_id, message_id)
                if sent is not None:
                    break
        if sent is None and settings.bounce_address:
            for address in (*envelope_to, *report.addressed_to):
                event_id = verp_event_id(address, settings.bounce_address)
                if event_id is not None:
                    sent = await store.find_delivery(conn, event_id)
                    if sent is not None:
                        break
        if sent is None:
            return Handled(report)
        recipient = _pick(report.recipients, sent.address)
        now = clock.now_us()
        found: dict[str, Any] = {
            "report": report,
            "event_id": sent.event_id,
            "message_id": sent.message_id,
            "address": sent.address,
            "recipient": recipient,
        }
        bounce = model.Bounce(
            event_id=sent.event_id,
            channel=sent.channel,
            address=sent.address,
            message_id=sent.message_id,
            kind=recipient.kind,
            status=recipient.status,
            diagnostic=recipient.diagnostic,
            received_at=now,
        )
        if not await store.add(conn, bounce):
            return Handled(**found, action="duplicate")
        said = f"{recipient.kind} bounce {recipient.status}: {recipient.diagnostic}".strip()
        await store.log_delivery(conn, sent, said, now)
        entry = None
        soft = None
        if recipient.kind is model.BounceKind.HARD:
            entry = model.QuarantineEntry(
                sent.channel, sent.address, said, "bounce", now, None, sent.event_id
            )
        elif recipient.kind is model.BounceKind.SOFT:
            since = now - int(settings.soft_bounce_window * 1e6)
            soft = await store.count_soft(conn, sent.channel, sent.address, since)
            already = await quarantine_store.find_quarantined(
                conn, sent.channel, [sent.address], now
            )
            if soft >= settings.soft_bounce_limit and not already:
                until = now + int(settings.soft_bounce_quarantine * 1e6)
                reason = f"{soft} soft bounces in {settings.soft_bounce_window:g} s; last: {said}"
                entry = model.QuarantineEntry(
                    sent.channel, sent.address, reason, "bounce", now, until, sent.event_id
                )
        if entry is not None:
            await quarantine_store.add(conn, entry)
    action = "quarantined" if entry is not None else "counted"
    log.info(
        "event %s: %s bounce %s for %s: %s",
        sent.event_id,
        recipient.kind,
        recipient.status,
        sent.address,
        action,
        extra={"event_id": str(sent.event_id)},
    )
    return Handled(**found, action=action, soft_bounces=soft, quarantine=entry)


_SEVERITY = {model.BounceKind.HARD: 0, model.BounceKind.SOFT: 1, model.BounceKind.DELAYED: 2}


def _pick(recipients: tuple[Recipient, ...], address: str) -> Recipient:
    """The recipient a report says the delivery to ``address`` had: the one naming it, else
    the worst (our messages have one recipient; forwarding may have renamed it)."""
    wanted = address.lower()
    for r in recipients:
        if wanted in (r.address.lower(), r.original.lower()):
            return r
    return min(recipients, key=lambda r: _SEVERITY[r.kind])
