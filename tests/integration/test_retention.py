"""Retention on SQLite and PostgreSQL: old events go in small batches with their deliveries
and outbox messages, counted first into daily aggregates that outlive them; and the schema the
migrations build is the one ``schema.py`` declares."""

from __future__ import annotations

import asyncio
import collections
from typing import Any

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy.ext.asyncio import create_async_engine

from tests.conftest import test_settings as settings_for
from tidings import clock, ids, model
from tidings.app import App
from tidings.store import bounces as bounces_store
from tidings.store import events as events_store
from tidings.store import migrate, queue, retention, schema
from tidings.store import outbox as outbox_store
from tidings.store.database import Database, sql

S = model.EventStatus
DAY = retention.DAY_US
NOW = clock.now_us()
_gen = ids.IdGenerator(2, 0, ids.clock_ms(), ids.clock_ms() + 10**9)

FINISH = sql(
    """UPDATE events SET status = $2, attempts = $3, sent_at = $4, finished_at = $5
       WHERE id = $1"""
)
COUNT = {
    name: sql(f"SELECT COUNT(*) FROM {name}")
    for name in ("events", "deliveries", "outbox", "bounces")
}


def new_event(received_at: int, type_: str = "order") -> events_store.NewEvent:
    return events_store.NewEvent(
        id=_gen.next(),
        type=type_,
        channel=None,
        email="a@example.com",
        mobile_phone=None,
        push_token=None,
        external_id=None,
        ctx=b"{}",
        priority=5,
        source="api",
        received_at=received_at,
        scheduled_at=None,
        expires_at=None,
        due_at=received_at,
    )


async def add(
    db: Database,
    received_at: int,
    status: S,
    *,
    type_: str = "order",
    send_us: int = 1000,
    attempts: int = 1,
) -> int:
    """One event in ``status`` with a delivery log entry, an outbox message and a bounce; its
    id."""
    e = new_event(received_at, type_)
    sent = received_at + send_us if status is S.PROCESSED else None
    finished = received_at + send_us if status in model.FINAL_STATUSES else None
    async with db.transaction() as conn:
        await events_store.insert_events(conn, [e])
        await conn.execute(FINISH, ids.to_db(e.id), str(status), attempts, sent, finished)
        await conn.execute(
            queue.INSERT_DELIVERY,
            ids.to_db(e.id),
            1,
            "email",
            "smtp",
            "a@example.com",
            f"{e.id}@x",
            "delivered",
            "250 ok",
            10,
            20,
            received_at,
        )
        await outbox_store.add_messages(
            conn,
            [
                model.OutboxMessage(
                    e.id, f"{e.id}@x", model.Channel.EMAIL, "a@x", "s@x", "s", "", "", "", NOW
                )
            ],
        )
        await bounces_store.add(
            conn,
            model.Bounce(
                e.id,
                model.Channel.EMAIL,
                "a@example.com",
                f"{e.id}@x",
                model.BounceKind.SOFT,
                "4.2.2",
                "mailbox full",
                received_at,
            ),
        )
    return e.id


async def counts(db: Database) -> dict[str, int]:
    async with db.connection() as conn:
        return {name: int(await conn.fetchval(q)) for name, q in COUNT.items()}


async def report(db: Database) -> dict[tuple[int, str, str], tuple[int, int, int]]:
    async with db.connection() as conn:
        rows = await retention.daily_report(conn, 0, retention.day_of(NOW) + DAY)
    return {(r.day, r.event_type, r.status): (r.events, r.attempts, r.send_us) for r in rows}


