"""The SMTP transport against real servers over real sockets on 127.0.0.1."""

from __future__ import annotations

import asyncio
import contextlib
import email
import email.policy
import os
import pathlib
import pwd
import shutil
import socket
import ssl
import subprocess
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
import trustme

from tests import smtp_servers
from tests.smtp_servers import Credentials, Recorder, ScriptServer
from tidings import model
from tidings.channels.email import smtp

DELIVERED = model.OutcomeKind.DELIVERED
RETRY = model.OutcomeKind.RETRY
FAILED = model.OutcomeKind.FAILED


@contextlib.asynccontextmanager
async def client(port: int, **options: Any) -> AsyncIterator[smtp.SMTPTransport]:
    """A transport for 127.0.0.1:``port``; plain text and quick timeouts unless told."""
    settings: dict[str, Any] = {"tls": "none", "timeout": 5.0, "helo_name": "client.example"}
    transport = smtp.SMTPTransport(smtp.SMTPConfig("127.0.0.1", port, **(settings | options)))
    try:
        yield transport
    finally:
        await transport.aclose()


def message(n: int, body: str = "") -> bytes:
    return (f"Subject: message {n}\r\n\r\n{body or f'Body of message {n}.'}\r\n").encode()


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture(scope="module")
def server_tls(ca: trustme.CA) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1", "localhost").configure_cert(context)
    return context


@pytest.fixture
def ca_file(ca: trustme.CA, tmp_path: pathlib.Path) -> str:
    path = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(path))
    return str(path)


# -- what arrives ------------------------------------------------------------------------


TRICKY = [
    b".starts with a dot\r\n..two dots\r\n.\r\nmid . dot\r\n.\r\n\r\n.. \r\nlast\r\n",
    b"no final line end\r\n.",
    b"a lone dot line\r\n.\r\n",
    b"x" * 900 + b"\r\n." + b"y" * 90,
    b"",
]


@pytest.mark.parametrize("pipelining", [True, False], ids=["pipelined", "lockstep"])
async def test_delivers_the_exact_bytes(pipelining: bool) -> None:
    handler = Recorder(pipelining=pipelining)
    async with smtp_servers.aiosmtpd_server(handler) as server, client(server.port) as t:
        outcomes = [await t.send_raw("from@example.com", "to@example.org", d) for d in TRICKY]
    assert [o.kind for o in outcomes] == [DELIVERED] * len(TRICKY)
    assert outcomes[0].reply == "250 2.0.0 Ok: queued as Q1"
    assert outcomes[0].provider_id == "Q1"
    # The transport ends the data with a line end where it lacks one (it belongs to the
    # message), and nothing else changes.
    expected = [d if d.endswith(b"\r\n") or not d else d + b"\r\n" for d in TRICKY]
    assert [r.data for r in handler.received] == expected
    assert {(r.mail_from, tuple(r.rcpt_tos)) for r in handler.received} == {
        ("from@example.com", ("to@example.org",))
    }
    assert handler.received[0].mail_options == [f"SIZE={len(expected[0])}"]
    assert server.connections == 1


async def test_bare_line_ends_cannot_end_the_data_early() -> None:
    handler = Recorder()
    smuggled = b"Subject: x\r\n\r\nhello\n.\r\nMAIL FROM:<evil@example.com>\r\nbye\r.\r\n"
    async with smtp_servers.aiosmtpd_server(handler) as server, client(server.port) as t:
        outcome = await t.send_raw("a@example.com", "b@example.com", smuggled)
    assert outcome.kind == DELIVERED
    assert [r.data for r in handler.received] == [
        b"Subject: x\r\n\r\nhello\r\n.\r\nMAIL FROM:<evil@example.com>\r\nbye\r\n.\r\n"
    ]


