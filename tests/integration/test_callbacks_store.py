"""Status callbacks in the store, on SQLite and PostgreSQL: subscriptions, the outbox written
with the final status, claims, attempts and the log."""

from __future__ import annotations

import json

from tests.integration.test_store import NOW, claim, insert, new_event
from tidings import model
from tidings.store import callbacks, queue, retention, rollups, subscriptions
from tidings.store import events as events_store
from tidings.store.database import Database

S = model.EventStatus
State = model.CallbackState


async def subscribe(db: Database, url: str = "https://example.com/cb", **filters: list[str]) -> int:
    async with db.transaction() as conn:
        sub = await subscriptions.add_subscription(conn, url, "s3cret", now=NOW, **filters)
    return sub.id


def delivered(event: model.Event) -> model.Delivery:
    return model.Delivery(
        event.id,
        event.attempts,
        model.Channel.EMAIL,
        "smtp",
        "a@example.com",
        "m@x",
        model.OutcomeKind.DELIVERED,
        "250 ok",
        10,
        20,
        NOW + 5,
    )


async def finish(
    db: Database, event: model.Event, status: S = S.PROCESSED, *, attempt: int | None = None
) -> None:
    completion = queue.Completion(
        event.id,
        event.attempts if attempt is None else attempt,
        status,
        NOW,
        reason=None if status is S.PROCESSED else "why",
        finished_at=NOW + 10,
        delivery=delivered(event) if status is S.PROCESSED else None,
        event=event,
    )
    await db.write_many(queue.outcome_steps([completion], db.dialect))


async def log(db: Database, **filters: object) -> list[model.Callback]:
    async with db.connection() as conn:
        return await callbacks.list_log(conn, **filters)  # type: ignore[arg-type]


async def test_subscriptions_add_list_remove(db: Database) -> None:
    first = await subscribe(db, event_types=["order", "reset"], statuses=["processed"])
    second = await subscribe(db, "https://example.org/x")
    async with db.connection() as conn:
        listed = await subscriptions.list_subscriptions(conn)
    assert [s.id for s in listed] == [first, second]
    assert listed[0].event_types == ("order", "reset")
    assert listed[0].statuses == ("processed",)
    assert listed[1].event_types == ()
    assert listed[0].secret == "s3cret"
    async with db.transaction() as conn:
        assert await subscriptions.remove_subscription(conn, first)
        assert not await subscriptions.remove_subscription(conn, first)
        assert not await subscriptions.remove_subscription(conn, 999)
    async with db.connection() as conn:
        assert [s.id for s in await subscriptions.list_subscriptions(conn)] == [second]
        gone = await subscriptions.get_subscription(conn, first)
    assert gone is not None
    assert not gone.active


async def test_final_status_enqueues_one_callback_per_matching_subscription(db: Database) -> None:
    everything = await subscribe(db)
    orders = await subscribe(db, event_types=["order"])
    resets = await subscribe(db, event_types=["reset"])
    failures = await subscribe(db, statuses=["deliveryFailed", "tooOld"])
    removed = await subscribe(db)
    async with db.transaction() as conn:
        await subscriptions.remove_subscription(conn, removed)
    e = new_event(type_="order")
    await insert(db, e)
    (claimed,) = await claim(db)
    await finish(db, claimed)
    found = await log(db)
    assert sorted(c.subscription_id for c in found) == [everything, orders]
    assert {c.state for c in found} == {State.PENDING}
    payload = json.loads(found[0].payload)
    assert payload == {
        "kind": "status",
        "eventId": str(e.id),
        "PKey": str(e.id),
        "type": "order",
        "status": "processed",
        "reason": None,
        "channel": "email",
        "recipient": {"email": "a@example.com"},
        "finishedAt": payload["finishedAt"],
        "deliveries": [
            {
                "attempt": 1,
                "channel": "email",
                "transport": "smtp",
                "address": "a@example.com",
                "messageId": "m@x",
                "outcome": "delivered",
                "reply": "250 ok",
                "at": payload["deliveries"][0]["at"],
            }
        ],
    }
    assert payload["finishedAt"].endswith("Z")
    assert payload["deliveries"][0]["at"][:19] == payload["finishedAt"][:19]

    # the failure filter matches another event's final failure
    f = new_event(type_="reset")
    await insert(db, f)
    (claimed_f,) = await claim(db)
    await finish(db, claimed_f, S.DELIVERY_FAILED)
    found_f = await log(db, event_id=f.id)
    assert sorted(c.subscription_id for c in found_f) == sorted([everything, resets, failures])
    assert json.loads(found_f[0].payload)["deliveries"] == []


