"""Delivery end to end: events POSTed to a live Tidings (uvicorn and its worker on a loopback
port), sent over real sockets to an SMTP server the test runs (aiosmtpd), on SQLite and on
PostgreSQL.

Each test looks at three things: what the SMTP server received (parsed with the stdlib), the
event as ``GET /api/v1/events/{id}`` shows it (status, reason, attempts, delivery log) and,
where the API cannot say (after the server stopped), the rows themselves.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import email
import email.message
import email.policy
import pathlib
import socket
import ssl
from collections.abc import AsyncIterator, Callable
from typing import Any

import jinja2
import pytest
import trustme

from tests.conftest import test_settings as settings_for
from tests.smtp_servers import (
    Credentials,
    Recorder,
    Staller,
    silent_server,
    tracked_aiosmtpd_server,
)
from tidings import clock, model
from tidings.app import App
from tidings.engine import worker as worker_module
from tidings.server import example_templates
from tidings.store import database, queue
from tidings.store import events as events_store

from .conftest import EXAMPLE_CTX, Live, Serve, eventually

TYPE = "cartAbandonment"
SENDER = "shop@example.com"  # the example template's sender

Event = dict[str, Any]


# -- helpers ---------------------------------------------------------------------------------


def smtp(port: int, **overrides: Any) -> dict[str, Any]:
    """Settings that send email to 127.0.0.1:``port`` (plain text unless told)."""
    return {
        "email_transport": "smtp",
        "smtp_host": "127.0.0.1",
        "smtp_port": port,
        "smtp_tls": "none",
        "smtp_helo_name": "tidings.test",
        "smtp_timeout": 5.0,
    } | overrides


def closed_port() -> int:
    """A loopback port nothing listens on (connections to it are refused)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def send(live: Live, address: str, **fields: Any) -> str:
    """POST a cartAbandonment event for ``address``; its id."""
    body = await live.post_event(type=TYPE, recipient={"email": address}, ctx=EXAMPLE_CTX, **fields)
    return str(body["id"])


async def fetch(live: Live, event_id: str) -> Event:
    response = await live.client.get(f"/api/v1/events/{event_id}")
    assert response.status_code == 200, response.text
    event: Event = response.json()
    return event


async def wait_for(
    live: Live, event_id: str, check: Callable[[Event], bool], within: float = 10.0
) -> Event:
    """Poll the event until ``check`` holds for it."""
    seen: Event = {}

    async def holds() -> bool:
        nonlocal seen
        seen = await fetch(live, event_id)
        return check(seen)

    try:
        await eventually(holds, within)
    except AssertionError:
        raise AssertionError(f"event {event_id} never got there: {seen}") from None
    return seen


def retrying(attempts: int) -> Callable[[Event], bool]:
    """Waiting for a retry after at least ``attempts`` failed attempts."""
    return lambda e: e["status"] == "pending" and e["attempts"] >= attempts


async def stored(url: str, *event_ids: str) -> list[model.Event]:
    """The events' rows, read over a connection of our own."""
    db = await database.connect(url)
    try:
        async with db.connection() as conn:
            found = [await events_store.get_event(conn, int(i)) for i in event_ids]
    finally:
        await db.close()
    assert all(e is not None for e in found)
    return [e for e in found if e is not None]


async def delivery_log(url: str, event_id: str) -> list[model.Delivery]:
    db = await database.connect(url)
    try:
        async with db.connection() as conn:
            return await events_store.get_deliveries(conn, int(event_id))
    finally:
        await db.close()


def parse(data: bytes) -> email.message.EmailMessage:
    message = email.message_from_bytes(data, policy=email.policy.default)
    assert isinstance(message, email.message.EmailMessage)
    return message


def message_id(data: bytes) -> str:
    """The Message-ID of a message, without its angle brackets."""
    return str(parse(data)["Message-ID"]).strip("<>")


def body(message: email.message.EmailMessage, subtype: str) -> str:
    part = message.get_body((subtype,))
    assert part is not None, f"no text/{subtype} part"
    return str(part.get_content()).replace("\r\n", "\n").rstrip("\n")