async def test_old_final_events_are_purged_in_batches_and_counted(db: Database) -> None:
    old = NOW - 40 * DAY
    gone = [await add(db, old + i, S.PROCESSED, send_us=1000 * (i + 1)) for i in range(10)]
    gone += [await add(db, old - DAY, S.DELIVERY_FAILED, type_="reset", attempts=3)]
    gone += [await add(db, old - DAY, S.TOO_OLD, type_="reset") for _ in range(2)]
    kept = [
        await add(db, old, S.PAUSED),  # not final: kept whatever its age
        await add(db, old, S.PENDING),
        await add(db, NOW - DAY, S.PROCESSED),  # recent
    ]
    before = await report(db)
    done = await retention.purge(
        db, now=NOW, event_age=30 * 86400, report_age=360 * 86400, batch=4, pause=0
    )
    assert (done.events, done.batches, done.skipped) == (13, 4, False)
    assert await counts(db) == {"events": 3, "deliveries": 3, "outbox": 3, "bounces": 3}
    async with db.connection() as conn:
        for event_id in gone:
            assert await events_store.get_event(conn, event_id) is None
        for event_id in kept:
            assert await events_store.get_event(conn, event_id) is not None
    # Reports see the same numbers: purged events from the aggregates, the rest live.
    assert await report(db) == before
    day = retention.day_of(old)
    assert before[(day, "order", "processed")] == (10, 10, sum(1000 * (i + 1) for i in range(10)))
    assert before[(retention.day_of(old - DAY), "reset", "deliveryFailed")] == (1, 3, 0)
    async with db.connection() as conn:
        rows = await retention.daily_report(conn, day, day + DAY)
    (processed,) = [r for r in rows if r.status is S.PROCESSED]
    assert processed.average_send_us == 5500
    # Nothing more to do the second time.
    again = await retention.purge(db, now=NOW, event_age=30 * 86400, report_age=0, pause=0)
    assert (again.events, again.batches) == (0, 0)


MARK_PROOF = sql("UPDATE events SET proof_id = $2, source = 'proof' WHERE id = $1")
ADD_PROOF = sql(
    """INSERT INTO proofs (event_type, channel, version_id, version_number, profile, bundle,
       requested_by, created_at) VALUES ('order', 'email', 1, 1, '', '{}', 'ann', $1)
       RETURNING id"""
)


async def test_proof_events_are_purged_but_never_counted(db: Database) -> None:
    old = NOW - 40 * DAY
    await add(db, old, S.PROCESSED)
    proofs = []
    for received in (old + 1, NOW - DAY):
        proof = await add(db, received, S.PROCESSED)
        async with db.transaction() as conn:
            proofs.append(int(await conn.fetchval(ADD_PROOF, received)))
            await conn.execute(MARK_PROOF, ids.to_db(proof), proofs[-1])
    counted = {(retention.day_of(old), "order", "processed"): (1, 1, 1000)}
    assert await report(db) == counted
    done = await retention.purge(db, now=NOW, event_age=30 * 86400, report_age=0, pause=0)
    assert done.events == 2  # the old proof goes too, without an aggregate
    assert await report(db) == counted
    assert (await counts(db))["events"] == 1
    # The old proof goes with its last event; the recent one stays with its event.
    async with db.connection() as conn:
        assert await conn.fetchval(sql("SELECT COUNT(*) FROM proofs")) == 1
        assert await conn.fetchval(sql("SELECT id FROM proofs")) == proofs[1]


async def test_aggregates_are_added_to_and_purged_after_their_own_age(db: Database) -> None:
    old = NOW - 40 * DAY
    await add(db, old, S.PROCESSED)
    await retention.purge(db, now=NOW, event_age=30 * 86400, report_age=0, pause=0)
    await add(db, old + 1, S.PROCESSED)  # same day, purged later: added to the same row
    await retention.purge(db, now=NOW, event_age=30 * 86400, report_age=0, pause=0)
    assert list((await report(db)).values()) == [(2, 2, 2000)]
    # A year later the aggregate goes too.
    later = NOW + 330 * DAY
    done = await retention.purge(db, now=later, event_age=30 * 86400, report_age=360 * 86400)
    assert done.stats == 1
    assert await report(db) == {}


