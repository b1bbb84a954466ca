"""Reading bounces: DSNs as Postfix, Exim, Gmail and Microsoft write them, hard and soft
statuses, and hostile or broken input, which gives "not a bounce" and never an exception."""

from __future__ import annotations

import pathlib

import pytest

from tidings import bounces, model

DATA = pathlib.Path(__file__).parent.parent / "data" / "bounces"
OURS = "7231851201230848.tidings@example.com"
HARD, SOFT, DELAYED = model.BounceKind.HARD, model.BounceKind.SOFT, model.BounceKind.DELAYED


def sample(name: str) -> bytes:
    return (DATA / name).read_bytes()


@pytest.mark.parametrize(
    ("name", "form", "status", "kind", "diagnostic"),
    [
        ("postfix_hard.eml", "dsn", "5.1.1", HARD, "User unknown in virtual mailbox table"),
        ("postfix_delayed.eml", "dsn", "4.4.1", DELAYED, "Connection timed out"),
        ("postfix_expired.eml", "dsn", "4.2.2", SOFT, "452 4.2.2 Mailbox over quota"),
        ("exim_async.eml", "async", "5.1.1", HARD, "550 5.1.1 <jack@example.org>"),
        ("gmail_over_quota.eml", "dsn", "5.2.2", SOFT, "inbox is out of storage space"),
        ("microsoft_hard.eml", "dsn", "5.1.10", HARD, "RESOLVER.ADR.RecipientNotFound"),
    ],
)
def test_bounces_from_common_mtas(
    name: str, form: str, status: str, kind: model.BounceKind, diagnostic: str
) -> None:
    report = bounces.parse(sample(name))
    assert report.is_bounce
    assert report.format == form
    assert report.message_ids[0] == OURS
    [recipient] = report.recipients
    assert (recipient.address, recipient.status, recipient.kind) == (
        "jack@example.org",
        status,
        kind,
    )
    assert diagnostic in recipient.diagnostic
    assert "\n" not in recipient.diagnostic  # folded lines are joined


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("delivered_dsn.eml", "reports no failure"),
        ("out_of_office.eml", "neither a delivery status notification nor a bounce"),
    ],
)
def test_messages_that_are_not_bounces(name: str, reason: str) -> None:
    report = bounces.parse(sample(name))
    assert not report.is_bounce
    assert reason in report.reason
    assert report.recipients == ()


@pytest.mark.parametrize(
    ("status", "action", "kind"),
    [
        ("5.1.1", "failed", HARD),  # no such user
        ("5.1.10", "failed", HARD),  # Microsoft: recipient not found
        ("5.2.1", "failed", HARD),  # mailbox disabled
        ("5.4.4", "failed", HARD),  # unable to route
        ("5.0.0", "failed", HARD),
        ("5.2.2", "failed", SOFT),  # mailbox full
        ("5.3.4", "failed", SOFT),  # message too big
        ("5.7.1", "failed", SOFT),  # policy: spam, not authorised
        ("4.2.2", "failed", SOFT),
        ("4.4.7", "failed", SOFT),  # gave up retrying
        ("4.4.1", "delayed", DELAYED),
        ("5.1.1", "delayed", DELAYED),
    ],
)
def test_classify(status: str, action: str, kind: model.BounceKind) -> None:
    assert bounces.classify(status, action) is kind


@pytest.mark.parametrize(
    ("status", "diagnostic", "found"),
    [
        ("5.1.1", "smtp; 550 5.1.1 no such user", "5.1.1"),
        ("5.0.0", "smtp; 550-5.1.1 The email account does not exist", "5.1.1"),  # more precise
        ("5.0.0", "smtp; 450 4.2.1 try later", "5.0.0"),  # not the same class: kept
        ("", "smtp; 550 no such user here", "5.0.0"),  # a bare reply code
        ("", "smtp; 452 4.2.2 over quota", "4.2.2"),
        ("5.1.1 (bad destination mailbox)", "", "5.1.1"),
        ("2.0.0", "smtp; 250 2.0.0 Ok", None),
        ("", "connected to 10.5.1.1 port 25", None),  # an address, not a status
        ("", "", None),
    ],
)
def test_status_of(status: str, diagnostic: str, found: str | None) -> None:
    assert bounces.status_of(status, diagnostic) == found


