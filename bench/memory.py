"""Resident memory of ``tidings api`` and ``tidings worker`` with 1,000,000 events queued.

    .venv/bin/python bench/memory.py                          # SQLite and PostgreSQL
    .venv/bin/python bench/memory.py --db sqlite --events 1000000 --seconds 30

For each database, on a fresh one:

1. ``tidings api`` starts alone; the events are POSTed to ``/api/v1/events/batch`` (1,000 a
   request, 4 connections), each scheduled for 2099 so that they stay queued.
2. ``tidings worker`` (SMTP to smtp-sink) starts and runs for ``--seconds`` with the million
   events queued but not due; ``/metrics`` and ``/readyz`` are scraped from the API meanwhile.
3. That worker stops; the events are made due directly in the database (``due_at`` = now,
   ``scheduled_at`` cleared); a new worker starts and claims and delivers for ``--seconds``.

Memory is read from ``/proc/PID/status``: ``VmRSS`` sampled every 100 ms and ``VmHWM`` (the
kernel's peak resident size) at the end of each phase. Results are printed as a Markdown table.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.request import Request, urlopen

sys.path.insert(0, str(Path(__file__).parent))

import load
import run
from tidings import clock

BATCH = 1000
FAR = "2099-01-01T00:00:00Z"
TARGET_MB = 200


def kib(pid: int, field_name: str) -> int:
    with contextlib.suppress(OSError):
        text = Path(f"/proc/{pid}/status").read_text()
        found = re.search(rf"^{field_name}:\s+(\d+) kB", text, re.M)
        if found:
            return int(found.group(1))
    return 0


@dataclass
class Sampler:
    """Largest VmRSS seen every 100 ms, per process."""

    pids: dict[str, int]
    peak: dict[str, int] = field(default_factory=dict)
    _stop: threading.Event = field(default_factory=threading.Event)

    def __post_init__(self) -> None:
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            for name, pid in self.pids.items():
                self.peak[name] = max(self.peak.get(name, 0), kib(pid, "VmRSS"))
            time.sleep(0.1)

    def stop(self) -> dict[str, int]:
        self._stop.set()
        self._thread.join()
        return self.peak


@dataclass
class Process:
    popen: subprocess.Popen[bytes]
    log: Path
    key: str | None = None
    url: str | None = None


@contextlib.contextmanager
def start(
    verb: str, database_url: str, folder: Path, smtp_port: int | None = None
) -> Iterator[Process]:
    """``tidings VERB`` as its own process (as ``run.tidings`` does, keeping the process)."""
    port = run.free_port()
    env = dict(os.environ)
    env.update(TIDINGS_DATABASE_URL=database_url, TIDINGS_PORT=str(port))
    env.update(TIDINGS_LOG_LEVEL="warning")
    if smtp_port is not None:
        env.update(TIDINGS_SMTP_HOST="127.0.0.1", TIDINGS_SMTP_PORT=str(smtp_port))
        env.update(TIDINGS_SMTP_TLS="none")
    log = folder / f"{verb}-{port}.log"
    with log.open("wb") as out:
        popen = subprocess.Popen(
            [run.TIDINGS, verb], env=env, cwd=folder, stdout=out, stderr=subprocess.STDOUT
        )
    process = Process(popen, log)
    try:
        if verb == "api":
            deadline = time.monotonic() + 60
            while process.key is None:
                if popen.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"tidings api did not start:\n{log.read_text()}")
                found = re.search(r"tid_[a-z0-9]+_[A-Za-z0-9_-]+", log.read_text())
                process.key = found.group(0) if found else None
                time.sleep(0.05)
            process.url = f"http://127.0.0.1:{port}"
            run.wait_port(port)
        else:
            time.sleep(2)
            if popen.poll() is not None:
                raise RuntimeError(f"tidings {verb} exited:\n{log.read_text()}")
        yield process
    finally:
        popen.terminate()
        try:
            popen.wait(timeout=60)
        except subprocess.TimeoutExpired:
            popen.kill()


async def post_batches(url: str, key: str, total: int) -> float:
    """POST ``total`` far-future events in batches; return the seconds it took."""
    host, port = url.split("//", 1)[1].split(":")
    target = url + "/api/v1/events/batch"
    bodies: dict[int, bytes] = {}

    def body(size: int) -> bytes:
        if size not in bodies:
            item = json.loads(run.event_body(0))
            item["scheduled"] = FAR
            bodies[size] = json.dumps({"events": [item] * size}).encode()
        return bodies[size]

    left = total

    async def client() -> None:
        nonlocal left
        conn = await load.Connection.open(host, int(port))
        try:
            while left > 0:
                size = min(BATCH, left)
                left -= size
                status, answer = await conn.request(load.post_request(target, key, body(size)))
                if status != 200:
                    raise RuntimeError(f"batch answered {status}: {answer[:200]!r}")
        finally:
            conn.close()

    began = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(4)))
    return time.perf_counter() - began


def counts(database_url: str) -> dict[str, int]:
    rows = run.sql(database_url, "SELECT status, count(*) FROM events GROUP BY status")
    return {str(status): int(n) for status, n in rows}  # type: ignore[call-overload]


def scrape(api: Process, seconds: float) -> None:
    """Ask the API for /metrics and /readyz every second for ``seconds``."""
    assert api.url
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        for path in ("/metrics", "/readyz"):
            request = Request(api.url + path, headers={"Authorization": f"Bearer {api.key}"})
            with contextlib.suppress(OSError), urlopen(request, timeout=30) as answer:
                answer.read()
        time.sleep(1)


@dataclass
class Row:
    db: str
    process: str
    phase: str
    rss_mb: float
    peak_mb: float
    detail: str


def mb(kilobytes: int) -> float:
    return kilobytes / 1024


def measure(db: str, folder: Path, total: int, seconds: float) -> list[Row]:
    rows: list[Row] = []
    with (
        run.fresh_database(db, folder) as url,
        run.smtp_sink() as sink,
        start("api", url, folder) as api,
    ):
        assert api.key
        assert api.url
        pid = api.popen.pid
        started = kib(pid, "VmRSS")
        sampler = Sampler({"api": pid})
        took = asyncio.run(post_batches(api.url, api.key, total))
        peak = sampler.stop()["api"]
        queued = counts(url)
        rows.append(
            Row(
                db,
                "tidings api",
                f"ingesting {total:,} events (batch API)",
                mb(kib(pid, "VmRSS")),
                mb(max(peak, kib(pid, "VmHWM"))),
                f"{mb(started):.0f} MB after start; {total:,} events in {took:.0f} s "
                f"({total / took:,.0f}/s); stored {queued}",
            )
        )

        with start("worker", url, folder, smtp_port=sink) as worker:
            sampler = Sampler({"api": pid, "worker": worker.popen.pid})
            scrape(api, seconds)
            peaks = sampler.stop()
            rows.append(
                Row(
                    db,
                    "tidings worker",
                    f"{total:,} queued, not due, {seconds:.0f} s",
                    mb(kib(worker.popen.pid, "VmRSS")),
                    mb(max(peaks["worker"], kib(worker.popen.pid, "VmHWM"))),
                    "idle: nothing due",
                )
            )
            rows.append(
                Row(
                    db,
                    "tidings api",
                    f"{total:,} queued, /metrics + /readyz every s",
                    mb(kib(pid, "VmRSS")),
                    mb(peaks["api"]),
                    "peak is over this phase (VmRSS samples)",
                )
            )

        began = time.perf_counter()
        run.sql(
            url,
            f"UPDATE events SET due_at = {clock.now_us()}, scheduled_at = NULL "
            "WHERE status = 'pending'",
        )
        made_due = time.perf_counter() - began
        with start("worker", url, folder, smtp_port=sink) as worker:
            sampler = Sampler({"api": pid, "worker": worker.popen.pid})
            scrape(api, seconds)
            peaks = sampler.stop()
            rss = kib(worker.popen.pid, "VmRSS")
            hwm = kib(worker.popen.pid, "VmHWM")
            api_rss = kib(pid, "VmRSS")
        done = counts(url)
        delivered = done.get("processed", 0)
        rows.append(
            Row(
                db,
                "tidings worker",
                f"{total:,} due, claiming and delivering, {seconds:.0f} s",
                mb(rss),
                mb(max(peaks["worker"], hwm)),
                f"{delivered:,} delivered to smtp-sink in the phase "
                f"(~{delivered / seconds:,.0f}/s); made due by one UPDATE in {made_due:.0f} s; "
                f"statuses after: {done}",
            )
        )
        rows.append(
            Row(
                db,
                "tidings api",
                f"{total:,} due, worker claiming, /metrics + /readyz every s",
                mb(api_rss),
                mb(peaks["api"]),
                f"VmHWM over the api's life {mb(kib(pid, 'VmHWM')):.0f} MB",
            )
        )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--db", default="sqlite,postgresql")
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--seconds", type=float, default=30.0, help="length of each worker phase")
    args = parser.parse_args()
    rows: list[Row] = []
    with tempfile.TemporaryDirectory(prefix="tidings-memory-") as tmp:
        for db in args.db.split(","):
            for row in measure(db, Path(tmp), args.events, args.seconds):
                print(
                    f"{row.process} [{db}] {row.phase}: RSS {row.rss_mb:.0f} MB, "
                    f"peak {row.peak_mb:.0f} MB — {row.detail}",
                    flush=True,
                )
                rows.append(row)
    print(f"\nMachine: {run.machine()}\n")
    print(f"| process | database | phase | RSS at end | peak RSS | ≤ {TARGET_MB} MB | detail |")
    print("|---|---|---|---|---|---|---|")
    for row in rows:
        met = "yes" if row.peak_mb <= TARGET_MB else "**no**"
        print(
            f"| {row.process} | {row.db} | {row.phase} | {row.rss_mb:.0f} MB | "
            f"{row.peak_mb:.0f} MB | {met} | {row.detail} |"
        )


if __name__ == "__main__":
    main()
