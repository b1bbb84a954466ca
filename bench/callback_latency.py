"""Status-callback latency: from an event's final status to the subscriber's receiving the POST.

    .venv/bin/python -m bench.callback_latency --db sqlite|postgresql [--events 60]

One process runs an App (worker and callback sender, email into the outbox, the example
event type published, ``callback_poll_interval`` at its default unless ``--poll`` says
otherwise) and a receiver on loopback that notes when each callback arrives. Events are
accepted one at a time, at random intervals (0.1 to 0.5 s, so that they do not line up with
the sender's poll); each callback's latency is its arrival time minus the ``finishedAt`` its
payload carries (the time the worker recorded the final status, to the millisecond). Prints
the median, 90th percentile and maximum in milliseconds.

PostgreSQL: ``--postgres-url`` names a server where a scratch database is created and dropped.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime
import json
import os
import random
import statistics
import time
from typing import Any

from bench import callbacks as callbacks_bench

from tidings import ingest, model, server, subscriptions
from tidings.app import App
from tidings.settings import Settings

CTX = {"cartAmount": "$ 125", "lastProduct": "Leather motorbike jacket", "firstName": "Jack"}


class Receiver:
    """A minimal HTTP/1.1 receiver: notes (arrival time, payload) and answers 200."""

    def __init__(self) -> None:
        self.arrivals: list[tuple[float, dict[str, Any]]] = []
        self.arrived = asyncio.Event()

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n"):
                    name, _, value = line.partition(b":")
                    if name.strip().lower() == b"content-length":
                        length = int(value)
                body = await reader.readexactly(length)
                self.arrivals.append((time.time(), json.loads(body)))
                self.arrived.set()
                writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            writer.close()


def finished_at(payload: dict[str, Any]) -> float:
    text = payload["finishedAt"].replace("Z", "+00:00")
    return datetime.datetime.fromisoformat(text).timestamp()


async def measure(url: str, events: int, poll: float | None) -> dict[str, Any]:
    receiver = Receiver()
    listening = await asyncio.start_server(receiver.handle, "127.0.0.1", 0)
    port = listening.sockets[0].getsockname()[1]
    values: dict[str, Any] = {"database_url": url, "webhook_allow_private": True}
    if poll is not None:
        values["callback_poll_interval"] = poll
    settings = Settings.from_mapping(values)
    rng = random.Random(5)
    async with App.running(settings) as app:
        await server.first_start(app)
        await subscriptions.subscribe(
            app.db, f"http://127.0.0.1:{port}/cb", policy=app.webhook.policy
        )
        for i in range(events):
            await asyncio.sleep(rng.uniform(0.1, 0.5))
            await app.ingest.accept(
                ingest.Submission(
                    type="cartAbandonment",
                    recipient=model.Recipient(email=f"user{i}@example.com"),
                    ctx=CTX,
                )
            )
        deadline = time.monotonic() + 30
        while len(receiver.arrivals) < events and time.monotonic() < deadline:
            receiver.arrived.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(receiver.arrived.wait(), 1.0)
    listening.close()
    latencies = sorted((at - finished_at(p)) * 1000 for at, p in receiver.arrivals)
    return {
        "callbacks": len(latencies),
        "poll_interval": settings.callback_poll_interval,
        "median_ms": round(statistics.median(latencies), 1),
        "p90_ms": round(latencies[int(len(latencies) * 0.9) - 1], 1),
        "max_ms": round(latencies[-1], 1),
    }


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    url, drop = await callbacks_bench.scratch_url(args.db, args.postgres_url)
    try:
        result = await measure(url, args.events, args.poll)
    finally:
        if drop is not None:
            await drop()
    return {"db": args.db} | result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--db", choices=["sqlite", "postgresql"], default="sqlite")
    parser.add_argument("--events", type=int, default=60)
    parser.add_argument("--poll", type=float, default=None, help="callback_poll_interval")
    parser.add_argument(
        "--postgres-url",
        default=os.environ.get(
            "TIDINGS_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
        ),
    )
    import uvloop

    print(json.dumps(uvloop.run(main_async(parser.parse_args()))))


if __name__ == "__main__":
    main()
