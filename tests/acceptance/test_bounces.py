"""Bounces end to end, on SQLite and PostgreSQL: an event is delivered (to aiosmtpd, or the
outbox), a DSN about its Message-ID comes back (``POST /api/v1/bounces``, or the inbound SMTP
listener over a real socket) and the address is quarantined: for good on a hard bounce, for a
while once soft bounces reach the limit. Bad input answers an error and changes nothing."""

from __future__ import annotations

import asyncio
import pathlib
import smtplib
import socket
from typing import Any

import httpx

from tests.smtp_servers import Recorder, tracked_aiosmtpd_server
from tidings import clock

from .conftest import EXAMPLE_CTX, Live, Serve

DATA = pathlib.Path(__file__).parent.parent / "data" / "bounces"
SAMPLE_ID = b"7231851201230848.tidings@example.com"
SAMPLE_ADDRESS = b"jack@example.org"
RFC822 = {"Content-Type": "message/rfc822"}
WEEK_US = 7 * 86400 * 1_000_000


def smtp_to(port: int, **overrides: Any) -> dict[str, Any]:
    return {
        "email_transport": "smtp",
        "smtp_host": "127.0.0.1",
        "smtp_port": port,
        "smtp_tls": "none",
        "smtp_timeout": 5.0,
    } | overrides


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def bounce(name: str, message_id: str, address: str = "jack@example.org") -> bytes:
    """A sample bounce, about ``message_id`` sent to ``address``."""
    raw = (DATA / name).read_bytes()
    return raw.replace(SAMPLE_ID, message_id.encode()).replace(SAMPLE_ADDRESS, address.encode())


async def delivered(live: Live, address: str) -> tuple[str, str]:
    """Send an event to ``address`` and wait until it is delivered: (event id, Message-ID)."""
    body = await live.post_event(
        type="cartAbandonment", recipient={"email": address}, ctx=EXAMPLE_CTX
    )
    event = await live.wait_status(body["id"], "processed")
    return str(body["id"]), str(event["deliveries"][0]["messageId"])


async def post(live: Live, raw: bytes, **headers: str) -> httpx.Response:
    return await live.client.post("/api/v1/bounces", content=raw, headers=headers or RFC822)


async def quarantine(live: Live) -> list[dict[str, Any]]:
    response = await live.client.get("/api/v1/quarantine")
    assert response.status_code == 200, response.text
    entries: list[dict[str, Any]] = response.json()
    return entries


async def bounce_list(live: Live, **params: Any) -> dict[str, Any]:
    response = await live.client.get("/api/v1/bounces", params=params)
    assert response.status_code == 200, response.text
    page: dict[str, Any] = response.json()
    return page


# -- hard bounces ----------------------------------------------------------------------------------


async def test_a_hard_bounce_quarantines_the_address(serve: Serve) -> None:
    handler = Recorder()
    async with tracked_aiosmtpd_server(handler) as server, serve(**smtp_to(server.port)) as live:
        event_id, message_id = await delivered(live, "jack@example.org")
        assert handler.received[0].rcpt_tos == ["jack@example.org"]
        assert message_id == f"{event_id}.tidings@example.com"

        response = await post(live, bounce("postfix_hard.eml", message_id))
        assert response.status_code == 200, response.text
        answer = response.json()
        assert {k: answer[k] for k in ("format", "matched", "action", "eventId", "kind")} == {
            "format": "dsn",
            "matched": True,
            "action": "quarantined",
            "eventId": event_id,
            "kind": "hard",
        }
        assert (answer["address"], answer["status"]) == ("jack@example.org", "5.1.1")
        assert answer["quarantine"]["source"] == "bounce"
        assert answer["quarantine"]["expiresAt"] is None

        [entry] = await quarantine(live)
        assert (entry["address"], entry["channel"], entry["source"]) == (
            "jack@example.org",
            "email",
            "bounce",
        )
        assert entry["eventId"] == event_id
        assert "5.1.1" in entry["reason"]
        assert "User unknown" in entry["reason"]

        # The event's delivery log shows the bounce after the delivery.
        event = (await live.client.get(f"/api/v1/events/{event_id}")).json()
        assert event["status"] == "processed"
        sent, bounced = event["deliveries"]
        assert (sent["outcome"], bounced["outcome"]) == ("delivered", "bounced")
        assert bounced["transport"] == "bounce"
        assert bounced["messageId"] == message_id
        assert bounced["reply"].startswith("hard bounce 5.1.1: smtp; 550 5.1.1")

        # The next event to that address is not sent.
        body = await live.post_event(
            type="cartAbandonment", recipient={"email": "jack@example.org"}, ctx=EXAMPLE_CTX
        )
        await live.wait_status(body["id"], "ignored")
        assert len(handler.received) == 1

        # Listed; the same DSN again changes nothing.
        [listed] = (await bounce_list(live))["items"]
        assert {k: listed[k] for k in ("eventId", "address", "kind", "status", "messageId")} == {
            "eventId": event_id,
            "address": "jack@example.org",
            "kind": "hard",
            "status": "5.1.1",
            "messageId": message_id,
        }
        again = await post(live, bounce("postfix_hard.eml", message_id))
        assert (again.status_code, again.json()["action"]) == (200, "duplicate")
        assert len((await bounce_list(live))["items"]) == 1
        event = (await live.client.get(f"/api/v1/events/{event_id}")).json()
        assert len(event["deliveries"]) == 2


