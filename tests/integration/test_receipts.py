"""Delivery receipts from node-smpp's SMSC recorded in the database (SQLite and PostgreSQL)."""

from __future__ import annotations

import asyncio
import pathlib

import msgspec

from tests import smsc
from tests.conftest import test_settings as settings_for
from tests.integration.test_callbacks_store import delivered
from tests.integration.test_store import claim, insert, new_event
from tidings import model, receipts
from tidings.app import App
from tidings.channels import failover
from tidings.channels.sms import receipt, smpp
from tidings.store import callbacks as callbacks_store
from tidings.store import database, queue
from tidings.store import receipts as store
from tidings.store import subscriptions as subscriptions_store

SMS = model.Channel.SMS


async def log_delivery(
    db: database.Database, event_id: int, provider_id: str, transport: str = "smpp"
) -> None:
    """The delivery log row the worker writes after a submit the SMSC accepted."""
    delivery = model.Delivery(
        event_id=event_id,
        attempt=1,
        channel=SMS,
        transport=transport,
        address="+33612345678",
        message_id=f"ev-{event_id}",
        outcome=model.OutcomeKind.DELIVERED,
        reply="submit_sm_resp ESME_ROK",
        render_us=0,
        send_us=0,
        created_at=1,
        provider_id=provider_id,
    )
    completion = queue.Completion(
        event_id=event_id,
        attempt=1,
        status=model.EventStatus.PROCESSED,
        due_at=0,
        delivery=delivery,
    )
    async with db.transaction() as conn:
        await queue.record_outcomes(conn, [completion])


async def test_receipts_from_the_smsc_are_recorded(
    db: database.Database, tmp_path: pathlib.Path
) -> None:
    with smsc.running(tmp_path, receipt="UNDELIV") as server:
        config = smpp.SmppConfig(
            "127.0.0.1", server.port, system_id="tidings", password="secret", source="Tidings"
        )
        transport = smpp.SmppTransport(config, receipts.recorder(db))
        try:
            message = model.SmsMessage(event_id=42, reference="ev-42", to="+33612345678", text="Hi")
            # The receipt may come before the delivery is logged (the SMSC answers at once):
            # it is then kept unmatched, and still found for the event.
            outcome = await transport.send(message)
            await log_delivery(db, 42, outcome.provider_id)
            for _ in range(500):
                async with db.connection() as conn:
                    kept = await store.receipts_for_provider_id(conn, SMS, outcome.provider_id)
                if kept:
                    break
                await asyncio.sleep(0.02)
        finally:
            await transport.aclose()
    (receipt,) = kept
    assert receipt.state == "undeliverable"
    assert receipt.error == "001"
    assert "stat:UNDELIV" in receipt.text
    assert receipt.provider_id == outcome.provider_id == "msg1"
    async with db.connection() as conn:
        (for_event,) = await store.receipts_for_event(conn, 42)
    assert for_event.state == "undeliverable"


async def test_matched_unknown_and_repeated_receipts(db: database.Database) -> None:
    await log_delivery(db, 7, "abc123")
    async with db.transaction() as conn:
        kept, new = await store.record_receipt(
            conn,
            SMS,
            "abc123",
            "delivered",
            error="000",
            text="id:abc123 stat:DELIVRD",
            received_at=10,
        )
        _, again = await store.record_receipt(
            conn,
            SMS,
            "abc123",
            "delivered",
            error="000",
            text="id:abc123 stat:DELIVRD",
            received_at=11,
        )
        stray, stray_new = await store.record_receipt(
            conn, SMS, "nobody", "expired", error="", text="id:nobody stat:EXPIRED", received_at=12
        )
        other_channel, _ = await store.record_receipt(
            conn, model.Channel.PUSH, "abc123", "delivered", error="", text="", received_at=13
        )
    assert (kept.event_id, kept.attempt, new, again) == (7, 1, True, False)
    assert (stray.event_id, stray_new) == (None, True)
    assert other_channel.event_id is None
    async with db.connection() as conn:
        for_event = await store.receipts_for_event(conn, 7)
        unknown = await store.receipts_for_provider_id(conn, SMS, "nobody")
    assert [(r.state, r.received_at) for r in for_event] == [("delivered", 10)]
    assert [r.state for r in unknown] == ["expired"]
    # a receipt kept before its delivery was logged is found for the event afterwards
    async with db.transaction() as conn:
        await store.record_receipt(
            conn, SMS, "early", "delivered", error="", text="", received_at=20
        )
    await log_delivery(db, 8, "early")
    async with db.connection() as conn:
        assert [r.provider_id for r in await store.receipts_for_event(conn, 8)] == ["early"]


