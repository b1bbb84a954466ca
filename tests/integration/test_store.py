"""The store on SQLite and on PostgreSQL: the queue, outcomes, quarantine, keys, id slots."""

from __future__ import annotations

import asyncio
import fcntl
import os

import msgspec

from tidings import clock, ids, model
from tidings.store import catalog, database, idempotency, keys, nodes, outbox, queue
from tidings.store import events as events_store
from tidings.store import quarantine as quarantine_store
from tidings.store.database import Database

S = model.EventStatus
NOW = clock.now_us()
_gen = ids.IdGenerator(1, 0, ids.clock_ms(), ids.clock_ms() + 10**9)


def new_event(
    priority: int = 5,
    due_at: int = NOW,
    email: str = "a@example.com",
    type_: str = "order",
    expires_at: int | None = None,
    mobile_phone: str | None = None,
) -> events_store.NewEvent:
    return events_store.NewEvent(
        id=_gen.next(),
        type=type_,
        channel=None,
        email=email,
        mobile_phone=mobile_phone,
        push_token=None,
        external_id=None,
        ctx=b'{"n":1}',
        priority=priority,
        source="api",
        received_at=NOW,
        scheduled_at=None,
        expires_at=expires_at,
        due_at=due_at,
    )


async def insert(db: Database, *events: events_store.NewEvent) -> None:
    async with db.transaction() as conn:
        await events_store.insert_events(conn, events)


async def claim(
    db: Database, limit: int = 100, now: int = NOW, lease: int = 60_000_000
) -> list[model.Event]:
    async with db.transaction() as conn:
        return await queue.claim_due_events(conn, now=now, lease_until=now + lease, limit=limit)


async def test_insert_and_read_back(db: Database) -> None:
    e = new_event()
    await insert(db, e)
    async with db.connection() as conn:
        got = await events_store.get_event(conn, e.id)
    assert got is not None
    assert (got.id, got.type, got.status, got.ctx, got.recipient.email, got.attempts) == (
        e.id,
        "order",
        S.PENDING,
        {"n": 1},
        "a@example.com",
        0,
    )


async def test_high_instance_ids_round_trip(db: Database) -> None:
    g = ids.IdGenerator(250, 1, ids.clock_ms(), ids.clock_ms() + 10**6)
    e = new_event()
    e = events_store.NewEvent(**{**{f: getattr(e, f) for f in e.__struct_fields__}, "id": g.next()})
    await insert(db, e)
    async with db.connection() as conn:
        got = await events_store.get_event(conn, e.id)
    assert got is not None
    assert got.id == e.id
    assert ids.instance_of(got.id) == 250


async def test_a_batch_of_events_is_written_field_for_field(db: Database) -> None:
    # Several events at once take the one-statement path (PostgreSQL: arrays and unnest);
    # every field, NULL or not, and high-instance (negative when stored) ids round-trip.
    high = ids.IdGenerator(250, 2, ids.clock_ms(), ids.clock_ms() + 10**6)
    batch = [
        events_store.NewEvent(
            id=(high if n % 2 else _gen).next(),
            type=f"type{n}",
            channel="sms" if n % 3 == 0 else None,
            email=None if n % 3 == 0 else f"u{n}@example.com",
            mobile_phone="+4917012345" if n % 3 == 0 else None,
            push_token="tok\u00e9n" if n == 4 else None,
            external_id=f"ext-{n}" if n % 2 else None,
            ctx=b'{"n":%d,"s":"\xc3\xa9"}' % n,
            priority=n % 10,
            source="soap" if n == 5 else "api",
            received_at=NOW + n,
            scheduled_at=NOW + 1000 if n == 2 else None,
            expires_at=NOW + 10**9 if n == 3 else None,
            due_at=NOW + n,
            ctx_issues='[{"field":"$.n"}]' if n == 6 else None,
        )
        for n in range(7)
    ]
    async with db.transaction() as conn:
        assert len(events_store.insert_steps(batch, conn.dialect)) == 1
        await events_store.insert_events(conn, batch)
    async with db.connection() as conn:
        stored = [await events_store.get_event(conn, e.id) for e in batch]
    for e, got in zip(batch, stored, strict=True):
        assert got is not None
        assert (
            got.id,
            got.type,
            got.channel,
            got.recipient,
            got.ctx,
            got.priority,
            got.status,
            got.source,
            got.received_at,
            got.scheduled_at,
            got.expires_at,
            got.due_at,
            got.attempts,
            got.ctx_issues,
        ) == (
            e.id,
            e.type,
            None if e.channel is None else model.Channel(e.channel),
            model.Recipient(e.email, e.mobile_phone, e.push_token, e.external_id),
            msgspec.json.decode(e.ctx),
            e.priority,
            S.PENDING,
            e.source,
            e.received_at,
            e.scheduled_at,
            e.expires_at,
            e.due_at,
            0,
            e.ctx_issues,
        )


