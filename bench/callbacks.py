"""Status callbacks: what enqueueing costs the worker's outcome commits, and how fast the
sender delivers callbacks to a local receiver.

    .venv/bin/python -m bench.callbacks --db sqlite|postgresql [--events 5000]

1. *Recording*: final outcomes of claimed events (first attempts, one delivery each) are
   written in batches of 500 as the worker writes them (``queue.outcome_steps`` through
   ``Database.write_many``), (a) without the callback step, (b) with it and no subscription,
   (c) with it and one subscription. Figures are microseconds per recorded outcome, best of 3
   rounds of 2,000, the variants interleaved.
2. *Sending*: the callbacks of ``--events`` events (one subscription) are sent by the
   :class:`tidings.callbacks.Sender` to the receiver of ``bench/webhook.py`` (its own process,
   checking every signature); callbacks per second from the first claim to the last
   ``delivered``.

PostgreSQL: ``--postgres-url`` names a server where a scratch database is created and dropped.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
import uuid
from typing import Any

import asyncpg
from bench import webhook as webhook_bench

from tidings import callbacks, clock, ids, model
from tidings.channels import webhook
from tidings.settings import Settings
from tidings.store import callbacks as callbacks_store
from tidings.store import database, migrate, queue
from tidings.store import events as events_store
from tidings.store import subscriptions as subscriptions_store

S = model.EventStatus
_gen = ids.IdGenerator(1, 0, ids.clock_ms(), ids.clock_ms() + 10**9)


def new_event(now: int) -> events_store.NewEvent:
    return events_store.NewEvent(
        id=_gen.next(),
        type="orderShipped",
        channel=None,
        email="jack@example.com",
        mobile_phone=None,
        push_token=None,
        external_id=None,
        ctx=b'{"order":"A-1"}',
        priority=5,
        source="api",
        received_at=now,
        scheduled_at=None,
        expires_at=None,
        due_at=now,
    )


async def claimed_events(db: database.Database, count: int) -> list[model.Event]:
    now = clock.now_us()
    async with db.transaction() as conn:
        await events_store.insert_events(conn, [new_event(now) for _ in range(count)])
    found: list[model.Event] = []
    while len(found) < count:
        claim = await queue.claim_due(
            db, now=clock.now_us(), lease_until=clock.now_us() + 600_000_000, limit=1000
        )
        found += claim.events
    return found


def completions(events: list[model.Event]) -> list[queue.Completion]:
    now = clock.now_us()
    done = []
    for e in events:
        delivery = model.Delivery(
            e.id, e.attempts, model.Channel.EMAIL, "smtp", "jack@example.com", f"{e.id}@x",
            model.OutcomeKind.DELIVERED, "250 ok", 10, 20, now,
        )  # fmt: skip
        done.append(
            queue.Completion(
                e.id,
                e.attempts,
                S.PROCESSED,
                now,
                sent_at=now,
                finished_at=now,
                delivery=delivery,
                event=e,
            )
        )
    return done


async def record_us(db: database.Database, count: int, *, with_step: bool) -> float:
    batch = completions(await claimed_events(db, count))
    started = time.perf_counter()
    for i in range(0, count, 500):
        steps = queue.outcome_steps(batch[i : i + 500], db.dialect)
        if not with_step:
            steps = [s for s in steps if s[0] is not callbacks_store.ENQUEUE]
        await db.write_many(steps)
    return (time.perf_counter() - started) / count * 1e6


async def best_of(db: database.Database, rounds: int, **variants: bool) -> dict[str, float]:
    """Each variant ``rounds`` times, interleaved (so that load changes hit all alike)."""
    best = dict.fromkeys(variants, float("inf"))
    for _ in range(rounds):
        for name, with_step in variants.items():
            best[name] = min(best[name], await record_us(db, 2000, with_step=with_step))
    return {name: round(value, 1) for name, value in best.items()}


async def scratch_url(kind: str, admin: str) -> tuple[str, Any]:
    if kind == "sqlite":
        folder = tempfile.mkdtemp(prefix="tidings-bench-")
        return f"sqlite:///{folder}/bench.db", None
    name = f"tidings_bench_{uuid.uuid4().hex[:8]}"
    conn = await asyncpg.connect(admin)
    await conn.execute(f'CREATE DATABASE "{name}"')
    await conn.close()

    async def drop() -> None:
        c = await asyncpg.connect(admin)
        await c.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await c.close()

    return admin.rsplit("/", 1)[0] + f"/{name}", drop


async def main_async(args: argparse.Namespace, receiver_url: str) -> dict[str, Any]:
    url, drop = await scratch_url(args.db, args.postgres_url)
    await asyncio.to_thread(migrate.upgrade, url)
    db = await database.connect(url)
    result: dict[str, Any] = {"db": args.db}
    try:
        await record_us(db, 2000, with_step=True)  # warm-up
        result.update(
            await best_of(db, 3, record_us_without_step=False, record_us_no_subscription=True)
        )
        async with db.transaction() as conn:
            await subscriptions_store.add_subscription(
                conn, receiver_url, webhook_bench.SECRET, now=clock.now_us()
            )
        result.update(
            await best_of(db, 3, record_us_without_step_1=False, record_us_one_subscription=True)
        )
        # Send everything enqueued so far plus --events more.
        done = completions(await claimed_events(db, args.events))
        await db.write_many(queue.outcome_steps(done, db.dialect))
        async with db.connection() as conn:
            pending = await conn.fetchval(
                database.sql("SELECT COUNT(*) FROM callbacks WHERE state = 'pending'")
            )
        settings = Settings.from_mapping(
            {"database_url": url, "webhook_allow_private": True, "callback_poll_interval": 0.01}
        )
        transport = webhook.WebhookTransport(
            webhook.WebhookConfig(allow_private=True, pool_size=settings.callback_concurrency)
        )
        sender = callbacks.Sender(db, transport, settings)
        started = time.perf_counter()
        sender.start()
        while sender.sent < pending:  # noqa: ASYNC110 (a benchmark's progress check)
            await asyncio.sleep(0.05)
        elapsed = time.perf_counter() - started
        await sender.stop()
        await transport.aclose()
        async with db.connection() as conn:
            delivered = await conn.fetchval(
                database.sql("SELECT COUNT(*) FROM callbacks WHERE state = 'delivered'")
            )
        result.update(
            callbacks=int(pending),
            delivered=int(delivered),
            send_seconds=round(elapsed, 2),
            callbacks_per_second=round(int(pending) / elapsed),
        )
    finally:
        await db.close()
        if drop is not None:
            await drop()
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--db", choices=["sqlite", "postgresql"], default="sqlite")
    parser.add_argument("--events", type=int, default=5000)
    parser.add_argument(
        "--postgres-url",
        default=os.environ.get(
            "TIDINGS_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
        ),
    )
    args = parser.parse_args()
    port = webhook_bench.free_port()
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    receiver = subprocess.Popen(
        [sys.executable, "-m", "bench.webhook", "--serve", str(port)], cwd=root
    )
    try:
        webhook_bench.wait_listening(port)
        import uvloop

        result = uvloop.run(main_async(args, f"http://127.0.0.1:{port}/callbacks"))
    finally:
        receiver.terminate()
        receiver.wait(10)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