def rendered(name: str) -> str:
    """The example template ``name`` rendered with the example ctx, by plain Jinja2."""
    source = (example_templates() / TYPE / name).read_text()
    env = jinja2.Environment(autoescape=name.endswith(".html"), keep_trailing_newline=True)
    return env.from_string(source).render(ctx=EXAMPLE_CTX).rstrip("\n")


def refuse_first(times: int, reply: str) -> Callable[[Any], str | None]:
    """A refuser answering ``reply`` to its first ``times`` calls, then accepting."""
    calls = 0

    def refuse(_: Any) -> str | None:
        nonlocal calls
        calls += 1
        return reply if calls <= times else None

    return refuse


@contextlib.asynccontextmanager
async def worker(url: str, **overrides: Any) -> AsyncIterator[App]:
    """Another Tidings process on the same database: a worker only, no API."""
    async with App.running(settings_for(url, **overrides), migrate_schema=False) as app:
        yield app


# -- TLS material ----------------------------------------------------------------------------


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


# -- 1. the happy path -------------------------------------------------------------------------


async def test_an_event_is_rendered_and_delivered(serve: Serve) -> None:
    handler = Recorder(pipelining=True)
    async with tracked_aiosmtpd_server(handler) as server, serve(**smtp(server.port)) as live:
        event_id = await send(live, "jack@example.org")
        event = await live.wait_status(event_id, "processed")
    [received] = handler.received
    assert (received.mail_from, received.rcpt_tos) == (SENDER, ["jack@example.org"])
    assert not received.tls  # smtp_tls=none
    message = parse(received.data)
    assert message["Subject"] == " ".join(rendered("subject.txt").split())
    assert message["Subject"] == "Jack, your Leather motorbike jacket is waiting"
    assert message["From"] == "Tidings Shop <shop@example.com>"
    assert message["To"] == "jack@example.org"
    assert message["Reply-To"] == "Customer care <care@example.com>"
    assert message["Date"] is not None
    assert message.get_content_type() == "multipart/alternative"
    assert [p.get_content_type() for p in message.iter_parts()] == ["text/plain", "text/html"]
    assert body(message, "plain") == rendered("email.txt")
    assert body(message, "html") == rendered("email.html")
    assert "<strong>Leather motorbike jacket</strong>" in body(message, "html")

    assert (event["status"], event["attempts"], event["reason"]) == ("processed", 1, None)
    assert event["timeline"]["sentAt"] is not None
    assert event["timeline"]["finishedAt"] is not None
    [delivery] = event["deliveries"]
    assert message["Message-ID"] == f"<{delivery['messageId']}>"
    assert delivery["messageId"] == f"{event_id}.tidings@example.com"  # the sender's domain
    assert {k: delivery[k] for k in ("attempt", "channel", "transport", "address")} == {
        "attempt": 1,
        "channel": "email",
        "transport": "smtp",
        "address": "jack@example.org",
    }
    assert (delivery["outcome"], delivery["reply"]) == ("delivered", "250 2.0.0 Ok: queued as Q1")
    # The pooled connection was closed politely when Tidings stopped.
    assert (server.connections, handler.quits) == (1, 1)


@pytest.mark.parametrize("pipelining", [True, False], ids=["pipelined", "lockstep"])
async def test_fifty_concurrent_events_go_once_each_over_the_pool(
    serve: Serve, pipelining: bool
) -> None:
    pool = 3
    handler = Recorder(pipelining=pipelining)
    async with (
        tracked_aiosmtpd_server(handler) as server,
        serve(**smtp(server.port, smtp_pool_size=pool)) as live,
    ):
        addresses = [f"r{n}@example.org" for n in range(50)]
        event_ids = await asyncio.gather(*(send(live, a) for a in addresses))
        events = await asyncio.gather(*(live.wait_status(i, "processed") for i in event_ids))
    assert collections.Counter(r.rcpt_tos[0] for r in handler.received) == dict.fromkeys(
        addresses, 1
    )
    by_message_id = {message_id(r.data): r for r in handler.received}
    assert len(by_message_id) == 50
    for event in events:
        [delivery] = event["deliveries"]
        assert delivery["outcome"] == "delivered"
        received = by_message_id[delivery["messageId"]]
        assert received.rcpt_tos == [event["recipient"]["email"]]
    assert 1 <= server.peak <= pool
    assert server.connections <= pool < len(handler.received)