async def test_claim_takes_priority_then_oldest_and_skips_future(db: Database) -> None:
    low = new_event(priority=1, due_at=NOW - 10)
    high_old = new_event(priority=9, due_at=NOW - 5)
    high_new = new_event(priority=9, due_at=NOW - 1)
    future = new_event(priority=9, due_at=NOW + 10**9)
    await insert(db, low, high_new, future, high_old)
    got = await claim(db, limit=2)
    assert {e.id for e in got} == {high_old.id, high_new.id}
    assert all(e.status is S.PROCESSING and e.attempts == 1 for e in got)
    rest = await claim(db)
    assert [e.id for e in rest] == [low.id]
    assert await claim(db) == []


async def test_a_claim_says_the_routing_revision_and_the_quarantined_addresses(
    db: Database,
) -> None:
    async def claimed() -> tuple[list[int], set[str], int | None]:
        claim = await queue.claim_due(db, now=NOW, lease_until=NOW + 60_000_000, limit=10)
        return [e.id for e in claim.events], claim.quarantined, claim.revision

    first = new_event()
    await insert(db, first)
    assert await claimed() == ([first.id], set(), 0)  # nothing published yet
    async with db.transaction() as conn:
        await catalog.bump_routing_revision(conn)
        await catalog.bump_routing_revision(conn)
    held = [
        (model.Channel.EMAIL, "gone@example.com", None),
        (model.Channel.EMAIL, "back@example.com", NOW - 1),  # expired
        (model.Channel.SMS, "+33612345678", NOW + 1_000_000),
        (model.Channel.EMAIL, "+33600000000", None),  # an email entry does not hold a phone
    ]
    async with db.transaction() as conn:
        for channel, address, expires_at in held:
            entry = model.QuarantineEntry(channel, address, "550", "smtp", NOW - 10, expires_at)
            await quarantine_store.add(conn, entry)
    events = [
        new_event(email="gone@example.com"),
        new_event(email="back@example.com", mobile_phone="+33612345678"),
        new_event(email="ok@example.com", mobile_phone="+33600000000"),
    ]
    await insert(db, *events)
    assert await claimed() == (
        sorted(e.id for e in events),
        {"gone@example.com", "+33612345678"},
        2,
    )
    assert await claimed() == ([], set(), None)  # nothing claimed, nothing said


async def test_expired_lease_is_claimed_again(db: Database) -> None:
    e = new_event()
    await insert(db, e)
    first = await claim(db, lease=1000)
    assert [x.attempts for x in first] == [1]
    assert await claim(db, now=NOW + 500) == []
    again = await claim(db, now=NOW + 2000)
    assert [(x.id, x.attempts) for x in again] == [(e.id, 2)]


async def test_outcome_is_fenced_by_the_claim(db: Database) -> None:
    e = new_event()
    await insert(db, e)
    await claim(db, lease=1000)
    await claim(db, now=NOW + 2000)  # a second worker took it over (attempt 2)
    stale = queue.Completion(e.id, 1, S.DELIVERY_FAILED, NOW, reason="stale")
    fresh = queue.Completion(e.id, 2, S.PROCESSED, NOW, sent_at=NOW, finished_at=NOW)
    async with db.transaction() as conn:
        await queue.record_outcomes(conn, [stale])
        await queue.record_outcomes(conn, [fresh])
    async with db.connection() as conn:
        got = await events_store.get_event(conn, e.id)
    assert got is not None
    assert got.status is S.PROCESSED
    assert got.reason is None