async def test_concurrent_purges_count_every_event_once(db: Database) -> None:
    old = NOW - 40 * DAY
    for i in range(30):
        await add(db, old + i, S.PROCESSED, type_=f"t{i % 3}")
    results = await asyncio.gather(
        *(
            retention.purge(db, now=NOW, event_age=30 * 86400, report_age=0, batch=5, pause=0)
            for _ in range(3)
        )
    )
    purged = sum(r.events for r in results)
    # PostgreSQL: a purge that finds another one holding the lock stops; run once more.
    purged += (await retention.purge(db, now=NOW, event_age=30 * 86400, report_age=0)).events
    assert purged == 30
    assert await counts(db) == {"events": 0, "deliveries": 0, "outbox": 0, "bounces": 0}
    totals = collections.Counter({k[1]: v[0] for k, v in (await report(db)).items()})
    assert totals == {"t0": 10, "t1": 10, "t2": 10}


async def test_purging_does_not_wait_for_the_queue(database_url: str, db: Database) -> None:
    """A worker holding a claim (a transaction with row locks, on PostgreSQL) does not block
    a purge, and the purge never takes a queued event."""
    if not database_url.startswith("postgresql"):
        pytest.skip("SQLite serialises writers; nothing to overlap")
    old = NOW - 40 * DAY
    queued = await add(db, old, S.PENDING)
    await add(db, old, S.PROCESSED)
    async with db.transaction() as conn:
        claimed = await queue.claim_due_events(conn, now=NOW, lease_until=NOW + 10**6, limit=10)
        assert [e.id for e in claimed] == [queued]
        done = await asyncio.wait_for(
            retention.purge(db, now=NOW, event_age=30 * 86400, report_age=0, pause=0), 5
        )
        assert done.events == 1
    assert (await counts(db))["events"] == 1


async def test_the_app_purges_periodically(database_url: str) -> None:
    settings = settings_for(
        database_url, event_retention=86400.0, retention_interval=0.05, report_retention=0.0
    )
    async with App.running(settings, migrate_schema=False) as app:
        await add(app.db, NOW - 2 * DAY, S.PROCESSED)
        for _ in range(200):
            if (await counts(app.db))["events"] == 0:
                break
            await asyncio.sleep(0.02)
        assert await counts(app.db) == {"events": 0, "deliveries": 0, "outbox": 0, "bounces": 0}
        assert len(await report(app.db)) == 1


async def test_the_app_purges_only_what_its_rollup_lag_has_rolled_up(database_url: str) -> None:
    """TIDINGS_ROLLUP_LAG holds for the purge's roll-up too: an event that finished within
    the lag is not rolled up yet, so the periodic purge keeps it."""
    settings = settings_for(
        database_url,
        event_retention=86400.0,
        retention_interval=0.05,
        report_retention=0.0,
        rollup_interval=0.0,
        rollup_lag=4 * 86400.0,
    )
    async with App.running(settings, migrate_schema=False) as app:
        await add(app.db, NOW - 6 * DAY, S.PROCESSED)  # finished before now - lag: goes
        await add(app.db, NOW - 2 * DAY, S.PROCESSED)  # past retention, within the lag: stays
        for _ in range(200):
            if (await counts(app.db))["events"] == 1:
                break
            await asyncio.sleep(0.02)
        await asyncio.sleep(0.3)  # several more rounds
        assert (await counts(app.db))["events"] == 1


# -- the migrations build the declared schema --------------------------------------------------


def _compare(conn: sa.Connection) -> list[Any]:
    context = MigrationContext.configure(conn, opts={"compare_type": True})
    return list(compare_metadata(context, schema.metadata))


async def test_migrations_produce_the_declared_schema(database_url: str) -> None:
    assert await migrate.current(database_url) == migrate.head() == "0012"
    url = migrate.sqlalchemy_url(database_url)
    if url.startswith("sqlite"):
        engine = sa.create_engine(url)
        with engine.connect() as conn:
            differences = _compare(conn)
        engine.dispose()
    else:
        async_engine = create_async_engine(url)
        async with async_engine.connect() as async_conn:
            differences = await async_conn.run_sync(_compare)
        await async_engine.dispose()
    assert differences == []