# -- 2. TLS and AUTH ---------------------------------------------------------------------------


# aiosmtpd does not see that an implicit TLS session is encrypted, so it is told to take AUTH
# without TLS there (and warns about it).
@pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS")
@pytest.mark.parametrize("mode", ["starttls", "implicit"])
async def test_tls_and_auth_login(
    serve: Serve, mode: str, server_tls: ssl.SSLContext, ca_file: str
) -> None:
    handler, credentials = Recorder(), Credentials("tidings", "s3cret")
    tls: dict[str, Any] = (
        {"implicit_tls": server_tls, "auth_require_tls": False}
        if mode == "implicit"
        else {"tls_context": server_tls, "require_starttls": True}
    )
    settings = smtp(
        0, smtp_tls=mode, smtp_ca_file=ca_file, smtp_username="tidings", smtp_password="s3cret"
    )
    async with (
        tracked_aiosmtpd_server(
            handler,
            authenticator=credentials,
            auth_required=True,
            auth_exclude_mechanism=["PLAIN"],  # so that LOGIN is used
            **tls,
        ) as server,
        serve(**settings | {"smtp_port": server.port}) as live,
    ):
        event_id = await send(live, "ann@example.org")
        event = await live.wait_status(event_id, "processed")
    [received] = handler.received
    assert received.tls
    assert received.rcpt_tos == ["ann@example.org"]
    assert credentials.mechanisms == ["LOGIN"]
    assert (server.connections, server.peak) == (1, 1)
    assert message_id(received.data) == event["deliveries"][0]["messageId"]


async def test_a_refused_login_is_retried_and_not_lost(
    database_url: str, serve: Serve, server_tls: ssl.SSLContext, ca_file: str
) -> None:
    handler, credentials = Recorder(), Credentials("tidings", "s3cret")
    async with tracked_aiosmtpd_server(
        handler, tls_context=server_tls, authenticator=credentials, auth_required=True
    ) as server:
        settings = smtp(
            server.port, smtp_tls="starttls", smtp_ca_file=ca_file, smtp_username="tidings"
        )
        async with serve(**settings, smtp_password="wrong") as live:
            event_id = await send(live, "ann@example.org")
            waiting = await wait_for(live, event_id, retrying(2))
        assert waiting["reason"].startswith(f"attempt {waiting['attempts']} failed: ")
        assert waiting["reason"].endswith("535 5.7.8 Authentication credentials invalid")
        assert {d["outcome"] for d in waiting["deliveries"]} == {"retry"}
        assert all("refused our login" in d["reply"] for d in waiting["deliveries"])
        assert handler.received == []
        [row] = await stored(database_url, event_id)
        assert row.status is model.EventStatus.PENDING  # stopped: kept, not stuck processing
        # The operator fixes the password and starts Tidings again: the event goes out.
        async with worker(database_url, **settings, smtp_password="s3cret") as app:

            async def sent() -> bool:
                async with app.db.connection() as conn:
                    event = await events_store.get_event(conn, int(event_id))
                return event is not None and event.status is model.EventStatus.PROCESSED

            await eventually(sent)
    [received] = handler.received
    assert received.rcpt_tos == ["ann@example.org"]
    assert received.tls
    assert "PLAIN" in credentials.mechanisms


# -- 3. temporary refusals ---------------------------------------------------------------------


