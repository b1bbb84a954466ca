"""A live Tidings: the real uvicorn server on a loopback socket, its worker running, and an
httpx client talking to it over TCP. Each test gets it on SQLite and on PostgreSQL.

``live`` is the default set-up (email into the outbox); ``serve(**settings)`` starts one with
other settings (an SMTP server, a paused worker...) for the tests that need them.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from tests.conftest import test_settings
from tidings import server
from tidings.app import App
from tidings.settings import Settings
from tidings.store import events as store_events

EXAMPLE_CTX = {
    "cartAmount": "$ 125",
    "lastProduct": "Leather motorbike jacket",
    "firstName": "Jack",
}


@dataclass
class Live:
    """A running server: its App (for direct looks into the store), base URL, admin key and
    a client that sends that key."""

    app: App
    url: str
    key: str
    client: httpx.AsyncClient

    @property
    def settings(self) -> Settings:
        return self.app.settings

    async def wait_status(
        self, event_id: int | str, *statuses: str, within: float = 10.0
    ) -> dict[str, Any]:
        """Poll ``GET /api/v1/events/{id}`` until the event's status is one of ``statuses``."""
        deadline = asyncio.get_running_loop().time() + within
        while True:
            response = await self.client.get(f"/api/v1/events/{event_id}")
            assert response.status_code == 200, response.text
            body: dict[str, Any] = response.json()
            if body["status"] in statuses:
                return body
            if asyncio.get_running_loop().time() > deadline:
                raise AssertionError(f"event {event_id} is {body['status']}, not {statuses}")
            await asyncio.sleep(0.02)

    async def post_event(self, **body: Any) -> dict[str, Any]:
        """POST one native event; assert it was accepted."""
        response = await self.client.post("/api/v1/events", json=body)
        assert response.status_code == 201, response.text
        result: dict[str, Any] = response.json()
        return result

    async def stored_count(self) -> int:
        async with self.app.db.connection() as conn:
            counts = await store_events.count_by_status(conn)
        return sum(counts.values())


Serve = Callable[..., contextlib.AbstractAsyncContextManager[Live]]


@contextlib.asynccontextmanager
async def live_server(database_url: str, port: int = 0, **overrides: Any) -> AsyncIterator[Live]:
    """Start Tidings (API and worker) with ``overrides`` on ``port`` (a free loopback port
    by default)."""
    sock = server.listen("127.0.0.1", port)
    port = sock.getsockname()[1]
    settings = test_settings(database_url, port=port, **overrides)
    try:
        async with App.running(settings, migrate_schema=False) as app:
            key = await server.first_start(app)
            assert key is not None, "the database was not empty"
            http = server.http_server(app)
            http.config.install_signal_handlers = False  # type: ignore[attr-defined]
            task = asyncio.create_task(http.serve(sockets=[sock]))
            while not http.started:
                if task.done():
                    task.result()
                await asyncio.sleep(0.005)
            url = f"http://127.0.0.1:{port}"
            async with httpx.AsyncClient(
                base_url=url, headers={"Authorization": f"Bearer {key}"}, timeout=15
            ) as client:
                try:
                    yield Live(app, url, key, client)
                finally:
                    http.should_exit = True
                    await task
    finally:
        sock.close()


@pytest.fixture
async def serve(database_url: str) -> Serve:
    """Start a live server with settings of the test's choosing."""

    def start(**overrides: Any) -> contextlib.AbstractAsyncContextManager[Live]:
        return live_server(database_url, **overrides)

    return start


@pytest.fixture
async def live(serve: Serve) -> AsyncIterator[Live]:
    """A live server with the default settings (email into the outbox)."""
    async with serve() as running:
        yield running


async def eventually(check: Callable[[], Awaitable[bool]], within: float = 10.0) -> None:
    """Wait until ``check()`` is true."""
    deadline = asyncio.get_running_loop().time() + within
    while not await check():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.02)