async def test_a_batch_of_outcomes_is_fenced_and_written_row_by_row(db: Database) -> None:
    # One group commit's batch (on PostgreSQL one statement a table for all of it): each
    # outcome lands on its own event under its own claim, whatever the others hold.
    sent, retried, taken_over, failed = (new_event(email=f"{n}@example.com") for n in "abcd")
    await insert(db, sent, retried, taken_over, failed)
    claims = {e.id: e.attempts for e in await claim(db, lease=1000)}
    await claim(db, now=NOW + 2000)  # expired leases: every event is now on attempt 2...
    async with db.transaction() as conn:  # ...but three outcomes of attempt 2 come back
        for e in (sent, retried, failed):
            await queue.release_events(conn, [(e.id, 2)], NOW)
    claims |= {e.id: e.attempts for e in await claim(db, now=NOW + 3000) if e.id != taken_over.id}

    def delivery(e: events_store.NewEvent, kind: model.OutcomeKind) -> model.Delivery:
        return model.Delivery(
            e.id, claims[e.id], model.Channel.EMAIL, "smtp", f"{e.email}", f"<{e.id}@x>",
            kind, "250 ok" if kind is model.OutcomeKind.DELIVERED else "451 later", 10, 20, NOW,
        )  # fmt: skip

    batch = [
        queue.Completion(
            sent.id, claims[sent.id], S.PROCESSED, NOW, sent_at=NOW + 7, finished_at=NOW + 8,
            publication_id=5, template_version_id=6,
            delivery=delivery(sent, model.OutcomeKind.DELIVERED),
        ),
        queue.Completion(
            retried.id, claims[retried.id], S.PENDING, NOW + 9_000, reason="451 later",
            delivery=delivery(retried, model.OutcomeKind.RETRY),
        ),
        # Attempt 1's outcome of an event another worker holds (attempt 2): fenced out.
        queue.Completion(taken_over.id, 1, S.DELIVERY_FAILED, NOW, reason="stale"),
        queue.Completion(failed.id, claims[failed.id], S.ROUTING_FAILED, NOW, reason="none"),
    ]  # fmt: skip
    await db.write_many(queue.outcome_steps(batch, db.dialect))
    async with db.connection() as conn:
        got = {
            e.id: await events_store.get_event(conn, e.id)
            for e in (sent, retried, taken_over, failed)
        }
        logs = {e.id: await events_store.get_deliveries(conn, e.id) for e in (sent, retried)}
    summary = {
        i: (e.status, e.attempts, e.reason, e.sent_at, e.finished_at, e.due_at)
        for i, e in got.items()
        if e is not None
    }
    assert summary == {
        sent.id: (S.PROCESSED, 2, None, NOW + 7, NOW + 8, NOW),
        retried.id: (S.PENDING, 2, "451 later", None, None, NOW + 9_000),
        taken_over.id: (S.PROCESSING, 2, None, None, None, NOW + 2000 + 60_000_000),
        failed.id: (S.ROUTING_FAILED, 2, "none", None, None, NOW),
    }
    assert logs == {
        sent.id: [delivery(sent, model.OutcomeKind.DELIVERED)],
        retried.id: [delivery(retried, model.OutcomeKind.RETRY)],
    }


async def test_record_outcomes_writes_delivery_and_quarantine(db: Database) -> None:
    e = new_event(email="gone@example.com")
    await insert(db, e)
    (claimed,) = await claim(db)
    delivery = model.Delivery(
        e.id,
        1,
        model.Channel.EMAIL,
        "smtp",
        "gone@example.com",
        "m@x",
        model.OutcomeKind.FAILED,
        "550 5.1.1 no such user",
        120,
        3400,
        NOW,
    )
    q = model.QuarantineEntry(
        model.Channel.EMAIL, "gone@example.com", "550 5.1.1", "smtp", NOW, event_id=e.id
    )
    async with db.transaction() as conn:
        await queue.record_outcomes(
            conn,
            [
                queue.Completion(
                    e.id,
                    claimed.attempts,
                    S.DELIVERY_FAILED,
                    NOW,
                    reason="550 5.1.1 no such user",
                    finished_at=NOW,
                    delivery=delivery,
                    quarantine=q,
                )
            ],
        )
    async with db.connection() as conn:
        got = await events_store.get_event(conn, e.id)
        log = await events_store.get_deliveries(conn, e.id)
        found = await quarantine_store.find_quarantined(
            conn, model.Channel.EMAIL, ["gone@example.com", "ok@example.com"], NOW
        )
    assert got is not None
    assert got.status is S.DELIVERY_FAILED
    assert log == [delivery]
    assert found == {"gone@example.com"}