@pytest.mark.parametrize("stage", ["rcpt", "data"])
async def test_temporary_refusals_are_retried_until_accepted(serve: Serve, stage: str) -> None:
    refusals = 3
    reply = "451 4.7.1 Greylisted, come back later"
    handler = Recorder(**{stage: refuse_first(refusals, reply)})
    async with tracked_aiosmtpd_server(handler) as server, serve(**smtp(server.port)) as live:
        event_id = await send(live, "ann@example.org")
        event = await live.wait_status(event_id, "processed")
    [received] = handler.received
    assert received.rcpt_tos == ["ann@example.org"]
    assert (event["attempts"], event["reason"]) == (refusals + 1, None)
    assert [(d["attempt"], d["outcome"], d["reply"]) for d in event["deliveries"]] == [
        *((n, "retry", reply) for n in range(1, refusals + 1)),
        (refusals + 1, "delivered", "250 2.0.0 Ok: queued as Q1"),
    ]
    # Every attempt carried the same Message-ID, the one that arrived.
    assert {d["messageId"] for d in event["deliveries"]} == {message_id(received.data)}


# -- 4. permanent refusals -----------------------------------------------------------------------


@pytest.mark.parametrize("stage", ["rcpt", "data"])
async def test_a_policy_refusal_fails_the_event(serve: Serve, stage: str) -> None:
    reply = "550 5.7.1 Message refused by policy"
    handler = Staller(**{stage: lambda _: reply})
    async with tracked_aiosmtpd_server(handler) as server, serve(**smtp(server.port)) as live:
        event_id = await send(live, "ann@example.org")
        event = await live.wait_status(event_id, "deliveryFailed")
        quarantined = (await live.client.get("/api/v1/quarantine")).json()
    assert (event["reason"], event["attempts"]) == (reply, 1)
    assert event["timeline"]["finishedAt"] is not None
    assert event["timeline"]["sentAt"] is None
    assert [(d["outcome"], d["reply"]) for d in event["deliveries"]] == [("failed", reply)]
    assert handler.received == []
    assert handler.mails == 1  # not retried
    assert quarantined == []  # a policy refusal says nothing about the address


async def test_an_unknown_user_is_quarantined_and_later_events_are_ignored(serve: Serve) -> None:
    gone = "gone@example.org"
    reply = f"550 5.1.1 <{gone}>: Recipient address rejected: User unknown"
    handler = Staller(rcpt=lambda address: reply if address == gone else None)
    async with tracked_aiosmtpd_server(handler) as server, serve(**smtp(server.port)) as live:
        first = await send(live, gone)
        failed = await live.wait_status(first, "deliveryFailed")
        quarantined = (await live.client.get("/api/v1/quarantine")).json()
        mails, connections = handler.mails, server.connections
        later = await send(live, gone)
        ignored = await live.wait_status(later, "ignored")
        assert (handler.mails, server.connections) == (mails, connections)
        # Other addresses still go.
        other = await send(live, "ann@example.org")
        await live.wait_status(other, "processed")
    assert failed["reason"] == reply
    assert [(d["outcome"], d["reply"]) for d in failed["deliveries"]] == [("failed", reply)]
    assert len(quarantined) == 1
    entry = quarantined[0]
    assert {k: entry[k] for k in ("channel", "address", "reason", "source", "eventId")} == {
        "channel": "email",
        "address": gone,
        "reason": reply,
        "source": "smtp",
        "eventId": first,
    }
    assert ignored["reason"] == f"{gone} is quarantined"
    assert ignored["deliveries"] == []
    assert ignored["timeline"]["finishedAt"] is not None
    assert [r.rcpt_tos for r in handler.received] == [["ann@example.org"]]
    assert mails == 1


# -- 5. the server is down -------------------------------------------------------------------------


async def test_server_down_then_up(serve: Serve) -> None:
    port = closed_port()
    handler = Recorder()
    async with serve(**smtp(port)) as live:
        event_id = await send(live, "ann@example.org")
        waiting = await wait_for(live, event_id, retrying(3))
        async with tracked_aiosmtpd_server(handler, port=port):
            event = await live.wait_status(event_id, "processed")
    assert f"cannot connect to 127.0.0.1:{port}" in waiting["reason"]
    assert {d["outcome"] for d in waiting["deliveries"]} == {"retry"}
    assert len(waiting["deliveries"]) == waiting["attempts"]
    outcomes = [d["outcome"] for d in event["deliveries"]]
    assert outcomes == ["retry"] * (event["attempts"] - 1) + ["delivered"]
    assert event["attempts"] > waiting["attempts"] >= 3
    [received] = handler.received
    assert message_id(received.data) == event["deliveries"][-1]["messageId"]