async def test_no_callback_for_retries_or_fenced_out_outcomes_and_none_twice(
    db: Database,
) -> None:
    await subscribe(db)
    e = new_event()
    await insert(db, e)
    (claimed,) = await claim(db)
    retry = queue.Completion(e.id, claimed.attempts, S.PENDING, NOW, reason="later", event=claimed)
    await db.write_many(queue.outcome_steps([retry], db.dialect))
    assert await log(db) == []
    (again,) = await claim(db, now=NOW + 1)
    await finish(db, again, attempt=again.attempts - 1)  # a stale claim: refused by the fence
    assert await log(db) == []
    await finish(db, again)
    await finish(db, again)  # recorded twice (a commit whose answer was lost): enqueued once
    assert len(await log(db)) == 1


async def test_outcomes_enqueue_callbacks_only_while_a_subscription_is_active(
    db: Database,
) -> None:
    before, during, after = new_event(), new_event(), new_event()
    await insert(db, before, during, after)
    claimed = {e.id: e for e in await claim(db)}
    await finish(db, claimed[before.id])  # no subscription yet
    assert await log(db) == []
    sub = await subscribe(db)
    await finish(db, claimed[during.id])
    assert [(c.event_id, c.subscription_id) for c in await log(db)] == [(during.id, sub)]
    async with db.transaction() as conn:
        await subscriptions.remove_subscription(conn, sub)
    await finish(db, claimed[after.id])
    assert await log(db, event_id=after.id) == []
    async with db.connection() as conn:
        statuses = [(await events_store.get_event(conn, e.id)) for e in (before, during, after)]
    assert [e.status if e else None for e in statuses] == [S.PROCESSED] * 3


def a_receipt(event: model.Event, state: str, provider_id: str = "msg1") -> model.Receipt:
    return model.Receipt(
        channel=model.Channel.SMS,
        provider_id=provider_id,
        state=state,
        error="001",
        text=f"id:{provider_id} stat:{state}",
        received_at=NOW + 50,
        event_id=event.id,
        attempt=1,
        transport="smpp b:2775",
    )


async def test_receipt_callbacks_follow_kinds_and_receipt_filters(db: Database) -> None:
    everything = await subscribe(db)
    statuses_only = await subscribe(db, kinds=["status"])
    bad_news = await subscribe(db, kinds=["receipt"], receipt_states=["expired", "undeliverable"])
    processed_only = await subscribe(db, statuses=["processed"])
    e = new_event()
    await insert(db, e)
    (claimed,) = await claim(db)
    await finish(db, claimed)
    status_subs = {c.subscription_id for c in await log(db) if c.kind == "status"}
    assert status_subs == {everything, statuses_only, processed_only}
    async with db.connection() as conn:
        stored = await events_store.get_event(conn, e.id)
    assert stored is not None
    async with db.transaction() as conn:
        delivered_count = await callbacks.enqueue_receipt(
            conn, stored, a_receipt(stored, "delivered")
        )
        undeliverable_count = await callbacks.enqueue_receipt(
            conn, stored, a_receipt(stored, "undeliverable", "msg2")
        )
    # a final-status filter does not filter receipts; a receipt filter does
    assert delivered_count == 2
    assert undeliverable_count == 3
    receipts = [c for c in await log(db) if c.kind == "receipt"]
    by_state: dict[str, set[int]] = {}
    for c in receipts:
        body = json.loads(c.payload)
        by_state.setdefault(body["receipt"]["state"], set()).add(c.subscription_id)
    assert by_state == {
        "delivered": {everything, processed_only},
        "undeliverable": {everything, bad_news, processed_only},
    }
    body = json.loads(receipts[0].payload)
    assert body["kind"] == "receipt"
    assert body["status"] == "processed"  # the event's status; the receipt's state apart
    assert body["receipt"]["providerId"] in ("msg1", "msg2")
    assert body["receipt"]["transport"] == "smpp b:2775"
    assert body["receipt"]["receivedAt"].endswith("Z")
    assert len(body["deliveries"]) == 1