async def test_the_app_wires_the_smpp_transport(database_url: str, tmp_path: pathlib.Path) -> None:
    with smsc.running(tmp_path, receipt="DELIVRD") as server:
        settings = settings_for(
            database_url,
            smpp_host="127.0.0.1",
            smpp_port=server.port,
            smpp_system_id="tidings",
            smpp_password="secret",
            smpp_source="Tidings",
        )
        async with App.running(settings, migrate_schema=False) as app:
            transport = app.transports[SMS]
            message = model.SmsMessage(event_id=5, reference="ev-5", to="+33612345678", text="Hi")
            outcome = await transport.send(message)
            assert outcome.kind is model.OutcomeKind.DELIVERED
            for _ in range(500):
                async with app.db.connection() as conn:
                    kept = await store.receipts_for_provider_id(conn, SMS, outcome.provider_id)
                if kept:
                    break
                await asyncio.sleep(0.02)
    assert [r.state for r in kept] == ["delivered"]


async def test_two_smscs_handing_out_the_same_id(db: database.Database) -> None:
    a, b = "smpp 127.0.0.1:2775", "smpp 127.0.0.1:2776"
    await log_delivery(db, 1, "msg1", transport=b)
    await log_delivery(db, 2, "msg1", transport=a)  # the later delivery with that id
    async with db.transaction() as conn:
        from_b, new_b = await store.record_receipt(
            conn, SMS, "msg1", "delivered", error="", text="", received_at=10, transport=b
        )
        from_a, new_a = await store.record_receipt(
            conn, SMS, "msg1", "delivered", error="", text="", received_at=11, transport=a
        )
        # a connector with no delivery of that id: the latest delivery with it
        other, _ = await store.record_receipt(
            conn, SMS, "msg1", "expired", error="", text="", received_at=12, transport="smpp c"
        )
    # each receipt lands on the delivery its own SMSC took, and neither hides the other
    assert (from_b.event_id, new_b) == (1, True)
    assert (from_a.event_id, new_a) == (2, True)
    assert other.event_id == 2
    async with db.connection() as conn:
        assert [r.transport for r in await store.receipts_for_event(conn, 1)] == [b]


async def test_a_receipt_before_its_delivery_is_adopted_with_its_callback(
    db: database.Database,
) -> None:
    async with db.transaction() as conn:
        await subscriptions_store.add_subscription(conn, "https://example.com/cb", "s", now=1)
    event = new_event()
    await insert(db, event)
    (claimed,) = await claim(db)
    got = receipt.Receipt(
        message_id="early1", state=receipt.ReceiptState.EXPIRED, error="", text=""
    )
    kept, enqueued = await receipts.record(db, SMS, got, transport="smpp")
    assert (kept.event_id, enqueued) == (None, 0)
    assert await receipts.adopt_orphans(db) == 0  # its delivery is not logged yet
    completion = queue.Completion(
        event_id=claimed.id,
        attempt=claimed.attempts,
        status=model.EventStatus.PROCESSED,
        due_at=0,
        delivery=msgspec.structs.replace(
            delivered(claimed), channel=SMS, transport="smpp", provider_id="early1"
        ),
        event=claimed,
    )
    await db.write_many(queue.outcome_steps([completion], db.dialect))
    assert await receipts.adopt_orphans(db) == 1
    assert await receipts.adopt_orphans(db) == 0  # once
    async with db.connection() as conn:
        (matched,) = await store.receipts_for_provider_id(conn, SMS, "early1")
        kinds = sorted(c.kind for c in await callbacks_store.list_log(conn))
    assert matched.event_id == claimed.id
    assert kinds == ["receipt", "status"]


async def test_several_smscs_make_a_failover_group_paced_per_smsc(
    database_url: str, tmp_path: pathlib.Path
) -> None:
    with smsc.running(tmp_path) as one, smsc.running(tmp_path) as two:
        settings = settings_for(
            database_url,
            smpp_host=f"127.0.0.1:{one.port},127.0.0.1:{two.port}",
            smpp_system_id="tidings",
            smpp_password="secret",
            smpp_throughput=10.0,
        )
        async with App.running(settings, migrate_schema=False, run_worker=False) as app:
            group = app.transports[SMS]
            assert isinstance(group, failover.FailoverTransport)
            names = [c.name for c in group.connectors]
            assert names == [f"smpp 127.0.0.1:{one.port}", f"smpp 127.0.0.1:{two.port}"]
            # each SMSC has its own session and pacing: 5 messages to each at once take
            # about 0.5 s at 10 a second each, where one shared pace would need 1 s
            a, b = (c.transport for c in group.connectors)
            message = model.SmsMessage(event_id=1, reference="ev-1", to="+33612345678", text="x")
            await asyncio.gather(a.send(message), b.send(message))  # bound, first slots used
            loop = asyncio.get_running_loop()
            started = loop.time()
            outcomes = await asyncio.gather(*(t.send(message) for t in (a, b) * 5))
            elapsed = loop.time() - started
            assert all(o.kind is model.OutcomeKind.DELIVERED for o in outcomes)
            assert 0.3 <= elapsed < 0.9, elapsed
            assert len(one.pdus("submit_sm")) == len(two.pdus("submit_sm")) == 6