async def test_a_guarded_step_is_built_and_written_only_if_its_guard_finds_a_row(
    db: Database,
) -> None:
    marker, guarded, other = (
        new_event(email="marker@example.com"),
        new_event(email="guarded@example.com"),
        new_event(email="other@example.com"),
    )
    guard = database.sql("SELECT 1 FROM events WHERE email = 'marker@example.com'")
    built: list[int] = []

    def rows() -> list[tuple[object, ...]]:
        built.append(1)
        return [guarded.row()]

    async def stored() -> set[str | None]:
        async with db.connection() as conn:
            return {e.recipient.email for e in await events_store.list_events(
                conn, events_store.EventFilter(), 10)}  # fmt: skip

    # No row for the guard: the rows are not even built, the other steps are written.
    await db.write_many(
        [
            (events_store.INSERT_EVENT, [other.row()]),
            (events_store.INSERT_EVENT, database.OnlyIf(guard, rows)),
        ]
    )
    assert built == []
    assert await stored() == {"other@example.com"}

    # The guard sees what an earlier step of the same transaction wrote.
    await db.write_many(
        [
            (events_store.INSERT_EVENT, [marker.row()]),
            (events_store.INSERT_EVENT, database.OnlyIf(guard, rows)),
        ]
    )
    assert built == [1]
    assert await stored() == {"other@example.com", "marker@example.com", "guarded@example.com"}

    # Rows that cannot be built undo the whole transaction.
    def broken() -> list[tuple[object, ...]]:
        raise ValueError("no rows")

    late = new_event(email="late@example.com")
    try:
        await db.write_many(
            [
                (events_store.INSERT_EVENT, [late.row()]),
                (events_store.INSERT_EVENT, database.OnlyIf(guard, broken)),
            ]
        )
    except ValueError:
        pass
    else:
        raise AssertionError("the failing step did not fail the write")
    assert "late@example.com" not in await stored()


async def test_retry_goes_back_to_pending_until_due(db: Database) -> None:
    e = new_event()
    await insert(db, e)
    (c,) = await claim(db)
    async with db.transaction() as conn:
        await queue.record_outcomes(
            conn, [queue.Completion(e.id, c.attempts, S.PENDING, NOW + 5000, reason="421")]
        )
    assert await claim(db, now=NOW + 4000) == []
    assert [x.attempts for x in await claim(db, now=NOW + 5000)] == [2]


async def test_concurrent_claims_never_share_an_event(db: Database) -> None:
    await insert(db, *[new_event() for _ in range(300)])
    results = await asyncio.gather(*[claim(db, limit=40) for _ in range(10)])
    claimed = [e.id for batch in results for e in batch]
    assert len(claimed) == 300
    assert len(set(claimed)) == 300


async def test_pause_and_resume(db: Database) -> None:
    e = new_event()
    await insert(db, e)
    (c,) = await claim(db)
    async with db.transaction() as conn:
        await queue.record_outcomes(conn, [queue.Completion(e.id, c.attempts, S.PAUSED, NOW)])
        assert await queue.resume_paused(conn, "order", NOW + 1) == 1
    assert [x.id for x in await claim(db, now=NOW + 1)] == [e.id]


async def test_listing_filters_and_pages(db: Database) -> None:
    batch = [new_event(email=f"u{i}@example.com", type_="a" if i % 2 else "b") for i in range(7)]
    await insert(db, *batch)
    async with db.connection() as conn:
        page1 = await events_store.list_events(conn, events_store.EventFilter(type="a"), 2)
        page2 = await events_store.list_events(
            conn, events_store.EventFilter(type="a", before_id=page1[-1].id), 2
        )
        by_recipient = await events_store.list_events(
            conn, events_store.EventFilter(recipient="u4@example.com"), 10
        )
        pending = await events_store.list_events(
            conn, events_store.EventFilter(status=S.PENDING, received_from=NOW), 100
        )
    odd = sorted((e.id for e in batch[1::2]), reverse=True)
    assert [e.id for e in page1 + page2] == odd[:4]
    assert [e.id for e in by_recipient] == [batch[4].id]
    assert len(pending) == 7


async def test_publications_and_routing_revision(db: Database) -> None:
    content = model.EmailContent(subject="s", html="h")
    async with db.transaction() as conn:
        before = await catalog.routing_revision(conn)
        await catalog.upsert_event_type(conn, "order", "Order", model.Channel.EMAIL, NOW)
        vid, number = await catalog.add_template_version(
            conn, "order", model.Channel.EMAIL, content, "me", NOW
        )
        pid = await catalog.publish(conn, "order", model.Channel.EMAIL, vid, content, "me", NOW)
        same = await catalog.publish(conn, "order", model.Channel.EMAIL, vid, content, "me", NOW)
    assert number == 1
    assert pid == same
    async with db.connection() as conn:
        revision, types, pubs = await catalog.load_routing(conn)
    assert revision > before
    assert [t.name for t in types] == ["order"]
    assert [(p.id, p.version_id, p.content) for p in pubs] == [(pid, vid, content)]
    async with db.transaction() as conn:
        assert await catalog.unpublish(conn, "order", model.Channel.EMAIL)
    async with db.connection() as conn:
        assert await catalog.active_publications(conn) == []


