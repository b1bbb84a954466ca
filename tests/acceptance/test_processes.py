"""Several processes on one node (`tidings api|serve --processes N`), run as an operator runs
them: the command as a subprocess on a free port, events posted over HTTP by concurrent
clients, the database read afterwards.

- every acknowledged event is stored exactly once, with an id no other process minted, and
  the processes all took requests (each mints ids in its own slot, which the id shows);
- SIGTERM to the parent while requests are in flight: every answered request's events are
  committed, and the parent exits 0 once its children stopped;
- a child killed with SIGKILL is replaced, and the node goes on taking events.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest

from tidings import ids, server
from tidings.store import database

from .conftest import EXAMPLE_CTX

TIDINGS = str(Path(sys.executable).parent / "tidings")
_KEY = re.compile(r"tid_[a-z0-9]+_[A-Za-z0-9_-]+")


class Node:
    """A running `tidings ... --processes N`."""

    def __init__(self, process: subprocess.Popen[bytes], log: Path, url: str):
        self.process = process
        self.log = log
        self.url = url
        self.key = ""

    def text(self) -> str:
        return self.log.read_text(errors="replace")

    def children(self) -> set[int]:
        pid = self.process.pid
        with contextlib.suppress(OSError):
            found = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
            return {int(p) for p in found}
        return set()

    def stop(self, timeout: float = 60) -> int:
        self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout)


def free_port() -> int:
    sock = server.listen("127.0.0.1", 0)
    port = int(sock.getsockname()[1])
    sock.close()
    return port


def environment(database_url: str, port: int, **settings: Any) -> dict[str, str]:
    """The environment of a `tidings` process: ours without TIDINGS_* and with ``settings``,
    the database and the port, fast polling and a short shutdown grace."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TIDINGS_")}
    env.update({f"TIDINGS_{k.upper()}": str(v) for k, v in settings.items()})
    env.update(
        TIDINGS_DATABASE_URL=database_url,
        TIDINGS_PORT=str(port),
        TIDINGS_SHUTDOWN_GRACE="5",
        TIDINGS_POLL_INTERVAL="0.05",
    )
    return env


@contextlib.contextmanager
def node(
    verb: str, database_url: str, folder: Path, processes: int, **settings: Any
) -> Iterator[Node]:
    """Start ``tidings <verb> --processes <processes>`` and wait until it serves."""
    port = free_port()
    env = environment(database_url, port, **settings)
    log = folder / f"node-{port}.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [TIDINGS, verb, "--processes", str(processes)],
            env=env,
            cwd=folder,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    running = Node(process, log, f"http://127.0.0.1:{port}")
    try:
        deadline = time.monotonic() + 120
        while (found := _KEY.search(running.text())) is None:  # printed once all serve
            assert process.poll() is None, running.text()
            assert time.monotonic() < deadline, running.text()
            time.sleep(0.05)
        running.key = found.group(0)
        assert len(running.children()) == processes, running.text()
        yield running
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


@contextlib.asynccontextmanager
async def client(running: Node) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(
        base_url=running.url,
        headers={"Authorization": f"Bearer {running.key}"},
        timeout=60,
        limits=httpx.Limits(max_connections=48, max_keepalive_connections=0),
    ) as http:
        yield http


def _event(n: int) -> dict[str, Any]:
    return {
        "type": "cartAbandonment",
        "recipient": {"email": f"r{n}@example.org"},
        "ctx": EXAMPLE_CTX,
    }


async def post_one(http: httpx.AsyncClient, n: int) -> list[int]:
    """Post one event; its id if acknowledged, nothing if the request failed."""
    try:
        response = await http.post("/api/v1/events", json=_event(n))
    except httpx.TransportError:
        return []
    assert response.status_code == 201, response.text
    return [int(response.json()["id"])]


async def post_batch(http: httpx.AsyncClient, n: int, size: int = 25) -> list[int]:
    """Post a batch; the ids it acknowledged (all or, if the request failed, none)."""
    events = [_event(n * 1000 + i) for i in range(size)]
    try:
        response = await http.post("/api/v1/events/batch", json={"events": events})
    except httpx.TransportError:
        return []
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["accepted"] == size, body
    return [int(r["event"]["id"]) for r in body["results"]]


async def post_many(http: httpx.AsyncClient, singles: int, batches: int) -> list[int]:
    """``singles`` single-event posts and ``batches`` batches, 48 at a time; acknowledged ids."""
    gate = asyncio.Semaphore(48)

    async def one(job: int) -> list[int]:
        async with gate:
            if job < singles:
                return await post_one(http, job)
            return await post_batch(http, job)

    done = await asyncio.gather(*(one(j) for j in range(singles + batches)))
    return [i for got in done for i in got]


async def post_until_refused(http: httpx.AsyncClient, clients: int) -> tuple[list[int], int]:
    """``clients`` loops posting events (singles and batches) until a request fails; the
    acknowledged ids, and how many clients ended on a failed request."""
    acknowledged: list[int] = []

    async def loop(n: int) -> int:
        for job in range(n * 1_000_000, (n + 1) * 1_000_000):
            got = await (post_batch(http, job, 5) if job % 4 == 0 else post_one(http, job))
            if not got:
                return 1
            acknowledged.extend(got)
        return 0

    refused = sum(await asyncio.gather(*(loop(n) for n in range(clients))))
    return acknowledged, refused


