"""Hourly roll-ups on SQLite and PostgreSQL: the reports read from them give the numbers a scan
of every event gives, whenever the roll-up ran, for events finishing across an hour boundary,
events still queued, and after retention purged the events."""

from __future__ import annotations

import asyncio
import random

import msgspec

from tests.conftest import test_settings as settings_for
from tests.integration.test_retention import new_event
from tidings import clock, ids, model, reports
from tidings.app import App
from tidings.store import events as events_store
from tidings.store import reports as scan
from tidings.store import retention, rollups
from tidings.store.database import Database, sql

S = model.EventStatus
HOUR = rollups.HOUR_US
DAY = 24 * HOUR

SET = sql(
    """UPDATE events SET status = $2, scheduled_at = $3, claimed_at = $4, sent_at = $5,
       finished_at = $6 WHERE id = $1"""
)
HOURLY_ROWS = sql("SELECT COUNT(*) FROM hourly_stats")


async def add(
    db: Database,
    received: int,
    status: S,
    *,
    type_: str = "order",
    scheduled: int | None = None,
    claimed: int | None = None,
    sent: int | None = None,
    finished: int | None = None,
) -> int:
    e = new_event(received, type_)
    async with db.transaction() as conn:
        await events_store.insert_events(conn, [msgspec.structs.replace(e, scheduled_at=scheduled)])
        await conn.execute(SET, ids.to_db(e.id), str(status), scheduled, claimed, sent, finished)
    return e.id


async def finish(db: Database, event_id: int, status: S, claimed: int, finished: int) -> None:
    sent = finished if status in (S.PROCESSED, S.DELIVERY_FAILED) else None
    async with db.transaction() as conn:
        await conn.execute(SET, ids.to_db(event_id), str(status), None, claimed, sent, finished)


async def many(db: Database, now: int, count: int) -> None:
    """Events over the last month: every final status, some still queued, a few scheduled."""
    rng = random.Random(11)
    statuses = [S.PROCESSED] * 6 + [S.DELIVERY_FAILED, S.IGNORED, S.TOO_OLD, S.ROUTING_FAILED]
    for n in range(count):
        received = now - rng.randrange(30 * DAY if n % 3 else DAY)
        type_ = rng.choice(["order", "reset", "welcome"])
        if n % 17 == 0:
            await add(db, received, rng.choice([S.PENDING, S.PAUSED]), type_=type_)
            continue
        status = rng.choice(statuses)
        scheduled = received + rng.randrange(60_000_000) if n % 5 == 0 else None
        claimed = received + rng.randrange(1_000, 5_000_000)
        sent = claimed + rng.randrange(1_000, 900_000)
        finished = sent if status in (S.PROCESSED, S.DELIVERY_FAILED) else claimed
        await add(
            db,
            received,
            status,
            type_=type_,
            scheduled=scheduled,
            claimed=claimed,
            sent=sent if status in (S.PROCESSED, S.DELIVERY_FAILED) else None,
            finished=finished,
        )


def _rounded(rows: list[scan.TimingRow]) -> list[tuple[object, ...]]:
    # Averages: AVG() in one, a sum over a count in the other; equal to far below a µs.
    return [
        (
            r.bucket,
            r.events,
            *(tuple(round(v, 3) for v in t) for t in (r.queue, r.sending, r.processing)),
        )
        for r in rows
    ]


async def assert_same_as_scan(db: Database, now: int) -> None:
    """Every report over a day, a week and a month, read both ways."""
    async with db.connection() as conn:
        for period in (reports.Period.DAY, reports.Period.WEEK, reports.Period.MONTH):
            w = reports.window(period, now)
            assert rollups.covers(w.start, w.bucket)
            args = (w.start, w.end, w.bucket)
            assert await rollups.event_history(conn, *args) == await scan.event_history(conn, *args)
            assert await rollups.event_history(conn, *args, "reset") == await scan.event_history(
                conn, *args, "reset"
            )
            assert await rollups.service_level(conn, *args) == await scan.service_level(conn, *args)
            assert _rounded(await rollups.processing_times(conn, *args)) == _rounded(
                await scan.processing_times(conn, *args)
            )
            assert await rollups.status_history(conn, *args) == await scan.status_history(
                conn, *args
            )


async def roll_up(db: Database, now: int, lag: int = 0) -> rollups.RolledUp:
    async with db.transaction() as conn:
        return await rollups.roll_up(conn, now, lag)