async def test_send_builds_the_message_with_mime() -> None:
    handler = Recorder(pipelining=True)
    letter = model.EmailMessage(
        event_id=7,
        message_id="<7.abc@tidings.example>",
        sender=model.EmailAddress("news@example.com", "News"),
        to=model.EmailAddress("ann@example.org", "Ann"),
        subject="Hello Ann",
        html="<p>Hi</p>",
        text="Hi\n.\nbye",
    )
    async with smtp_servers.aiosmtpd_server(handler) as server, client(server.port) as t:
        outcome = await t.send(letter)
    assert outcome.kind == DELIVERED
    [received] = handler.received
    assert (received.mail_from, received.rcpt_tos) == ("news@example.com", ["ann@example.org"])
    parsed = email.message_from_bytes(received.data, policy=email.policy.default)
    assert parsed["Subject"] == "Hello Ann"
    assert parsed["Message-ID"] == "<7.abc@tidings.example>"
    text = parsed.get_body(("plain",))
    assert text is not None
    assert text.get_content().replace("\r\n", "\n").rstrip("\n") == "Hi\n.\nbye"


# -- the pool ------------------------------------------------------------------------------


async def test_many_sends_share_a_bounded_pool() -> None:
    handler = Recorder()
    async with (
        smtp_servers.aiosmtpd_server(handler) as server,
        client(server.port, pool_size=3) as t,
    ):
        outcomes = await asyncio.gather(
            *(t.send_raw("a@example.com", f"r{n}@example.org", message(n)) for n in range(60))
        )
        stats = t.stats()
    assert {o.kind for o in outcomes} == {DELIVERED}
    assert sorted(r.rcpt_tos[0] for r in handler.received) == sorted(
        f"r{n}@example.org" for n in range(60)
    )
    assert 1 <= server.connections <= 3
    assert stats["open_connections"] <= 3
    assert stats["queued_messages"] == 0


async def test_idle_connections_say_quit() -> None:
    handler = Recorder()
    async with (
        smtp_servers.aiosmtpd_server(handler) as server,
        client(server.port, idle_timeout=0.1) as t,
    ):
        assert (await t.send_raw("a@example.com", "b@example.com", message(1))).kind == DELIVERED
        for _ in range(250):
            if not t.stats()["open_connections"]:
                break
            await asyncio.sleep(0.02)
        assert t.stats()["open_connections"] == 0
        assert handler.quits == 1
        # A later message opens a new connection.
        assert (await t.send_raw("a@example.com", "b@example.com", message(2))).kind == DELIVERED
    assert server.connections == 2


async def test_aclose_finishes_queued_messages_then_quits() -> None:
    handler = Recorder(pipelining=True)
    async with smtp_servers.aiosmtpd_server(handler) as server:
        transport = smtp.SMTPTransport(smtp.SMTPConfig("127.0.0.1", server.port, tls="none"))
        sends = [
            asyncio.create_task(transport.send_raw("a@example.com", "b@example.com", message(n)))
            for n in range(30)
        ]
        await asyncio.sleep(0)  # the sends are queued
        await transport.aclose()
        outcomes = [task.result() for task in sends]
        late = await transport.send_raw("a@example.com", "b@example.com", message(99))
    assert {o.kind for o in outcomes} == {DELIVERED}
    assert len(handler.received) == 30
    assert handler.quits == server.connections
    assert transport.stats() == {"open_connections": 0, "busy_connections": 0, "queued_messages": 0}
    assert late.kind == RETRY


# -- TLS and AUTH --------------------------------------------------------------------------


async def test_starttls_with_a_verified_certificate(
    server_tls: ssl.SSLContext, ca_file: str
) -> None:
    handler = Recorder()
    async with (
        smtp_servers.aiosmtpd_server(handler, tls_context=server_tls) as server,
        client(server.port, tls="starttls", ca_file=ca_file) as t,
    ):
        outcome = await t.send_raw("a@example.com", "b@example.com", message(1))
    assert outcome.kind == DELIVERED
    assert handler.received[0].tls