async def stored_ids(database_url: str) -> list[int]:
    """Every event id in the database (duplicates would show twice)."""
    if database_url.startswith("sqlite"):
        db = await database.connect(database_url)
        try:
            async with db.connection() as conn:
                rows = await conn.fetch(database.sql("SELECT id FROM events"))
        finally:
            await db.close()
        return [ids.from_db(r[0]) for r in rows]
    conn = await asyncpg.connect(database_url)
    try:
        return [ids.from_db(r[0]) for r in await conn.fetch("SELECT id FROM events")]
    finally:
        await conn.close()


def slot_of(event_id: int) -> int:
    return (event_id >> ids.SEQ_BITS) & (ids.SLOTS - 1)


async def test_every_acknowledged_event_is_stored_once_with_an_id_of_its_own(
    database_url: str, tmp_path: Path
) -> None:
    with node("api", database_url, tmp_path, processes=3) as running:
        async with client(running) as http:
            acknowledged = await post_many(http, singles=600, batches=24)
        assert running.stop() == 0, running.text()
    assert len(acknowledged) == 600 + 24 * 25
    assert len(set(acknowledged)) == len(acknowledged)  # no id minted twice
    stored = await stored_ids(database_url)
    assert len(stored) == len(set(stored))
    assert sorted(stored) == sorted(acknowledged)  # each acknowledged one stored, once
    # The id's slot names the process that minted it: more than one process took requests
    # (each new connection goes to whichever process accepts it first).
    assert len({slot_of(i) for i in acknowledged}) >= 2
    assert {ids.instance_of(i) for i in acknowledged} == {0}
    assert "exited with" not in running.text()


async def test_sigterm_answers_requests_in_flight_and_commits_them(
    database_url: str, tmp_path: Path
) -> None:
    with node("serve", database_url, tmp_path, processes=2) as running:
        async with client(running) as http:
            posting = asyncio.ensure_future(post_until_refused(http, clients=32))
            await asyncio.sleep(1.0)  # well into the run
            running.process.send_signal(signal.SIGTERM)
            acknowledged, refused = await posting
            code = await asyncio.to_thread(running.process.wait, 60)
        assert code == 0, running.text()
    assert acknowledged, running.text()
    assert refused == 32  # every client was still posting when the node stopped
    stored = await stored_ids(database_url)
    assert len(stored) == len(set(stored))
    missing = set(acknowledged) - set(stored)
    assert not missing, f"{len(missing)} acknowledged events were lost"
    assert "exited with" not in running.text(), running.text()


async def test_a_killed_child_is_replaced(sqlite_url: str, tmp_path: Path) -> None:
    with node("api", sqlite_url, tmp_path, processes=2) as running:
        before = running.children()
        victim = min(before)
        os.kill(victim, signal.SIGKILL)
        deadline = time.monotonic() + 60
        while len(running.children() - {victim}) < 2:
            assert running.process.poll() is None, running.text()
            assert time.monotonic() < deadline, running.text()
            await asyncio.sleep(0.05)
        assert f"(pid {victim}) exited with -9; starting another" in running.text()
        async with client(running) as http:
            acknowledged = await post_many(http, singles=200, batches=4)
        assert running.stop() == 0, running.text()
    assert len(acknowledged) == 300
    assert sorted(await stored_ids(sqlite_url)) == sorted(acknowledged)


def test_worker_processes_start_and_stop(sqlite_url: str, tmp_path: Path) -> None:
    # With a bounce listener configured: only the first process binds its port.
    env = {k: v for k, v in os.environ.items() if not k.startswith("TIDINGS_")}
    env.update(
        TIDINGS_DATABASE_URL=sqlite_url,
        TIDINGS_SHUTDOWN_GRACE="2",
        TIDINGS_BOUNCE_SMTP_PORT=str(free_port()),
    )
    log = tmp_path / "worker.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [TIDINGS, "worker", "--processes", "2"],
            env=env,
            cwd=tmp_path,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 120
        while "2 processes ready" not in log.read_text():
            assert process.poll() is None, log.read_text()
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.05)
        children = Path(f"/proc/{process.pid}/task/{process.pid}/children").read_text().split()
        assert len(children) == 2
        assert log.read_text().count("bounce listener on") == 1
        process.send_signal(signal.SIGINT)  # as Ctrl-C in a terminal
        assert process.wait(60) == 0, log.read_text()
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    for pid in children:
        assert not Path(f"/proc/{pid}").exists()


@pytest.mark.parametrize("verb", ["api", "worker"])
def test_processes_setting_is_checked(verb: str, tmp_path: Path) -> None:
    done = subprocess.run(
        [TIDINGS, verb, "--processes", "65"],
        env={**os.environ, "TIDINGS_DATABASE_URL": f"sqlite:///{tmp_path / 'x.db'}"},
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert "processes must be between 0" in done.stderr