# -- 6. time-outs ----------------------------------------------------------------------------------


async def test_a_server_that_never_answers_times_out_and_is_retried(serve: Serve) -> None:
    port = closed_port()
    handler = Recorder()
    async with serve(**smtp(port, smtp_timeout=0.3)) as live:
        async with silent_server(port=port) as silent:
            event_id = await send(live, "ann@example.org")
            waiting = await wait_for(live, event_id, retrying(2))
        assert silent.connections >= 2
        async with tracked_aiosmtpd_server(handler, port=port):
            event = await live.wait_status(event_id, "processed")
    assert "within 0.3 s" in waiting["reason"]
    assert {d["outcome"] for d in waiting["deliveries"]} == {"retry"}
    [received] = handler.received
    assert message_id(received.data) == event["deliveries"][-1]["messageId"]
    assert event["deliveries"][-1]["outcome"] == "delivered"


async def test_a_server_stalling_after_the_data_times_out_and_is_retried(serve: Serve) -> None:
    handler = Staller(stall=lambda _: True)
    async with (
        tracked_aiosmtpd_server(handler) as server,
        serve(**smtp(server.port, smtp_timeout=0.3)) as live,
    ):
        event_id = await send(live, "ann@example.org")
        waiting = await wait_for(live, event_id, retrying(2))
        handler.stall = None  # the server recovers
        event = await live.wait_status(event_id, "processed")
    assert "did not answer within 0.3 s" in waiting["reason"]
    assert {d["outcome"] for d in waiting["deliveries"]} == {"retry"}
    assert len(handler.stalled) >= 2
    [received] = handler.received
    # Every copy, the held ones and the delivered one, has the same Message-ID.
    assert {message_id(data) for data in [*handler.stalled, received.data]} == {
        event["deliveries"][-1]["messageId"]
    }


# -- 7. expiry -------------------------------------------------------------------------------------


@pytest.mark.parametrize("limit", ["expiration", "event_validity"])
async def test_an_event_that_expires_while_retrying_ends_too_old(serve: Serve, limit: str) -> None:
    reply = "451 4.3.0 Try again later"
    handler = Staller(rcpt=lambda _: reply)
    fields = {"expiration": clock.format_iso(clock.now_us() + 1_500_000)}
    settings = smtp(0)
    if limit == "event_validity":
        fields, settings = {}, settings | {"event_validity": 1.5}
    async with (
        tracked_aiosmtpd_server(handler) as server,
        serve(**settings | {"smtp_port": server.port}) as live,
    ):
        event_id = await send(live, "ann@example.org", **fields)
        event = await live.wait_status(event_id, "tooOld", "deliveryFailed", "processed", within=8)
    assert event["status"] == "tooOld"
    assert event["reason"] in (
        f"expired while retrying: {reply}",
        "expired before it could be sent",  # claimed just after the deadline
    )
    assert event["timeline"]["finishedAt"] is not None
    assert len(event["deliveries"]) >= 2
    assert {(d["outcome"], d["reply"]) for d in event["deliveries"]} == {("retry", reply)}
    assert handler.received == []


# -- 8. a worker dies or hangs mid-send ------------------------------------------------------------


