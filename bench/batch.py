"""Per-event costs of the batch intake, measured inside one process (no HTTP, no client).

    .venv/bin/python bench/batch.py                    # SQLite and PostgreSQL, 500-event batches
    .venv/bin/python bench/batch.py --db sqlite --size 1000

Two figures, each in CPU microseconds per event (this process's user + system time, so a
machine busy with other work distorts them less than wall-clock rates would), the median of
seven rounds of ``--batches`` batches:

- ``prepare``: :func:`tidings.api.events.prepare_batch` on a ``POST /api/v1/events/batch``
  body: decoding, validation, ids and encoding the per-item answer;
- ``commit``: ``App.ingest.commit`` of the prepared events (the group-commit writer; on
  SQLite its writer thread is counted, as it is this process's time).

The bodies are what ``bench/run.py``'s batch scenario posts.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

import run
from tidings import server
from tidings.api import events as api_events
from tidings.app import App
from tidings.settings import Settings


async def measure(database_url: str, size: int, batches: int) -> tuple[float, float]:
    body = json.dumps({"events": [json.loads(run.event_body(n)) for n in range(size)]}).encode()
    settings = Settings.load().replace(database_url=database_url, max_batch_events=size)
    prepare: list[float] = []
    commit: list[float] = []
    async with App.running(settings, run_worker=False) as app:
        await server.first_start(app)
        server.freeze_heap()  # as a started server does
        for _ in range(3):  # warm-up: caches, the first growth of the database
            await app.ingest.commit(api_events.prepare_batch(app, body).events)
        for _ in range(7):
            spent_prepare = spent_commit = 0.0
            for _ in range(batches):
                started = time.process_time()
                prepared = api_events.prepare_batch(app, body)
                middle = time.process_time()
                await app.ingest.commit(prepared.events)
                spent_prepare += middle - started
                spent_commit += time.process_time() - middle
            prepare.append(spent_prepare / (batches * size) * 1e6)
            commit.append(spent_commit / (batches * size) * 1e6)
    return statistics.median(prepare), statistics.median(commit)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--db", default="sqlite,postgresql")
    parser.add_argument("--size", type=int, default=500, help="events a batch")
    parser.add_argument("--batches", type=int, default=20, help="batches a round")
    args = parser.parse_args()
    print("| database | batch | prepare µs/event | commit µs/event | total µs/event |")
    print("|---|---|---|---|---|")
    with tempfile.TemporaryDirectory(prefix="tidings-bench-") as tmp:
        for db in args.db.split(","):
            with run.fresh_database(db, Path(tmp)) as url:
                prepare, commit = asyncio.run(measure(url, args.size, args.batches))
            print(
                f"| {db} | {args.size} | {prepare:.1f} | {commit:.1f} | {prepare + commit:.1f} |",
                flush=True,
            )


if __name__ == "__main__":
    main()