@pytest.mark.parametrize("mode", ["starttls", "opportunistic"])
async def test_an_untrusted_certificate_is_a_retry(server_tls: ssl.SSLContext, mode: str) -> None:
    handler = Recorder()
    async with (
        smtp_servers.aiosmtpd_server(handler, tls_context=server_tls) as server,
        client(server.port, tls=mode) as t,  # the system's CAs do not know trustme's
    ):
        outcome = await t.send_raw("a@example.com", "b@example.com", message(1))
    assert outcome.kind == RETRY
    assert "TLS" in outcome.reply
    assert handler.received == []


async def test_tls_verify_off_accepts_any_certificate(server_tls: ssl.SSLContext) -> None:
    handler = Recorder()
    async with (
        smtp_servers.aiosmtpd_server(handler, tls_context=server_tls) as server,
        client(server.port, tls="starttls", tls_verify=False) as t,
    ):
        outcome = await t.send_raw("a@example.com", "b@example.com", message(1))
    assert outcome.kind == DELIVERED
    assert handler.received[0].tls


async def test_opportunistic_tls(server_tls: ssl.SSLContext, ca_file: str) -> None:
    with_tls, without = Recorder(), Recorder()
    async with (
        smtp_servers.aiosmtpd_server(with_tls, tls_context=server_tls) as offered,
        smtp_servers.aiosmtpd_server(without) as plain,
        client(offered.port, tls="opportunistic", ca_file=ca_file) as t1,
        client(plain.port, tls="opportunistic", ca_file=ca_file) as t2,
    ):
        assert (await t1.send_raw("a@example.com", "b@example.com", message(1))).kind == DELIVERED
        assert (await t2.send_raw("a@example.com", "b@example.com", message(2))).kind == DELIVERED
    assert with_tls.received[0].tls
    assert not without.received[0].tls


async def test_required_starttls_not_offered_is_a_retry() -> None:
    handler = Recorder()
    async with (
        smtp_servers.aiosmtpd_server(handler) as server,
        client(server.port, tls="starttls") as t,
    ):
        outcome = await t.send_raw("a@example.com", "b@example.com", message(1))
    assert outcome.kind == RETRY
    assert "STARTTLS" in outcome.reply
    assert handler.received == []


async def test_implicit_tls(server_tls: ssl.SSLContext, ca_file: str) -> None:
    handler = Recorder(pipelining=True)
    async with (
        smtp_servers.aiosmtpd_server(handler, implicit_tls=server_tls) as server,
        client(server.port, tls="implicit", ca_file=ca_file) as t,
    ):
        outcomes = await asyncio.gather(
            *(t.send_raw("a@example.com", "b@example.com", message(n)) for n in range(5))
        )
    assert {o.kind for o in outcomes} == {DELIVERED}
    assert all(r.tls for r in handler.received)


# aiosmtpd warns when it is told to take AUTH without TLS, as these loopback tests do.
no_tls_warning = pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS")


@no_tls_warning
@pytest.mark.parametrize(("excluded", "used"), [([], "PLAIN"), (["PLAIN"], "LOGIN")])
async def test_auth(excluded: list[str], used: str) -> None:
    handler, credentials = Recorder(), Credentials("ann", "s3cret")
    async with (
        smtp_servers.aiosmtpd_server(
            handler,
            authenticator=credentials,
            auth_required=True,
            auth_require_tls=False,
            auth_exclude_mechanism=excluded,
        ) as server,
        client(server.port, username="ann", password="s3cret") as t,
    ):
        outcome = await t.send_raw("a@example.com", "b@example.com", message(1))
    assert outcome.kind == DELIVERED
    assert credentials.mechanisms == [used]


async def test_auth_after_starttls(server_tls: ssl.SSLContext, ca_file: str) -> None:
    handler, credentials = Recorder(), Credentials("ann", "pw")
    async with (
        smtp_servers.aiosmtpd_server(
            handler, tls_context=server_tls, authenticator=credentials, auth_required=True
        ) as server,
        client(server.port, tls="starttls", ca_file=ca_file, username="ann", password="pw") as t,
    ):
        outcome = await t.send_raw("a@example.com", "b@example.com", message(1))
    assert outcome.kind == DELIVERED
    assert credentials.mechanisms == ["PLAIN"]