async def test_idempotency_answers(db: Database) -> None:
    async with db.transaction() as conn:
        assert await idempotency.remember_answer(conn, 1, "k", "h1", 201, "{}", NOW, NOW - 10)
        assert not await idempotency.remember_answer(conn, 1, "k", "h2", 201, "{}", NOW, NOW - 10)
    async with db.connection() as conn:
        assert await idempotency.find_answer(conn, 1, "k", NOW - 10) == ("h1", 201, "{}")
        assert await idempotency.find_answer(conn, 2, "k", NOW - 10) is None
        assert await idempotency.find_answer(conn, 1, "k", NOW) is None  # forgotten


async def test_keys(db: Database) -> None:
    async with db.transaction() as conn:
        created = await keys.insert_key(conn, "web", "abcdefgh", "hash", frozenset({"events"}), NOW)
        assert await keys.revoke_key(conn, "abcdefgh", NOW)
        assert not await keys.revoke_key(conn, "abcdefgh", NOW)
    async with db.connection() as conn:
        found = await keys.find_key(conn, "abcdefgh")
    assert found is not None
    assert found[1] == "hash"
    assert found[0].id == created.id
    assert found[0].revoked_at == NOW
    assert found[0].scopes == {"events"}


async def test_outbox_keeps_one_copy_per_message_id(db: Database) -> None:
    m = model.OutboxMessage(
        1,
        "x@y",
        model.Channel.EMAIL,
        "a@example.com",
        "s@example.com",
        "subj",
        "<p>h</p>",
        "t",
        "raw",
        NOW,
    )
    async with db.transaction() as conn:
        await outbox.add_messages(conn, [m, m])
    async with db.connection() as conn:
        listed = await outbox.list_messages(conn, before_id=None, recipient=None, limit=10)
        assert len(listed) == 1
        assert listed[0].subject == "subj"
        assert await outbox.messages_for_event(conn, 1) == listed


async def test_id_slots_are_exclusive_and_resume_after_reservation(db: Database) -> None:
    now = ids.clock_ms()
    async with db.transaction() as conn:
        a = await nodes.acquire_slot(conn, 3, "a", now, 1000)
        b = await nodes.acquire_slot(conn, 3, "b", now, 1000)
        assert a[0] != b[0]
        assert await nodes.renew_slot(conn, 3, a[0], "a", now + 5000)
        assert not await nodes.renew_slot(conn, 3, a[0], "b", now + 5000)
    # "a" dies; after its lease, "c" gets the slot and starts after a's reservation.
    async with db.transaction() as conn:
        c = await nodes.acquire_slot(conn, 3, "c", now + 6000, 1000)
    assert c[0] == a[0]
    assert c[1] > now + 5000
    async with db.transaction() as conn:
        assert not await nodes.renew_slot(conn, 3, a[0], "a", now + 9000)


async def test_sqlite_writers_of_several_processes_take_turns(sqlite_url: str) -> None:
    # Each process's writer holds an flock on "<file>-writer" while it writes, so the next
    # one is woken by the kernel the moment it may write (SQLite's busy handler sleeps).
    path = database.sqlite_path(sqlite_url)
    first = await database.connect(sqlite_url)
    second = await database.connect(sqlite_url)
    probe = os.open(f"{path}-writer", os.O_RDWR)
    try:

        def free() -> bool:
            try:
                fcntl.flock(probe, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return False
            fcntl.flock(probe, fcntl.LOCK_UN)
            return True

        assert free()
        one, two = new_event(), new_event()
        async with first.transaction() as conn:
            await events_store.insert_events(conn, [one])
            assert not free()
            waiting = asyncio.ensure_future(
                second.write_many(events_store.insert_steps([two], "sqlite"))
            )
            await asyncio.sleep(0.1)
            assert not waiting.done()  # its turn comes after our COMMIT
        await waiting
        assert free()
        async with second.connection() as conn:
            assert await events_store.get_event(conn, one.id) is not None
            assert await events_store.get_event(conn, two.id) is not None
    finally:
        os.close(probe)
        await first.close()
        await second.close()