async def test_an_asynchronous_bounce_is_matched_too(live: Live) -> None:
    _, message_id = await delivered(live, "jill@example.org")
    response = await post(
        live,
        bounce("exim_async.eml", message_id, "jill@example.org"),
        **{"Content-Type": "text/plain"},
    )
    assert response.status_code == 200, response.text
    assert (response.json()["format"], response.json()["action"]) == ("async", "quarantined")
    assert [e["address"] for e in await quarantine(live)] == ["jill@example.org"]


# -- soft bounces ----------------------------------------------------------------------------------


async def test_soft_bounces_quarantine_at_the_limit_for_a_while(serve: Serve) -> None:
    async with serve(soft_bounce_limit=3) as live:
        sent = [await delivered(live, "full@example.org") for _ in range(3)]
        # A delayed warning is kept but counts for nothing.
        warning = await post(live, bounce("postfix_delayed.eml", sent[0][1], "full@example.org"))
        assert (warning.json()["kind"], warning.json()["action"]) == ("delayed", "counted")
        assert warning.json()["softBounces"] is None

        answers = []
        for _, message_id in sent[:2]:
            response = await post(
                live, bounce("gmail_over_quota.eml", message_id, "full@example.org")
            )
            assert response.status_code == 200, response.text
            answers.append(response.json())
        assert [(a["kind"], a["action"], a["softBounces"]) for a in answers] == [
            ("soft", "counted", 1),
            ("soft", "counted", 2),
        ]
        # The same event bouncing again does not count twice.
        again = await post(live, bounce("gmail_over_quota.eml", sent[1][1], "full@example.org"))
        assert again.json()["action"] == "duplicate"
        assert await quarantine(live) == []

        before = clock.now_us()
        third = await post(live, bounce("postfix_expired.eml", sent[2][1], "full@example.org"))
        answer = third.json()
        assert (answer["kind"], answer["action"], answer["softBounces"]) == (
            "soft",
            "quarantined",
            3,
        )
        [entry] = await quarantine(live)
        assert (entry["address"], entry["source"]) == ("full@example.org", "bounce")
        assert entry["expiresAt"] is not None
        expires = clock.parse_iso(entry["expiresAt"])
        assert before + WEEK_US <= expires <= clock.now_us() + WEEK_US
        assert "3 soft bounces" in entry["reason"]

        body = await live.post_event(
            type="cartAbandonment", recipient={"email": "full@example.org"}, ctx=EXAMPLE_CTX
        )
        await live.wait_status(body["id"], "ignored")
        kinds = [b["kind"] for b in (await bounce_list(live))["items"]]
        assert sorted(kinds) == ["delayed", "soft", "soft", "soft"]
        # Cursor pagination, newest first.
        first = await bounce_list(live, limit=3)
        assert len(first["items"]) == 3
        rest = await bounce_list(live, limit=3, cursor=first["next"])
        assert len(rest["items"]) == 1
        assert rest["next"] is None
        assert rest["items"][0]["kind"] == "delayed"