async def test_roll_ups_answer_like_the_scan_before_and_after_each_roll_up(db: Database) -> None:
    now = clock.now_us()
    await many(db, now, 400)
    await assert_same_as_scan(db, now)  # nothing rolled up yet: all live
    done = await roll_up(db, now - 2 * DAY)  # part of it
    assert done.rows > 0
    assert done.until == now - 2 * DAY
    await assert_same_as_scan(db, now)
    done = await roll_up(db, now)
    assert done.since == now - 2 * DAY
    await assert_same_as_scan(db, now)
    async with db.connection() as conn:
        rolled = await conn.fetchval(HOURLY_ROWS)
    assert rolled > 100
    # A roll-up that finds nothing new changes nothing.
    again = await roll_up(db, now)
    assert (again.since, again.until, again.rows) == (now, now, 0)
    await assert_same_as_scan(db, now)


async def test_events_finishing_across_an_hour_boundary_count_in_their_hour(
    db: Database,
) -> None:
    now = clock.now_us()
    boundary = now - now % HOUR - 3 * HOUR
    late = await add(db, boundary - 1, S.PROCESSING, claimed=boundary - 500)
    queued = await add(db, boundary - 2, S.PENDING)
    await add(
        db,
        boundary - 3,
        S.PROCESSED,
        claimed=boundary - 100,
        sent=boundary + 5,
        finished=boundary + 5,
    )
    # The claim still processing holds the watermark back: its outcome may be recorded with
    # a finished_at older than the moment it commits.
    done = await roll_up(db, now, lag=10_000_000)
    assert done.until == boundary - 500
    await assert_same_as_scan(db, now)
    # It finishes in the next hour (recorded "late"), the queued one finishes much later.
    await finish(db, late, S.PROCESSED, boundary - 500, boundary + 2_000_000)
    await assert_same_as_scan(db, now)
    await roll_up(db, now)
    await assert_same_as_scan(db, now)
    # Claimed after that roll-up (so after its watermark), finished later still.
    await finish(db, queued, S.DELIVERY_FAILED, now + 100, now + 200)
    await assert_same_as_scan(db, now)
    await roll_up(db, now + 1000)
    await assert_same_as_scan(db, now)
    async with db.connection() as conn:
        history = await rollups.event_history(conn, boundary - DAY, boundary + HOUR, HOUR)
    # All three in the hour before the boundary (the hour of their receipt), none after.
    assert [(r.bucket, r.events, r.sent, r.success) for r in history] == [
        (boundary - HOUR, 3, 3, 2)
    ]


async def test_reports_use_roll_ups_that_outlive_purged_events(db: Database) -> None:
    now = clock.now_us()
    old = now - 20 * DAY
    for i in range(4):
        await add(
            db, old + i, S.PROCESSED, claimed=old + 1000, sent=old + 3000, finished=old + 3000
        )
    queued = await add(db, old, S.PENDING)
    w = reports.window(reports.Period.MONTH, now)
    before = await reports.processing_time(db, w)
    history = await reports.event_history(db, w)
    purged = await retention.purge(db, now=now, event_age=10 * 86400, report_age=0, pause=0)
    assert purged.events == 4
    async with db.connection() as conn:
        assert await events_store.get_event(conn, queued) is not None
        # The scan has no times left for the purged day; the roll-ups keep them.
        assert await scan.processing_times(conn, w.start, w.end, w.bucket) == []
    assert await reports.processing_time(db, w) == before
    assert [line.events for line in before.lines] == [4]  # type: ignore[union-attr]
    assert await reports.event_history(db, w) == history


async def test_retention_purges_only_rolled_up_events(db: Database) -> None:
    now = clock.now_us()
    old = now - 20 * DAY
    await add(db, old, S.PROCESSING, claimed=old + 10)  # holds the watermark back
    kept = await add(db, old, S.PROCESSED, claimed=old + 20, sent=old + 30, finished=old + 30)
    gone = await add(db, old, S.TOO_OLD, claimed=old + 1, finished=old + 1)
    purged = await retention.purge(db, now=now, event_age=10 * 86400, report_age=0, pause=0)
    assert purged.events == 1
    async with db.connection() as conn:
        assert await events_store.get_event(conn, gone) is None
        assert await events_store.get_event(conn, kept) is not None
        assert await rollups.mark(conn) == old + 10
    w = reports.window(reports.Period.MONTH, now)
    # Still counted: the purged one from the roll-ups, the others live.
    assert [line.events for line in (await reports.event_history(db, w)).lines] == [3]


async def test_the_app_rolls_up_periodically(database_url: str) -> None:
    now = clock.now_us()
    settings = settings_for(database_url, rollup_interval=0.05, rollup_lag=0.0)
    async with App.running(settings, migrate_schema=False) as app:
        await add(
            app.db, now - HOUR, S.PROCESSED, claimed=now - HOUR, sent=now - 10, finished=now - 10
        )
        for _ in range(200):
            async with app.db.connection() as conn:
                if await conn.fetchval(HOURLY_ROWS):
                    break
            await asyncio.sleep(0.02)
        async with app.db.connection() as conn:
            assert await conn.fetchval(HOURLY_ROWS) == 1
            assert await rollups.mark(conn) > now - 10
