"""The console's store on SQLite and PostgreSQL: operators and sessions, and the report
queries (live events plus the daily aggregates of purged ones)."""

from __future__ import annotations

import pytest

from tidings import clock, ids, model, operators, reports
from tidings.settings import Settings
from tidings.store import events as events_store
from tidings.store import reports as store
from tidings.store.database import Database, sql

S = model.EventStatus
HOUR = 3600 * 1_000_000
DAY = 24 * HOUR
_gen = ids.IdGenerator(3, 0, ids.clock_ms(), ids.clock_ms() + 10**9)

FINISH = sql(
    """UPDATE events SET status = $2, attempts = 1, claimed_at = $3, sent_at = $4,
       finished_at = $5 WHERE id = $1"""
)
STATS = sql(
    """INSERT INTO daily_stats (day, event_type, status, events, attempts, send_us)
       VALUES ($1, $2, $3, $4, $5, $6)"""
)
#: Purged events are in the hourly roll-ups too (retention purges only rolled-up events).
ROLLED = sql(
    """INSERT INTO hourly_stats (hour, event_type, status, events, timed, queue_sum,
       sending_sum, processing_sum) VALUES ($1, $2, $3, $4, 0, 0, 0, 0)"""
)


async def add_event(
    db: Database,
    received_at: int,
    status: S = S.PENDING,
    *,
    type_: str = "order",
    queue_us: int = 1000,
    send_us: int = 2000,
) -> int:
    event_id = _gen.next()
    event = events_store.NewEvent(
        id=event_id,
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
    async with db.transaction() as conn:
        await events_store.insert_events(conn, [event])
        if status is not S.PENDING:
            claimed = received_at + queue_us
            sent = claimed + send_us if status in (S.PROCESSED, S.DELIVERY_FAILED) else None
            await conn.execute(
                FINISH, ids.to_db(event_id), str(status), claimed, sent, sent or claimed
            )
    return event_id


# ---------------------------------------------------------------------------- operators


async def test_operators_and_sessions(db: Database) -> None:
    ada = await operators.create(db, "ada", "a long password", model.OperatorRole.ADMIN)
    assert ada.role is model.OperatorRole.ADMIN
    with pytest.raises(operators.OperatorError, match="already"):
        await operators.create(db, "ada", "another password", model.OperatorRole.OPERATOR)
    with pytest.raises(operators.OperatorError, match="at least 10"):
        await operators.create(db, "bob", "short", model.OperatorRole.OPERATOR)
    with pytest.raises(operators.OperatorError, match="name"):
        await operators.create(db, "<bob>", "a long password", model.OperatorRole.OPERATOR)

    assert await operators.authenticate(db, "ada", "a long password") == ada
    assert await operators.authenticate(db, "ada", "a wrong password") is None
    assert await operators.authenticate(db, "nobody", "a long password") is None
    assert await operators.authenticate(db, "ada", "x" * 5000) is None

    token, csrf = await operators.open_session(db, ada, ttl=60)
    found = await operators.find_session(db, token)
    assert found is not None
    assert (found.operator, found.csrf_token) == (ada, csrf)
    assert await operators.find_session(db, token + "x") is None
    assert await operators.find_session(db, "") is None

    expired, _ = await operators.open_session(db, ada, ttl=-1)
    assert await operators.find_session(db, expired) is None

    assert await operators.set_password(db, "ada", "a new long password")
    assert await operators.find_session(db, token) is None  # sessions end with a new password
    assert await operators.authenticate(db, "ada", "a new long password") == ada
    assert not await operators.set_password(db, "nobody", "a new long password")

    token, _ = await operators.open_session(db, ada, ttl=60)
    assert await operators.set_disabled(db, "ada")
    assert await operators.find_session(db, token) is None
    assert await operators.authenticate(db, "ada", "a new long password") is None
    assert [o.disabled for o in await operators.list_all(db)] == [True]
    assert await operators.set_disabled(db, "ada", False)
    assert await operators.authenticate(db, "ada", "a new long password") is not None

    token, _ = await operators.open_session(db, ada, ttl=60)
    await operators.close_session(db, token)
    assert await operators.find_session(db, token) is None


async def test_first_admin_only_on_an_empty_table(db: Database) -> None:
    password = await operators.first_admin(db)
    assert password is not None
    admin = await operators.authenticate(db, "admin", password)
    assert admin is not None
    assert admin.role is model.OperatorRole.ADMIN
    assert await operators.first_admin(db) is None


# ---------------------------------------------------------------------------- reports


async def test_event_history_adds_live_events_and_purged_days(db: Database) -> None:
    now = clock.now_us()
    today = now - now % DAY
    await add_event(db, now - 10 * 60 * 1_000_000, S.PROCESSED)
    await add_event(db, now - 10 * 60 * 1_000_000, S.DELIVERY_FAILED)
    await add_event(db, now - 5 * 60 * 1_000_000, S.IGNORED, type_="reset")
    await add_event(db, now - 60 * 1_000_000)  # still pending
    await add_event(db, now - 40 * DAY, S.PROCESSED)  # outside a week
    old_day = today - 3 * DAY
    async with db.transaction() as conn:
        await conn.execute(STATS, old_day, "order", "processed", 7, 8, 7000)
        await conn.execute(STATS, old_day, "order", "deliveryFailed", 2, 6, 0)
        await conn.execute(STATS, old_day, "order", "tooOld", 1, 3, 0)
        for status, events in (("processed", 7), ("deliveryFailed", 2), ("tooOld", 1)):
            await conn.execute(ROLLED, old_day + 5 * 3_600_000_000, "order", status, events)

    week = reports.window(reports.Period.WEEK, now)
    report = await reports.event_history(db, week)
    lines = {(line.time[:10], line.eventType): line for line in report.lines}
    old = lines[(clock.format_iso(old_day)[:10], "order")]
    assert (old.events, old.sent, old.success) == (10, 9, 7)
    recent = lines[(clock.format_iso(today)[:10], "order")]
    assert (recent.events, recent.sent, recent.success) == (3, 2, 1)
    reset = lines[(clock.format_iso(today)[:10], "reset")]
    assert (reset.events, reset.sent, reset.success) == (1, 0, 0)
    assert len(lines) == 3

    only = await reports.event_history(db, week, "reset")
    assert [line.eventType for line in only.lines] == ["reset"]

    hour = await reports.event_history(db, reports.window(reports.Period.HOUR, now))
    assert sum(line.events for line in hour.lines) == 4
    assert report.bucketSeconds == 86400

    text = reports.to_csv(report)
    assert text.splitlines()[0] == "time,eventType,events,sent,success"
    assert len(text.splitlines()) == 4


async def test_service_level_and_processing_time(db: Database) -> None:
    now = clock.now_us()
    start = now - 30 * 60 * 1_000_000
    await add_event(db, start, S.PROCESSED, queue_us=1_000, send_us=3_000)
    await add_event(db, start, S.PROCESSED, queue_us=5_000, send_us=9_000)
    await add_event(db, start, S.DELIVERY_FAILED, queue_us=1_000, send_us=1_000)
    await add_event(db, start, S.ROUTING_FAILED)
    await add_event(db, start, S.IGNORED)
    w = reports.window(reports.Period.DAY, now)

    service = await reports.service_level(db, w)
    assert len(service.lines) == 1
    line = service.lines[0]
    assert isinstance(line, reports.ServiceLine)
    assert (line.incoming, line.outgoing, line.errors) == (5, 2, 2)
    assert line.errorRate == 40.0
    assert line.averageSendingMs == 6.0
    assert line.incomingPerSecond == round(5 / 3600, 4)

    timing = await reports.processing_time(db, w)
    t = timing.lines[0]
    assert isinstance(t, reports.TimingLine)
    assert t.events == 2
    assert (t.queueMinMs, t.queueAvgMs, t.queueMaxMs) == (1.0, 3.0, 5.0)
    assert (t.sendingMinMs, t.sendingAvgMs, t.sendingMaxMs) == (3.0, 6.0, 9.0)
    assert (t.processingMinMs, t.processingAvgMs, t.processingMaxMs) == (4.0, 9.0, 14.0)


async def test_dashboard_numbers_and_gauges(db: Database) -> None:
    now = clock.now_us()
    for _ in range(3):
        await add_event(db, now - 60 * 1_000_000, S.PROCESSED, queue_us=5_000_000)
    await add_event(db, now - 60 * 1_000_000, S.DELIVERY_FAILED)
    await add_event(db, now - 2 * HOUR, S.PROCESSED)
    await add_event(db, now)
    settings = Settings.from_mapping({"threshold_time_in_queue": "4/8"})
    board = await reports.dashboard(db, settings, now)
    assert board.hour == {"processed": 3, "deliveryFailed": 1, "pending": 1}
    assert board.day["processed"] == 4
    assert board.waiting == {"pending": 1}
    gauges = {g.name: g for g in board.gauges}
    assert gauges["pending_queue"].value == 1
    assert gauges["pending_queue"].level == "ok"
    assert gauges["error_rate"].value == 25.0
    assert gauges["error_rate"].level == "alert"
    assert gauges["time_in_queue"].value == 5.0
    assert gauges["time_in_queue"].level == "warning"
    assert len(board.day_history) == 24
    assert sum(h[1] for h in board.day_history) == 6


async def test_queries_use_the_receipt_time_index(db: Database) -> None:
    """The reports read a window of receipt times through ``ix_events_received_at``."""
    explain = "EXPLAIN QUERY PLAN " if db.dialect == "sqlite" else "EXPLAIN "
    query = store.STATUSES.sqlite if db.dialect == "sqlite" else store.STATUSES.postgresql
    now = clock.now_us()
    async with db.transaction() as conn:
        if db.dialect == "postgresql":  # an empty table: make the planner show the index
            await conn.execute(sql("SET LOCAL enable_seqscan = off"))
        rows = await conn.fetch(
            sql(explain + query.replace("?1", "$1").replace("?2", "$2")), now, now
        )
    plan = " ".join(str(v) for row in rows for v in row)
    assert "ix_events_received_at" in plan, plan