async def test_an_event_claimed_by_a_worker_that_died_is_claimed_again(
    database_url: str, serve: Serve
) -> None:
    handler = Recorder()
    async with tracked_aiosmtpd_server(handler) as server, serve(**smtp(server.port)) as live:
        # Due in two seconds for the live worker; a worker elsewhere, whose clock runs ahead,
        # claims it now with a one-second lease, and dies.
        due = clock.now_us() + 2_000_000
        event_id = await send(live, "ann@example.org", scheduled=clock.format_iso(due))
        elsewhere = await database.connect(database_url)
        try:
            lease_until = clock.now_us() + 1_000_000
            async with elsewhere.transaction() as conn:
                claimed = await queue.claim_due_events(
                    conn, now=due, lease_until=lease_until, limit=10
                )
        finally:
            await elsewhere.close()
        assert [(str(e.id), e.attempts) for e in claimed] == [(event_id, 1)]
        held = await fetch(live, event_id)
        assert (held["status"], held["attempts"]) == ("processing", 1)
        event = await live.wait_status(event_id, "processed")
    assert event["attempts"] == 2
    assert clock.parse_iso(event["timeline"]["sentAt"]) >= lease_until
    assert [(d["attempt"], d["outcome"]) for d in event["deliveries"]] == [(2, "delivered")]
    [received] = handler.received
    assert message_id(received.data) == event["deliveries"][0]["messageId"]


async def test_a_worker_stuck_mid_send_loses_the_event_to_another_worker(
    database_url: str, serve: Serve
) -> None:
    stuck, healthy = Staller(stall=lambda _: True), Recorder()
    async with (
        tracked_aiosmtpd_server(stuck) as stuck_server,
        tracked_aiosmtpd_server(healthy) as healthy_server,
    ):
        # One send at a time, and that one hangs after its data went out: this worker holds
        # the event until its one-second lease runs out.
        hung = smtp(stuck_server.port, smtp_timeout=2.0)
        async with serve(**hung, lease_seconds=1.0, worker_concurrency=1) as live:
            event_id = await send(live, "ann@example.org")

            async def stalled() -> bool:
                return len(stuck.stalled) == 1

            await eventually(stalled)
            held = await fetch(live, event_id)
            assert (held["status"], held["attempts"]) == ("processing", 1)
            async with worker(database_url, **smtp(healthy_server.port)):
                event = await live.wait_status(event_id, "processed")
        # Both stopped. Whatever the hung worker made of its attempt afterwards (a time-out,
        # or a release when it stopped), its claim was gone: nothing changed.
        [row] = await stored(database_url, event_id)
        log = await delivery_log(database_url, event_id)
    assert event["attempts"] == 2
    assert (row.status, row.attempts) == (model.EventStatus.PROCESSED, 2)
    assert [(d.attempt, d.outcome) for d in log if d.outcome != "retry"] == [(2, "delivered")]
    assert {d.attempt for d in log if d.outcome == "retry"} <= {1}
    [received] = healthy.received
    assert message_id(received.data) == message_id(stuck.stalled[0]) == log[0].message_id


# -- 9. paused event types -------------------------------------------------------------------------


async def test_a_paused_event_type_holds_its_events_until_resumed(serve: Serve) -> None:
    handler = Staller()
    async with tracked_aiosmtpd_server(handler) as server, serve(**smtp(server.port)) as live:
        response = await live.client.post(f"/api/v1/event-types/{TYPE}/pause")
        assert response.status_code == 200, response.text
        assert response.json()["paused"] is True
        addresses = [f"p{n}@example.org" for n in range(3)]
        event_ids = [await send(live, a) for a in addresses]
        held = [await live.wait_status(i, "paused") for i in event_ids]
        await asyncio.sleep(0.2)  # a few polls of the worker
        assert [(await fetch(live, i))["status"] for i in event_ids] == ["paused"] * 3
        assert (server.connections, handler.mails) == (0, 0)
        response = await live.client.post(f"/api/v1/event-types/{TYPE}/resume")
        assert response.status_code == 200, response.text
        assert response.json() == {"name": TYPE, "resumed": 3}
        done = [await live.wait_status(i, "processed") for i in event_ids]
    assert {e["reason"] for e in held} == {f"event type {TYPE!r} is paused"}
    assert all(e["deliveries"] == [] for e in held)
    assert sorted(r.rcpt_tos[0] for r in handler.received) == addresses
    for event in done:
        [delivery] = event["deliveries"]
        assert delivery["outcome"] == "delivered"