# -- malformed and hostile input ----------------------------------------------------------------


def dsn(per_recipient: str, *, charset: str = "us-ascii", extra: str = "") -> bytes:
    """A minimal DSN for our message with ``per_recipient`` as its recipient block."""
    return (
        "From: MAILER-DAEMON@mx.example\r\n"
        "Subject: Undelivered Mail Returned to Sender\r\n"
        f"{extra}"
        'Content-Type: multipart/report; report-type=delivery-status; boundary="b"\r\n'
        "\r\n--b\r\n"
        f"Content-Type: text/plain; charset={charset}\r\n\r\n"
        "it failed\r\n"
        "--b\r\nContent-Type: message/delivery-status\r\n\r\n"
        "Reporting-MTA: dns; mx.example\r\n\r\n"
        f"{per_recipient}\r\n"
        "--b\r\nContent-Type: text/rfc822-headers\r\n\r\n"
        f"Message-ID: <{OURS}>\r\n"
        "--b--\r\n"
    ).encode("utf-8", "surrogateescape")


def test_a_minimal_dsn_parses() -> None:
    report = bounces.parse(
        dsn("Final-Recipient: rfc822; a@example.org\r\nAction: failed\r\nStatus: 5.1.1\r\n")
    )
    assert report.format == "dsn"
    assert report.recipients[0].address == "a@example.org"
    assert report.message_ids == (OURS,)


def test_a_dsn_without_action_is_read_from_its_status() -> None:
    report = bounces.parse(dsn("Final-Recipient: rfc822; a@example.org\r\nStatus: 5.1.1\r\n"))
    assert report.recipients[0].action == "failed"


@pytest.mark.parametrize(
    "raw",
    [
        b"",
        b"   \r\n\r\n",
        b"\x00\xff\xfe garbage \x00" * 100,
        b"Subject: hello\r\n\r\nHi Jack, your order shipped.\r\n",
        b"From: MAILER-DAEMON@mx.example\r\nSubject: failure notice\r\n\r\nno status here\r\n",
        # multipart/report without any part
        b'Content-Type: multipart/report; report-type=delivery-status; boundary="b"\r\n\r\n',
        b'Content-Type: multipart/report; report-type=delivery-status; boundary="b"\r\n\r\n'
        b"--b--\r\n",
        # a delivery-status part without recipients, or with nonsense in it
        dsn(""),
        dsn("Final-Recipient: rfc822; a@example.org\r\nAction: failed\r\nStatus: banana\r\n"),
        dsn("\x00\x01\x02: \xff\xfe\r\n: :\r\n"),
        # headers only, no body; a header without a value; a line without a colon
        b"From: MAILER-DAEMON@mx.example",
        b"Content-Type:\r\nX\r\n\r\n550 5.1.1",
        b"Content-Type: message/delivery-status\r\n\r\n",
    ],
    ids=lambda raw: repr(raw[:30]),
)
def test_broken_input_is_not_a_bounce(raw: bytes) -> None:
    report = bounces.parse(raw)
    assert not report.is_bounce
    assert report.reason


def test_huge_input_is_refused_unread() -> None:
    raw = dsn("Final-Recipient: rfc822; a@example.org\r\nAction: failed\r\nStatus: 5.1.1\r\n")
    report = bounces.parse(raw + b"x" * 2_000_000)
    assert not report.is_bounce
    assert "larger than" in report.reason
    assert bounces.parse(raw, max_bytes=100).reason.startswith("the message is larger")


def test_too_many_parts_is_not_a_bounce() -> None:
    parts = "".join("--b\r\nContent-Type: text/plain\r\n\r\nx\r\n" for _ in range(500))
    raw = ('Content-Type: multipart/mixed; boundary="b"\r\n\r\n' + parts + "--b--\r\n").encode()
    report = bounces.parse(raw)
    assert not report.is_bounce
    assert "parts" in report.reason