# -- the SMTP listener -----------------------------------------------------------------------------


def smtp_send(port: int, raw: bytes) -> tuple[int, bytes]:
    """Send ``raw`` with the stdlib's smtplib, as an MTA would; the reply to DATA."""
    with smtplib.SMTP("127.0.0.1", port, timeout=10) as client:
        client.ehlo("mx.example.org")
        client.mail("")
        client.rcpt("bounces@shop.example")
        return client.data(raw.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n"))


def send_refused(port: int, raw: bytes) -> int:
    """Send ``raw`` declaring its SIZE, as MTAs do; the code it was refused with."""
    try:
        with smtplib.SMTP("127.0.0.1", port, timeout=10) as client:
            client.sendmail("", ["bounces@shop.example"], raw)
    except smtplib.SMTPResponseException as exc:
        return exc.smtp_code
    raise AssertionError("the message was accepted")


async def test_the_smtp_listener_takes_bounces(serve: Serve) -> None:
    port = free_port()
    handler = Recorder()
    async with (
        tracked_aiosmtpd_server(handler) as server,
        serve(**smtp_to(server.port), bounce_smtp_port=port, bounce_max_bytes=20_000) as live,
    ):
        event_id, message_id = await delivered(live, "jack@example.org")

        # Not a bounce: accepted (so the sender does not bounce it) and dropped.
        code, reply = await asyncio.to_thread(smtp_send, port, b"Subject: hi\r\n\r\nhello\r\n")
        assert (code, reply) == (250, b"2.0.0 Accepted (not a bounce)")
        assert await quarantine(live) == []

        # Too big: refused while it arrives.
        huge = bounce("microsoft_hard.eml", message_id) + b"x" * 30_000 + b"\r\n"
        assert await asyncio.to_thread(send_refused, port, huge) == 552
        assert await quarantine(live) == []

        code, reply = await asyncio.to_thread(
            smtp_send, port, bounce("microsoft_hard.eml", message_id)
        )
        assert (code, reply) == (250, b"2.0.0 Accepted (quarantined)")
        [entry] = await quarantine(live)
        assert (entry["address"], entry["source"], entry["eventId"]) == (
            "jack@example.org",
            "bounce",
            event_id,
        )
        assert "5.1.10" in entry["reason"]
        [listed] = (await bounce_list(live))["items"]
        assert (listed["kind"], listed["status"]) == ("hard", "5.1.10")
    # The listener stopped with the server.
    with socket.socket() as sock:
        assert sock.connect_ex(("127.0.0.1", port)) != 0


# -- errors ----------------------------------------------------------------------------------------


async def test_bad_input_is_refused_and_changes_nothing(serve: Serve) -> None:
    async with serve(bounce_max_bytes=20_000) as live:
        _, message_id = await delivered(live, "jack@example.org")
        raw = bounce("postfix_hard.eml", message_id)

        wrong_type = await post(live, raw, **{"Content-Type": "application/json"})
        assert wrong_type.status_code == 415
        assert wrong_type.json()["error"]["code"] == "unsupported_media_type"

        too_big = await post(live, raw + b"x" * 30_000)
        assert too_big.status_code == 413
        assert too_big.json()["error"]["code"] == "body_too_large"

        for junk in (b"", b"Subject: hello\r\n\r\nthanks!\r\n", b"\x00\xff" * 500):
            refused = await post(live, junk)
            assert refused.status_code == 422, refused.text
            assert refused.json()["error"]["code"] == "not_a_bounce"
            assert refused.json()["error"]["message"]

        anonymous = await live.client.post(
            "/api/v1/bounces", content=raw, headers={**RFC822, "Authorization": ""}
        )
        assert anonymous.status_code == 401

        # A bounce about a message that is not ours (or no longer known) is answered, unused.
        unknown = await post(live, bounce("postfix_hard.eml", "1234.tidings@example.com"))
        assert unknown.status_code == 200
        assert (unknown.json()["matched"], unknown.json()["action"]) == (False, "none")
        foreign = await post(live, bounce("postfix_hard.eml", "abc@elsewhere.example"))
        assert (foreign.json()["format"], foreign.json()["matched"]) == ("dsn", False)

        assert await quarantine(live) == []
        assert (await bounce_list(live))["items"] == []
        bad_cursor = await live.client.get("/api/v1/bounces", params={"cursor": "x"})
        assert bad_cursor.status_code == 422


# -- VERP ------------------------------------------------------------------------------------------

QUOTES_NOTHING = b"""Return-path: <>
From: Mail Delivery System <Mailer-Daemon@relay.example.net>
To: %(to)s
Auto-Submitted: auto-replied
Subject: Mail delivery failed: returning message to sender
Content-Type: text/plain; charset=us-ascii

A message that you sent could not be delivered to one or more of its
recipients. This is a permanent error. The following address(es) failed:

  jack@example.org
    550 5.1.1 <jack@example.org>: Recipient address rejected: User unknown
"""


def verp_send(port: int, rcpt: str, raw: bytes) -> tuple[int, bytes]:
    with smtplib.SMTP("127.0.0.1", port, timeout=10) as client:
        client.ehlo("mx.example.org")
        client.mail("")
        client.rcpt(rcpt)
        return client.data(raw.replace(b"\n", b"\r\n"))


async def test_verp_names_the_event_when_the_bounce_quotes_nothing(serve: Serve) -> None:
    port = free_port()
    handler = Recorder()
    settings = smtp_to(port=0, bounce_smtp_port=port, bounce_address="bounces@mail.shop.example")
    async with tracked_aiosmtpd_server(handler) as server:
        settings["smtp_port"] = server.port
        async with serve(**settings) as live:
            event_id, message_id = await delivered(live, "jack@example.org")
            # The envelope sender carries the event id; the From header does not change.
            sent = handler.received[0]
            assert sent.mail_from == f"bounces+{event_id}@mail.shop.example"
            assert b"From: Tidings Shop <shop@example.com>" in sent.data

            # Without VERP this bounce matches nothing: no Message-ID, no copy of the message.
            plain = QUOTES_NOTHING % {b"to": b"shop@example.com"}
            code, reply = await asyncio.to_thread(verp_send, port, "shop@example.com", plain)
            assert (code, reply) == (250, b"2.0.0 Accepted (none)")
            assert await quarantine(live) == []

            # Delivered to the VERP address (RCPT TO): the event is found.
            code, reply = await asyncio.to_thread(
                verp_send, port, f"bounces+{event_id}@mail.shop.example", plain
            )
            assert (code, reply) == (250, b"2.0.0 Accepted (quarantined)")
            [entry] = await quarantine(live)
            assert (entry["address"], entry["eventId"]) == ("jack@example.org", event_id)
            event = (await live.client.get(f"/api/v1/events/{event_id}")).json()
            assert event["deliveries"][-1]["outcome"] == "bounced"
            assert event["deliveries"][-1]["messageId"] == message_id


async def test_verp_in_the_bounce_to_header_over_http(serve: Serve) -> None:
    handler = Recorder()
    async with tracked_aiosmtpd_server(handler) as server:
        settings = smtp_to(server.port, bounce_address="Bounces@Mail.Shop.Example")
        async with serve(**settings) as live:
            event_id, _ = await delivered(live, "jack@example.org")
            assert handler.received[0].mail_from == f"Bounces+{event_id}@Mail.Shop.Example"
            # Another domain's or another local part's tag is not ours.
            for to in (
                f"bounces+{event_id}@elsewhere.example",
                f"other+{event_id}@mail.shop.example",
                "bounces+99999999999999999999999@mail.shop.example",
            ):
                response = await post(live, QUOTES_NOTHING % {b"to": to.encode()})
                assert response.status_code == 200, response.text
                assert response.json()["matched"] is False, to
            assert await quarantine(live) == []
            raw = QUOTES_NOTHING % {b"to": f"<bounces+{event_id}@mail.shop.example>".encode()}
            response = await post(live, raw)
            assert response.json()["action"] == "quarantined"
            assert response.json()["eventId"] == event_id


async def test_without_a_bounce_address_the_envelope_sender_is_the_from(serve: Serve) -> None:
    handler = Recorder()
    async with tracked_aiosmtpd_server(handler) as server, serve(**smtp_to(server.port)) as live:
        await delivered(live, "jack@example.org")
        assert handler.received[0].mail_from == "shop@example.com"