async def test_an_event_found_paused_as_its_type_is_resumed_is_not_stranded(
    database_url: str, serve: Serve
) -> None:
    handler = Recorder()
    async with tracked_aiosmtpd_server(handler) as server, serve(**smtp(server.port)) as live:
        response = await live.client.post(f"/api/v1/event-types/{TYPE}/pause")
        assert response.status_code == 200, response.text
        # Due in two seconds for the live worker; another worker (its clock ahead) claims it
        # now, with the type paused, and decides "paused"...
        due = clock.now_us() + 2_000_000
        event_id = await send(live, "ann@example.org", scheduled=clock.format_iso(due))
        other_settings = settings_for(database_url, **smtp(server.port))
        async with App.running(other_settings, run_worker=False, migrate_schema=False) as other:
            slow = worker_module.Worker(
                other.db, other.settings, transports=other.transports, renderer=other.renderer
            )
            await slow.reload_routing()
            async with other.db.transaction() as conn:
                [claimed] = await queue.claim_due_events(
                    conn, now=due, lease_until=clock.now_us() + 60_000_000, limit=10
                )
            completion = await slow.handle(claimed, set())
            assert completion.status is model.EventStatus.PAUSED
            # ...but the type is resumed before that is written (nothing is paused yet, so
            # the resume requeues nothing).
            response = await live.client.post(f"/api/v1/event-types/{TYPE}/resume")
            assert response.json() == {"name": TYPE, "resumed": 0}
            async with other.db.transaction() as conn:
                await queue.record_outcomes(conn, [completion])
        # The event is not left paused under a running type: it goes.
        event = await live.wait_status(event_id, "processed", within=5)
    assert [(d["attempt"], d["outcome"]) for d in event["deliveries"]] == [(2, "delivered")]
    assert [r.rcpt_tos for r in handler.received] == [["ann@example.org"]]


# -- 10. stopping ----------------------------------------------------------------------------------


async def test_stopping_releases_sends_that_do_not_finish_in_time(
    database_url: str, serve: Serve
) -> None:
    handler = Staller(stall=lambda rcpts: rcpts[0].startswith("slow"))
    settings = smtp(0, smtp_timeout=1.0, smtp_pool_size=4)
    async with tracked_aiosmtpd_server(handler) as server:
        settings["smtp_port"] = server.port
        async with serve(**settings, shutdown_grace=0.3) as live:
            fast = await asyncio.gather(*(send(live, f"fast{n}@example.org") for n in range(6)))
            slow = await asyncio.gather(*(send(live, f"slow{n}@example.org") for n in range(2)))
            await asyncio.gather(*(live.wait_status(i, "processed") for i in fast))

            async def both_stalled() -> bool:
                return len(handler.stalled) == 2

            await eventually(both_stalled)
        rows = await stored(database_url, *fast, *slow)
        statuses = [(r.status, r.attempts) for r in rows]
        assert (
            statuses
            == [(model.EventStatus.PROCESSED, 1)] * 6
            + [
                (model.EventStatus.PENDING, 0)  # released: the attempt is given back
            ]
            * 2
        )
        # The next process sends what was released.
        handler.stall = None
        async with worker(database_url, **settings) as app:

            async def all_processed() -> bool:
                async with app.db.connection() as conn:
                    counts = await events_store.count_by_status(conn)
                return counts == {"processed": 8}

            await eventually(all_processed)
    assert sorted(r.rcpt_tos[0] for r in handler.received) == sorted(
        [f"fast{n}@example.org" for n in range(6)] + [f"slow{n}@example.org" for n in range(2)]
    )