def test_deep_nesting_is_not_a_bounce_and_does_not_raise() -> None:
    depth = 3000
    head = "".join(
        f'Content-Type: multipart/mixed; boundary="b{n}"\r\n\r\n--b{n}\r\n' for n in range(depth)
    )
    tail = "".join(f"\r\n--b{n}--" for n in reversed(range(depth)))
    report = bounces.parse((head + "Content-Type: text/plain\r\n\r\n550 5.1.1" + tail).encode())
    assert not report.is_bounce


@pytest.mark.parametrize("charset", ["x-no-such-charset", "utf-7", "utf-16", "iso-2022-jp"])
def test_wrong_charsets_are_read_anyway(charset: str) -> None:
    raw = dsn(
        "Final-Recipient: rfc822; a@example.org\r\nAction: failed\r\nStatus: 5.1.1\r\n",
        charset=charset,
    )
    report = bounces.parse(raw.replace(b"it failed", b"\xff\xfe\x80 caf\xe9"))
    assert report.format == "dsn"
    assert report.recipients[0].kind is HARD


def test_control_characters_and_nul_are_dropped_from_fields() -> None:
    raw = dsn(
        "Final-Recipient: rfc822; a@example.org\r\nAction: failed\r\nStatus: 5.1.1\r\n"
        "Diagnostic-Code: smtp; 550 5.1.1 bad\x00 \x1b[31mred\r\n"
    )
    [recipient] = bounces.parse(raw).recipients
    assert "\x00" not in recipient.diagnostic
    assert "\x1b" not in recipient.diagnostic
    assert recipient.diagnostic == "smtp; 550 5.1.1 bad [31mred"


def test_an_overlong_diagnostic_is_cut() -> None:
    raw = dsn(
        "Final-Recipient: rfc822; a@example.org\r\nAction: failed\r\nStatus: 5.1.1\r\n"
        "Diagnostic-Code: smtp; 550 5.1.1 " + "x" * 50_000 + "\r\n"
    )
    [recipient] = bounces.parse(raw).recipients
    assert len(recipient.diagnostic) <= 1000


def test_message_ids_come_from_every_place_once_each() -> None:
    raw = (
        b"From: Mail Delivery System <MAILER-DAEMON@mx.example>\r\n"
        b"Subject: failure notice\r\n"
        b"In-Reply-To: <1.tidings@example.com>\r\n"
        b"References: <other@example.net> <1.tidings@example.com>\r\n\r\n"
        b"Sorry. <jack@example.org>:\r\n550 5.1.1 no mailbox here by that name\r\n"
        b"--- Below this line is a copy of the message.\r\n"
        b"Message-ID: <2.tidings@example.com>\r\n"
    )
    report = bounces.parse(raw)
    assert report.format == "async"
    assert report.message_ids == (
        "1.tidings@example.com",
        "other@example.net",
        "2.tidings@example.com",
    )
    assert report.recipients[0].status == "5.1.1"
    assert "no mailbox here" in report.recipients[0].diagnostic


@pytest.mark.parametrize(
    ("address", "expected"),
    [
        ("bounces+7231851201230848@mail.example.com", 7231851201230848),
        ("<Bounces+12@MAIL.example.com>", 12),
        ("bounces+12@other.example.com", None),
        ("news+12@mail.example.com", None),
        ("bounces@mail.example.com", None),
        ("bounces+abc@mail.example.com", None),
        ("bounces+99999999999999999999@mail.example.com", None),
    ],
)
def test_verp_event_id(address: str, expected: int | None) -> None:
    assert bounces.verp_event_id(address, "bounces@mail.example.com") == expected


def test_a_bounce_reports_where_it_was_sent() -> None:
    raw = (
        b"From: MAILER-DAEMON@relay.example\r\nTo: <bounces+42@mail.example.com>\r\n"
        b"Delivered-To: bounces+42@mail.example.com\r\n"
        b"Subject: Undelivered Mail Returned to Sender\r\n\r\n"
        b"550 5.1.1 <jack@example.org>: User unknown\r\n"
    )
    report = bounces.parse(raw)
    assert report.is_bounce
    assert report.addressed_to == ("bounces+42@mail.example.com",)
