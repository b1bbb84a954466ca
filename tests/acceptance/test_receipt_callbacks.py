"""Delivery receipts as status callbacks, and callbacks sent as soon as they are committed
(SQLite and PostgreSQL): an SMS event goes to the node-smpp SMSC, its ``deliver_sm`` receipt
comes back, and the subscriber's HTTP receiver gets a signed POST about it."""

from __future__ import annotations

import asyncio
import json
import pathlib
import time

import pytest

from tests import http_receivers, smsc
from tidings import signing
from tidings.store import callbacks as callbacks_store
from tidings.store import events as events_store
from tidings.store import notify

from .conftest import EXAMPLE_CTX, Live, Serve, eventually
from .test_callbacks import FAST, SECRET, callback_log, subscribe
from .test_channels import SMPP, publish

SLOW_POLL = {"callback_poll_interval": 30.0}


async def send_sms(live: Live, root: pathlib.Path) -> str:
    await publish(live, root, "otp", **{"sms.txt": "Code {{ ctx.code }}"})
    body = await live.post_event(
        type="otp", recipient={"mobilePhone": "+33612345678"}, ctx={"code": "9876"}
    )
    return str(body["id"])


async def test_an_sms_receipt_reaches_the_subscriber_signed(
    serve: Serve, tmp_path: pathlib.Path
) -> None:
    with smsc.running(tmp_path, receipt="UNDELIV") as server:
        settings = FAST | SMPP | {"smpp_host": "127.0.0.1", "smpp_port": server.port}
        async with http_receivers.receiver() as rx, serve(**settings) as live:
            await subscribe(live, rx.url + "/receipts", kinds=["receipt"])
            event_id = await send_sms(live, tmp_path / "templates")
            await live.wait_status(event_id, "processed")
            [request] = await rx.wait_for(1)
            signing.verify(SECRET, request.headers["tidings-signature"], request.body, 60)
            payload = json.loads(request.body)
            assert payload["kind"] == "receipt"
            assert payload["eventId"] == event_id
            assert payload["status"] == "processed"
            assert payload["channel"] == "sms"
            assert payload["receipt"]["state"] == "undeliverable"
            assert payload["receipt"]["providerId"] == "msg1"
            assert payload["receipt"]["error"] == "001"
            assert payload["receipt"]["transport"] == "smpp"
            assert [d["transport"] for d in payload["deliveries"]] == ["smpp"]

            async def logged() -> bool:
                found = await callback_log(live, event=event_id, state="delivered")
                return bool(found)

            await eventually(logged)
            [done] = await callback_log(live, event=event_id)
            assert done["kind"] == "receipt"
            assert done["log"][0]["outcome"] == "delivered"
            assert done["payload"] == payload
            await asyncio.sleep(0.3)  # no status callback for a receipt-only subscription
            assert len(rx.requests) == 1


async def test_a_receipt_filter_that_excludes_it_sends_nothing(
    serve: Serve, tmp_path: pathlib.Path
) -> None:
    with smsc.running(tmp_path, receipt="DELIVRD") as server:
        settings = FAST | SMPP | {"smpp_host": "127.0.0.1", "smpp_port": server.port}
        async with (
            http_receivers.receiver() as bad_news,
            http_receivers.receiver() as everything,
            serve(**settings) as live,
        ):
            await subscribe(live, bad_news.url, receipts=["undeliverable", "expired"])
            await subscribe(live, everything.url)
            event_id = await send_sms(live, tmp_path / "templates")
            await live.wait_status(event_id, "processed")
            got = await everything.wait_for(2)
            assert sorted(json.loads(r.body)["kind"] for r in got) == ["receipt", "status"]
            # bad_news gets the final status, not the delivered receipt
            [only] = await bad_news.wait_for(1)
            assert json.loads(only.body)["kind"] == "status"
            await asyncio.sleep(0.5)
            assert len(bad_news.requests) == 1


async def test_a_final_status_callback_does_not_wait_for_the_poll(serve: Serve) -> None:
    async with http_receivers.receiver() as rx, serve(**(FAST | SLOW_POLL)) as live:
        await subscribe(live, rx.url)
        # The sender's first poll has happened; the next one is 30 s away.
        await asyncio.sleep(0.3)
        started = time.monotonic()
        body = await live.post_event(
            type="cartAbandonment", recipient={"email": "jack@example.com"}, ctx=EXAMPLE_CTX
        )
        await live.wait_status(body["id"], "processed")
        [request] = await rx.wait_for(1, within=5.0)
        assert time.monotonic() - started < 5.0
        assert json.loads(request.body)["status"] == "processed"


async def test_a_receipt_callback_does_not_wait_for_the_poll(
    serve: Serve, tmp_path: pathlib.Path
) -> None:
    with smsc.running(tmp_path, receipt="EXPIRED") as server:
        settings = FAST | SLOW_POLL | SMPP | {"smpp_host": "127.0.0.1", "smpp_port": server.port}
        async with http_receivers.receiver() as rx, serve(**settings) as live:
            await subscribe(live, rx.url, kinds=["receipt"])
            await asyncio.sleep(0.3)
            started = time.monotonic()
            await send_sms(live, tmp_path / "templates")
            [request] = await rx.wait_for(1, within=5.0)
            assert time.monotonic() - started < 5.0
            assert json.loads(request.body)["receipt"]["state"] == "expired"


async def test_another_process_wakes_the_sender_over_postgresql(serve: Serve) -> None:
    """A callback enqueued by another process (here: a connection of the test's own, then
    NOTIFY on the callbacks channel) is sent at once, not at the next poll."""
    async with http_receivers.receiver() as rx, serve(**(FAST | SLOW_POLL)) as live:
        if live.app.db.dialect != "postgresql":
            pytest.skip("LISTEN/NOTIFY is PostgreSQL's; SQLite has one process")
        assert live.app.listener is not None
        await asyncio.wait_for(live.app.listener.connected.wait(), 10)
        await subscribe(live, rx.url, kinds=["receipt"])
        body = await live.post_event(
            type="cartAbandonment", recipient={"email": "jack@example.com"}, ctx=EXAMPLE_CTX
        )
        await live.wait_status(body["id"], "processed")
        await asyncio.sleep(0.3)  # the sender is back to its 30 s wait
        db = live.app.db
        async with db.transaction() as conn:
            event = await events_store.get_event(conn, int(body["id"]))
            assert event is not None
            added = await callbacks_store.enqueue_status(
                conn, event, kind="receipt", status="delivered"
            )
        assert added == 1
        assert rx.requests == []
        started = time.monotonic()
        notifier = notify.Notifier(db, notify.CALLBACKS)
        notifier.poke()
        await notifier.aclose()
        [request] = await rx.wait_for(1, within=5.0)
        assert time.monotonic() - started < 5.0
        assert json.loads(request.body)["kind"] == "receipt"