@no_tls_warning
async def test_a_refused_login_is_a_retry_for_every_queued_message() -> None:
    handler, credentials = Recorder(), Credentials("ann", "s3cret")
    async with (
        smtp_servers.aiosmtpd_server(
            handler, authenticator=credentials, auth_required=True, auth_require_tls=False
        ) as server,
        client(server.port, username="ann", password="wrong") as t,
    ):
        outcomes = await asyncio.gather(
            *(t.send_raw("a@example.com", "b@example.com", message(n)) for n in range(4))
        )
    assert {o.kind for o in outcomes} == {RETRY}
    assert all(o.reply.endswith("535 5.7.8 Authentication credentials invalid") for o in outcomes)
    assert handler.received == []


def _outside_address() -> str:
    """An address of this host that is not loopback, if there is one to listen on."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect(("192.0.2.1", 9))  # no packet is sent: this only picks a route
            address = str(probe.getsockname()[0])
        except OSError:
            return ""
    return "" if address.startswith("127.") or address == "0.0.0.0" else address


async def test_no_password_over_plain_text_to_another_host() -> None:
    address = _outside_address()
    if not address:
        pytest.skip("this host has no non-loopback address")
    handler, credentials = Recorder(), Credentials("ann", "s3cret")
    async with smtp_servers.aiosmtpd_server(
        handler, host=address, authenticator=credentials, auth_require_tls=False
    ) as server:
        config = smtp.SMTPConfig(
            address, server.port, tls="opportunistic", username="ann", password="s3cret"
        )
        transport = smtp.SMTPTransport(config)
        outcome = await transport.send_raw("a@example.com", "b@example.com", message(1))
        await transport.aclose()
    assert outcome.kind == RETRY
    assert "unencrypted" in outcome.reply
    assert credentials.mechanisms == []


# -- failures --------------------------------------------------------------------------


async def test_a_refused_connection_is_a_retry() -> None:
    async with client(closed_port()) as t:
        outcome = await t.send_raw("a@example.com", "b@example.com", message(1))
    assert outcome.kind == RETRY
    assert not outcome.quarantine


async def test_server_down_then_up() -> None:
    port = closed_port()
    handler = Recorder()
    async with client(port) as t:
        down = await t.send_raw("a@example.com", "b@example.com", message(1))
        async with smtp_servers.aiosmtpd_server(handler, port=port):
            up = await t.send_raw("a@example.com", "b@example.com", message(2))
    assert (down.kind, up.kind) == (RETRY, DELIVERED)
    assert len(handler.received) == 1


def _refuse(reply: str, only: str = "bad@example.org") -> smtp_servers.Refuser:
    return lambda address: reply if address == only else None


REFUSALS = [
    # stage, reply, kind, quarantine
    ("mail", "451 4.3.0 Try again later", RETRY, False),
    ("mail", "550 5.1.1 Sender unknown", FAILED, False),  # 5.1.1 for the sender: no quarantine
    ("rcpt", "450 4.2.1 Mailbox busy", RETRY, False),
    ("rcpt", "550 5.1.1 No such user", FAILED, True),
    ("rcpt", "553 5.1.3 Bad address syntax", FAILED, True),
    ("rcpt", "550 5.1.0 Address rejected", FAILED, False),
    ("rcpt", "550 5.7.1 Relaying denied", FAILED, False),
    ("rcpt", "550 No such user here", FAILED, False),  # no enhanced code: no quarantine
    ("data", "552 5.3.4 Message too big", FAILED, False),
    ("data", "451 4.7.1 Greylisted", RETRY, False),
]


@pytest.mark.parametrize("pipelining", [True, False], ids=["pipelined", "lockstep"])
@pytest.mark.parametrize(("stage", "reply", "kind", "quarantine"), REFUSALS)
async def test_refusals_become_outcomes(
    pipelining: bool, stage: str, reply: str, kind: model.OutcomeKind, quarantine: bool
) -> None:
    refusers: dict[str, Any] = {
        "mail": _refuse(reply, "bad@example.com") if stage == "mail" else None,
        "rcpt": _refuse(reply) if stage == "rcpt" else None,
        "data": (lambda data: reply if b"refuse me" in data else None) if stage == "data" else None,
    }
    handler = Recorder(pipelining=pipelining, **refusers)
    bad_sender = "bad@example.com" if stage == "mail" else "a@example.com"
    async with smtp_servers.aiosmtpd_server(handler) as server, client(server.port) as t:
        refused = await t.send_raw(bad_sender, "bad@example.org", message(1, "refuse me"))
        after = await t.send_raw("a@example.com", "b@example.org", message(2))
    assert (refused.kind, refused.quarantine, refused.reply) == (kind, quarantine, reply)
    # The connection carries on (after RSET) with the next message.
    assert after.kind == DELIVERED
    assert [r.rcpt_tos for r in handler.received] == [["b@example.org"]]
    assert server.connections == 1


async def test_invalid_addresses_fail_without_a_connection() -> None:
    async with ScriptServer() as server, client(server.port) as t:
        injected = await t.send_raw("a@example.com", "b@x.org>\r\nRSET", message(1))
        unicode = await t.send_raw("a@example.com", "ünï@example.org", message(2))
        empty = await t.send_raw("a@example.com", "", message(3))
    assert {injected.kind, unicode.kind, empty.kind} == {FAILED}
    assert server.connections == 0


async def test_size_limit_is_checked_before_sending() -> None:
    handler = Recorder()
    async with (
        smtp_servers.aiosmtpd_server(handler, data_size_limit=1000) as server,
        client(server.port) as t,
    ):
        big = await t.send_raw("a@example.com", "b@example.com", b"x" * 1500)
        small = await t.send_raw("a@example.com", "b@example.com", b"x" * 500)
    assert (big.kind, big.quarantine) == (FAILED, False)
    assert "SIZE" in big.reply
    assert small.kind == DELIVERED
    assert [len(r.data) for r in handler.received] == [502]


async def test_421_closes_the_connection_and_unsent_messages_move_on() -> None:
    # The server takes two messages per connection, then answers MAIL with 421 and hangs
    # up: the message it refused had not been sent, so it goes over a new connection.
    async with ScriptServer(max_messages=2) as server, client(server.port, pool_size=1) as t:
        outcomes = await asyncio.gather(
            *(t.send_raw("a@example.com", f"r{n}@example.org", message(n)) for n in range(5))
        )
    assert {o.kind for o in outcomes} == {DELIVERED}
    assert [r.rcpt_tos[0] for r in server.received] == [f"r{n}@example.org" for n in range(5)]
    assert server.connections == 3


async def test_421_every_time_is_a_retry() -> None:
    refuse = _refuse("421 4.3.2 Shutting down")
    async with ScriptServer(rcpt=refuse) as server, client(server.port) as t:
        outcome = await t.send_raw("a@example.com", "bad@example.org", message(1))
    assert (outcome.kind, outcome.reply) == (RETRY, "421 4.3.2 Shutting down")
    assert server.connections == 2  # tried once more on a fresh connection, then gave up


async def test_connection_dropped_during_data_is_a_retry() -> None:
    async with ScriptServer(drop_in_data=True) as server, client(server.port) as t:
        outcome = await t.send_raw("a@example.com", "b@example.org", message(1))
    assert outcome.kind == RETRY
    # The body had gone out, so the message is not tried again at once: the server may
    # have taken it.
    assert server.connections == 1


async def test_a_refused_session_is_a_retry() -> None:
    async with (
        ScriptServer(max_connections=1) as server,
        client(server.port) as busy,
        client(server.port) as turned_away,
    ):
        first = await busy.send_raw("a@example.com", "b@example.org", message(1))
        second = await turned_away.send_raw("a@example.com", "b@example.org", message(2))
    assert (first.kind, second.kind) == (DELIVERED, RETRY)
    assert second.reply == "421 4.7.0 script.example Too many connections"


async def test_a_server_capping_connections_gets_the_queue_over_those_it_allows() -> None:
    async with (
        ScriptServer(max_connections=2) as server,
        client(server.port, pool_size=4) as t,
    ):
        outcomes = await asyncio.gather(
            *(t.send_raw("a@example.com", f"r{n}@example.org", message(n)) for n in range(40))
        )
    assert {o.kind for o in outcomes} == {DELIVERED}
    assert len(server.received) == 40
    assert server.connections >= 4  # two of the first four were turned away


async def test_helo_when_ehlo_is_refused() -> None:
    async with ScriptServer(esmtp=False) as server, client(server.port) as t:
        outcome = await t.send_raw("a@example.com", "b@example.org", message(1))
    assert outcome.kind == DELIVERED
    assert [c.split()[0] for c in server.commands[:3]] == [b"EHLO", b"HELO", b"MAIL"]


async def test_a_multi_line_refusal() -> None:
    reply = (
        "550-5.1.1 The email account that you tried to reach does not exist.\r\n"
        "550-5.1.1 Please try double-checking the address.\r\n"
        "550 5.1.1 See https://support.example/NoSuchUser"
    )
    async with ScriptServer(rcpt=_refuse(reply)) as server, client(server.port) as t:
        outcome = await t.send_raw("a@example.com", "bad@example.org", message(1))
    assert (outcome.kind, outcome.quarantine) == (FAILED, True)
    assert outcome.reply == (
        "550 5.1.1 The email account that you tried to reach does not exist. "
        "Please try double-checking the address. See https://support.example/NoSuchUser"
    )


@pytest.mark.parametrize("mute", [b"EHLO", b"DATA", b"."])
async def test_a_silent_server_times_out(mute: bytes) -> None:
    async with ScriptServer(mute=mute) as server, client(server.port, timeout=0.3) as t:
        async with asyncio.timeout(3):
            outcome = await t.send_raw("a@example.com", "b@example.org", message(1))
    assert outcome.kind == RETRY
    assert server.connections == 1


# -- pipelining ------------------------------------------------------------------------------


def envelope(sender: str, recipient: str) -> bytes:
    return f"MAIL FROM:<{sender}>\r\nRCPT TO:<{recipient}>\r\nDATA\r\n".encode()


async def test_pipelining_takes_one_write_per_message() -> None:
    async with ScriptServer() as server, client(server.port, pool_size=1) as t:
        outcomes = await asyncio.gather(
            *(t.send_raw("a@example.com", f"r{n}@example.org", message(n)) for n in range(5))
        )
    assert {o.kind for o in outcomes} == {DELIVERED}
    assert outcomes[3].provider_id == "S4"
    # MAIL, RCPT and DATA arrive together; each body's final dot comes with the next
    # message's commands.
    assert envelope("a@example.com", "r0@example.org") in server.reads
    for n in range(4):
        chunk = message(n) + b".\r\n" + envelope("a@example.com", f"r{n + 1}@example.org")
        assert chunk in server.reads
    assert [r.data for r in server.received] == [message(n) for n in range(5)]
    assert server.connections == 1


async def test_a_refused_recipient_mid_pipeline() -> None:
    refuse = _refuse("550 5.1.1 No such user")
    recipients = ["r0@example.org", "r1@example.org", "bad@example.org", "r3@example.org"]
    async with ScriptServer(rcpt=refuse) as server, client(server.port, pool_size=1) as t:
        outcomes = await asyncio.gather(
            *(
                t.send_raw("a@example.com", rcpt, message(n, f"BODY-{n}"))
                for n, rcpt in enumerate(recipients)
            )
        )
    assert [o.kind for o in outcomes] == [DELIVERED, DELIVERED, FAILED, DELIVERED]
    assert (outcomes[2].reply, outcomes[2].quarantine) == ("550 5.1.1 No such user", True)
    assert b"BODY-2" not in server.data  # the refused message's body was never sent
    assert [r.rcpt_tos for r in server.received] == [[r] for r in recipients if "bad" not in r]
    # The next transaction started clean, in the same write as its commands.
    assert b"RSET\r\n" + envelope("a@example.com", "r3@example.org") in server.reads
    assert server.connections == 1


async def test_the_same_reply_lines_again_and_again_keep_their_meaning() -> None:
    # Replies seen before are parsed once and reused (MAIL, RCPT and DATA get the same line
    # every time): a repeated refusal still refuses its own message only, and the final
    # replies, each naming its own queue id, still give each message its id.
    def refuse(address: str) -> str | None:
        return "550 5.1.1 No such user" if address.startswith("bad") else None

    recipients = [f"{'bad' if n % 3 == 1 else 'r'}{n}@example.org" for n in range(9)]
    async with ScriptServer(rcpt=refuse) as server, client(server.port, pool_size=1) as t:
        outcomes = await asyncio.gather(
            *(t.send_raw("a@example.com", rcpt, message(n)) for n, rcpt in enumerate(recipients))
        )
    for rcpt, outcome in zip(recipients, outcomes, strict=True):
        if rcpt.startswith("bad"):
            assert (outcome.kind, outcome.reply) == (FAILED, "550 5.1.1 No such user")
        else:
            assert outcome.kind == DELIVERED
    ids = [o.provider_id for o in outcomes if o.kind == DELIVERED]
    assert len(set(ids)) == 6
    assert all(ids)
    assert [r.rcpt_tos[0] for r in server.received] == [r for r in recipients if "bad" not in r]


@pytest.mark.parametrize(("offered", "wanted"), [(True, False), (False, True)])
async def test_lockstep_without_pipelining(offered: bool, wanted: bool) -> None:
    async with (
        ScriptServer(pipelining=offered) as server,
        client(server.port, pool_size=1, pipelining=wanted) as t,
    ):
        outcomes = await asyncio.gather(
            *(t.send_raw("a@example.com", f"r{n}@example.org", message(n)) for n in range(3))
        )
    assert {o.kind for o in outcomes} == {DELIVERED}
    assert len(server.received) == 3
    assert all(chunk.count(b"\r\n") == 1 for chunk in server.reads if b"Subject" not in chunk)


# -- against Postfix's smtp-sink ------------------------------------------------------------


def _smtp_sink() -> str:
    return shutil.which("smtp-sink") or shutil.which("smtp-sink", path="/usr/sbin") or ""


@pytest.fixture
def sink_port() -> Iterator[int]:
    """Postfix's smtp-sink (it advertises PIPELINING) on a free port."""
    program = _smtp_sink()
    if not program:
        pytest.skip("smtp-sink (Debian package postfix) is not installed")
    port = closed_port()
    # As root it must be told whose privileges to drop to.
    user = ["-u", pwd.getpwuid(65534).pw_name] if os.geteuid() == 0 else []
    process = subprocess.Popen(
        [program, *user, f"127.0.0.1:{port}", "256"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 10
        while True:
            with socket.socket() as probe:
                if probe.connect_ex(("127.0.0.1", port)) == 0:
                    break
            if process.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"smtp-sink did not start (exit status {process.poll()})")
            time.sleep(0.02)
        yield port
    finally:
        process.terminate()
        process.wait(timeout=5)


async def test_two_thousand_messages_through_smtp_sink(sink_port: int) -> None:
    async with client(sink_port, pool_size=4) as t:
        outcomes = await asyncio.gather(
            *(t.send_raw("a@example.com", f"r{n}@example.org", message(n)) for n in range(2000))
        )
    assert [o.kind for o in outcomes] == [DELIVERED] * 2000