async def test_claim_record_and_log(db: Database) -> None:
    sub = await subscribe(db)
    e = new_event()
    await insert(db, e)
    (claimed,) = await claim(db)
    await finish(db, claimed)
    (cb,) = await callbacks.claim_due(db, now=NOW + 100, lease_until=NOW + 10_000, limit=10)
    assert cb.attempts == 1
    assert cb.subscription_id == sub
    assert await callbacks.claim_due(db, now=NOW + 200, lease_until=NOW + 10_000, limit=10) == []
    first = model.CallbackAttempt(cb.id, 1, model.OutcomeKind.RETRY, "500 oops", 1500, NOW + 300)
    async with db.transaction() as conn:
        assert await callbacks.record_attempt(conn, first, state=State.PENDING, next_at=NOW + 500)
    assert await callbacks.claim_due(db, now=NOW + 400, lease_until=NOW + 10_000, limit=10) == []
    (again,) = await callbacks.claim_due(db, now=NOW + 500, lease_until=NOW + 10_000, limit=10)
    assert again.attempts == 2
    second = model.CallbackAttempt(cb.id, 2, model.OutcomeKind.DELIVERED, "200 OK", 900, NOW + 600)
    stale = model.CallbackAttempt(cb.id, 1, model.OutcomeKind.FAILED, "late", 1, NOW + 700)
    async with db.transaction() as conn:
        assert await callbacks.record_attempt(conn, second, state=State.DELIVERED, next_at=NOW)
        assert not await callbacks.record_attempt(conn, stale, state=State.FAILED, next_at=NOW)
    (done,) = await log(db, subscription_id=sub, state=State.DELIVERED)
    assert done.delivered_at == NOW + 600
    assert done.last_reply == "200 OK"
    async with db.connection() as conn:
        attempts = await callbacks.attempts_of(conn, [done.id])
    assert [a.reply for a in attempts[done.id]] == ["500 oops", "200 OK", "late"]
    assert await log(db, state=State.PENDING) == []
    assert await log(db, subscription_id=sub + 1) == []


async def test_log_pages_newest_first(db: Database) -> None:
    await subscribe(db)
    for _ in range(5):
        await insert(db, new_event())
    for event in await claim(db):
        await finish(db, event)
    page = await log(db, limit=2)
    rest = await log(db, before_id=page[-1].id, limit=10)
    ids_ = [c.id for c in page + rest]
    assert ids_ == sorted(ids_, reverse=True)
    assert len(ids_) == 5


async def test_removing_a_subscription_gives_up_its_pending_callbacks(db: Database) -> None:
    sub = await subscribe(db)
    await insert(db, new_event())
    (claimed,) = await claim(db)
    await finish(db, claimed)
    async with db.transaction() as conn:
        await subscriptions.remove_subscription(conn, sub)
    (cb,) = await log(db)
    assert cb.state is State.FAILED
    assert cb.last_reply == "subscription removed"
    assert await callbacks.claim_due(db, now=NOW + 100, lease_until=NOW + 1000, limit=10) == []


async def test_retention_purges_callbacks_with_their_events(db: Database) -> None:
    await subscribe(db)
    await insert(db, new_event())
    (claimed,) = await claim(db)
    await finish(db, claimed)
    (cb,) = await callbacks.claim_due(db, now=NOW + 100, lease_until=NOW + 1000, limit=10)
    tried = model.CallbackAttempt(cb.id, 1, model.OutcomeKind.DELIVERED, "200 OK", 1, NOW)
    async with db.transaction() as conn:
        await callbacks.record_attempt(conn, tried, state=State.DELIVERED, next_at=NOW)
    async with db.transaction() as conn:
        await rollups.roll_up(conn, NOW + 100, 0)  # retention takes rolled-up events only
        assert await retention.purge_batch(conn, NOW + 1) == 1
    assert await log(db) == []
    async with db.connection() as conn:
        assert await callbacks.attempts_of(conn, [cb.id]) == {cb.id: []}


async def test_after_retries_the_payload_lists_every_delivery(db: Database) -> None:
    await subscribe(db)
    e = new_event()
    await insert(db, e)
    (first,) = await claim(db)
    tried = model.Delivery(
        e.id,
        1,
        model.Channel.EMAIL,
        "smtp",
        "a@example.com",
        "m@x",
        model.OutcomeKind.RETRY,
        "451 later",
        10,
        20,
        NOW + 1,
    )
    retry = queue.Completion(e.id, 1, S.PENDING, NOW, reason="later", delivery=tried, event=first)
    await db.write_many(queue.outcome_steps([retry], db.dialect))
    (second,) = await claim(db, now=NOW + 1)
    assert second.attempts == 2
    await finish(db, second)
    (cb,) = await log(db)
    listed = json.loads(cb.payload)["deliveries"]
    assert [(d["attempt"], d["outcome"], d["reply"]) for d in listed] == [
        (1, "retry", "451 later"),
        (2, "delivered", "250 ok"),
    ]
    # Read back from the log or built from the completion, entries have one shape.
    assert all(set(d) == set(listed[0]) for d in listed)
    assert all(d["at"].endswith("Z") and len(d["at"]) == 24 for d in listed)