async def test_nothing_is_left_processing_when_stopping_mid_stream(
    database_url: str, serve: Serve
) -> None:
    handler = Staller(delay=0.05)
    settings = smtp(0, smtp_pool_size=2)
    async with tracked_aiosmtpd_server(handler) as server:
        settings["smtp_port"] = server.port
        async with serve(**settings, shutdown_grace=0.1) as live:
            event_ids = await asyncio.gather(*(send(live, f"r{n}@example.org") for n in range(40)))

            async def some_sent() -> bool:
                return len(handler.received) >= 4

            await eventually(some_sent)
        rows = await stored(database_url, *event_ids)
        received_at_stop = collections.Counter(message_id(r.data) for r in handler.received)
    by_status = collections.Counter(r.status for r in rows)
    assert set(by_status) <= {model.EventStatus.PROCESSED, model.EventStatus.PENDING}, by_status
    assert by_status[model.EventStatus.PENDING] > 0  # the stop came mid-stream
    for row in rows:
        mid = f"{row.id}.tidings@example.com"  # the example template sender's domain
        if row.status is model.EventStatus.PROCESSED:
            assert (row.attempts, received_at_stop[mid]) == (1, 1)
        else:
            assert row.attempts == 0  # released, to be tried again


async def test_stopping_a_worker_with_every_slot_busy_still_keeps_to_the_grace(
    database_url: str, serve: Serve
) -> None:
    handler = Staller(stall=lambda _: True)
    async with tracked_aiosmtpd_server(handler) as server:
        settings = smtp(server.port, smtp_timeout=1.5)
        async with serve(**settings, worker_concurrency=2, shutdown_grace=0.2) as live:
            # Two sends hang (every slot is busy), a third event waits for a slot.
            event_ids = [await send(live, f"r{n}@example.org") for n in range(3)]

            async def both_stalled() -> bool:
                return len(handler.stalled) == 2

            await eventually(both_stalled)
        rows = await stored(database_url, *event_ids)
    # The two sends were released after the 0.2 s grace, not left to time out (1.5 s) and
    # be recorded as failed attempts; the third was never claimed.
    assert [(r.status, r.attempts, r.reason) for r in rows] == [
        (model.EventStatus.PENDING, 0, None)
    ] * 3


async def test_slow_sends_holding_most_slots_do_not_keep_new_events_from_the_free_ones(
    serve: Serve,
) -> None:
    # Four slots: once they are all taken, the worker claims again when two are free, or
    # after a short wait whatever is free. Three sends hang, so one slot stays free.
    handler = Staller(stall=lambda rcpts: rcpts[0].startswith("slow"))
    async with tracked_aiosmtpd_server(handler) as server:
        settings = smtp(server.port, smtp_timeout=30.0, smtp_pool_size=8)
        async with serve(**settings, worker_concurrency=4) as live:
            for n in range(3):
                await send(live, f"slow{n}@example.org")

            async def three_stalled() -> bool:
                return len(handler.stalled) == 3

            await eventually(three_stalled)
            fast = [await send(live, f"fast{n}@example.org") for n in range(3)]
            for event_id in fast:
                event = await live.wait_status(event_id, "processed", within=5.0)
                assert event["attempts"] == 1
            assert len(handler.stalled) == 3  # still hanging: the fast ones used the free slot
    assert sorted(r.rcpt_tos[0] for r in handler.received) == [
        f"fast{n}@example.org" for n in range(3)
    ]


async def test_stopping_cuts_a_hung_smtp_connection_after_the_grace(
    database_url: str, serve: Serve
) -> None:
    handler = Staller(stall=lambda rcpts: True)
    settings = smtp(0, smtp_timeout=60.0)
    async with tracked_aiosmtpd_server(handler) as server:
        settings["smtp_port"] = server.port
        async with serve(**settings, shutdown_grace=0.5) as live:
            event = await send(live, "stuck@example.org")

            async def stalled() -> bool:
                return len(handler.stalled) == 1

            await eventually(stalled)
            started = asyncio.get_running_loop().time()
        took = asyncio.get_running_loop().time() - started
        # The worker's grace, then the transport's: far from the 60 s SMTP timeout.
        assert took < 5, f"stopping took {took:.1f} s"
        (row,) = await stored(database_url, event)
        assert (row.status, row.attempts) == (model.EventStatus.PENDING, 0)
