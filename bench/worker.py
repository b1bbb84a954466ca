"""The worker alone draining a full queue to smtp-sink: CPU time per email.

    .venv/bin/python bench/worker.py                     # SQLite and PostgreSQL, 20,000 events
    .venv/bin/python bench/worker.py --db sqlite --events 50000

The events (``bench/run.py``'s ``cartAbandonment`` body, each with its own recipient) are
committed through the batch intake first; then one :class:`tidings.engine.worker.Worker`
(claims, routing, rendering, MIME, pipelined SMTP to Postfix's ``smtp-sink``, outcome
commits) runs on uvloop until the queue is empty. Printed: this process's CPU time (user +
system, the SQLite writer thread included; PostgreSQL's own work is in its server process)
per delivered email, and the wall-clock rate, which other work on the machine distorts more.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
from pathlib import Path

import uvloop

sys.path.insert(0, str(Path(__file__).parent))

import run
from tidings import server
from tidings.api import events as api_events
from tidings.app import App
from tidings.engine import worker
from tidings.settings import Settings
from tidings.store import database

QUEUED = database.sql("SELECT COUNT(*) FROM events WHERE status IN ('pending', 'processing')")


async def drain(database_url: str, sink: int, count: int) -> tuple[float, float, float]:
    """(CPU µs per email, of which the event loop's thread, emails per second) for ``count``
    events."""
    size = 500
    bodies = [
        json.dumps(
            {"events": [json.loads(run.event_body(b * size + n)) for n in range(size)]}
        ).encode()
        for b in range(count // size)
    ]
    settings = Settings.load().replace(
        database_url=database_url,
        max_batch_events=size,
        smtp_host="127.0.0.1",
        smtp_port=sink,
        smtp_tls="none",
    )
    async with App.running(settings, run_worker=False) as app:
        await server.first_start(app)
        for body in bodies:
            await app.ingest.commit(api_events.prepare_batch(app, body).events)
        server.freeze_heap()  # as a started server does
        w = worker.Worker(
            app.db,
            settings,
            transports=app.transports,
            renderer=app.renderer,
            counters=app.metrics,
            enricher=app.enricher,
        )
        cpu, loop_cpu, wall = time.process_time(), time.thread_time(), time.perf_counter()
        w.start()
        left = count
        while left:
            await asyncio.sleep(0.05)
            async with app.db.connection() as conn:
                left = int(await conn.fetchval(QUEUED))
        cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
        loop_cpu = time.thread_time() - loop_cpu
        await w.stop()
    return cpu / count * 1e6, loop_cpu / count * 1e6, count / wall


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--db", default="sqlite,postgresql")
    parser.add_argument("--events", type=int, default=20_000)
    args = parser.parse_args()
    print("| database | events | CPU µs/email | of which the event loop's thread | emails/s |")
    print("|---|---:|---:|---:|---:|")
    with tempfile.TemporaryDirectory(prefix="tidings-bench-") as tmp, run.smtp_sink() as sink:
        for db in args.db.split(","):
            with run.fresh_database(db, Path(tmp)) as url:
                cpu, loop_cpu, rate = uvloop.run(drain(url, sink, args.events))
            print(
                f"| {db} | {args.events:,} | {cpu:.1f} | {loop_cpu:.1f} | {rate:,.0f} |", flush=True
            )


if __name__ == "__main__":
    main()
