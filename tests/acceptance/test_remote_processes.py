"""A control instance and an execution instance as an operator runs them: two `tidings serve`
processes, each with its own database (control on a SQLite file, execution on PostgreSQL),
the execution instance sending email to an SMTP server the test runs.

The execution instance is registered on the control instance, an event type and its template
are designed and published there; then the control instance is stopped, and events posted to
the execution instance still go out, rendered as published.
"""

from __future__ import annotations

import asyncio
import contextlib
import email
import email.policy
import re
import signal
import subprocess
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import empty_postgres
from tests.smtp_servers import Recorder, aiosmtpd_server
from tidings.store import migrate

from .test_control import EMAIL, good_ctx, order_type
from .test_processes import TIDINGS, environment, free_port

_KEY = re.compile(r"tid_[a-z0-9]+_[A-Za-z0-9_-]+")

pytestmark = pytest.mark.slow


@dataclass
class Process:
    """A running `tidings serve`: its process, log, URL and first admin key."""

    process: asyncio.subprocess.Process
    log: Path
    url: str
    key: str = ""

    def text(self) -> str:
        return self.log.read_text(errors="replace")

    def client(self, key: str | None = None) -> httpx.AsyncClient:
        return httpx.AsyncClient(
            base_url=self.url,
            headers={"Authorization": f"Bearer {key or self.key}"},
            timeout=30,
        )


@contextlib.asynccontextmanager
async def serve(
    name: str, database_url: str, folder: Path, **settings: Any
) -> AsyncIterator[Process]:
    """Start `tidings serve` on a free port and wait until it serves (its key printed)."""
    port = free_port()
    env = environment(database_url, port, **settings)
    log = folder / f"{name}.log"
    with log.open("wb") as out:
        process = await asyncio.create_subprocess_exec(
            TIDINGS, "serve", env=env, cwd=folder, stdout=out, stderr=subprocess.STDOUT
        )
    running = Process(process, log, f"http://127.0.0.1:{port}")
    try:
        deadline = asyncio.get_running_loop().time() + 120
        while (found := _KEY.search(running.text())) is None:
            assert process.returncode is None, running.text()
            assert asyncio.get_running_loop().time() < deadline, running.text()
            await asyncio.sleep(0.05)
        running.key = found.group(0)
        yield running
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()


async def wait_processed(http: httpx.AsyncClient, event_id: str, within: float = 60) -> None:
    deadline = asyncio.get_running_loop().time() + within
    while True:
        response = await http.get(f"/api/v1/events/{event_id}")
        assert response.status_code == 200, response.text
        status = response.json()["status"]
        if status == "processed":
            return
        assert status in ("pending", "processing"), response.text
        assert asyncio.get_running_loop().time() < deadline, response.text
        await asyncio.sleep(0.05)


async def test_execution_keeps_sending_while_the_control_instance_is_down(
    postgres_url: str, tmp_path: Path
) -> None:
    await empty_postgres(postgres_url)
    control_db = f"sqlite:///{tmp_path / 'control.db'}"
    migrate.upgrade(control_db)
    recorder = Recorder()
    async with (
        aiosmtpd_server(recorder) as smtp,
        serve(
            "execution",
            postgres_url,
            tmp_path,
            email_transport="smtp",
            smtp_host="127.0.0.1",
            smtp_port=smtp.port,
            smtp_tls="none",
            smtp_timeout=5,
        ) as execution,
        serve("control", control_db, tmp_path) as control,
        execution.client() as exec_admin,
        control.client() as designer,
    ):
        made = await exec_admin.post(
            "/api/v1/keys", json={"name": "control", "scopes": ["publish"]}
        )
        assert made.status_code == 201, made.text
        registered = await designer.post(
            "/api/v1/instances",
            json={"name": "paris", "baseUrl": execution.url, "credential": made.json()["key"]},
        )
        assert registered.status_code == 201, registered.text
        created = await designer.post("/api/v1/event-types", json=order_type())
        assert created.status_code == 201, created.text
        saved = await designer.post(
            "/api/v1/templates/orderConfirmation/email/versions", json={"content": EMAIL}
        )
        assert saved.status_code == 201, saved.text
        published = await designer.post(
            "/api/v1/templates/orderConfirmation/email/versions/1/publish"
        )
        assert published.status_code == 200, published.text
        [result] = published.json()["instances"]
        assert (result["instance"], result["outcome"], result["httpStatus"]) == ("paris", "ok", 200)

        control.process.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(control.process.wait(), 60) == 0, control.text()
        with pytest.raises(httpx.TransportError):
            await designer.get("/healthz")

        names = ["Jack", "Zoé", "Ada"]
        ids = []
        for n, name in enumerate(names):
            sent = await exec_admin.post(
                "/api/v1/events",
                json={
                    "type": "orderConfirmation",
                    "recipient": {"email": f"buyer{n}@example.org"},
                    "ctx": good_ctx(firstName=name),
                },
            )
            assert sent.status_code == 201, sent.text
            ids.append(sent.json()["id"])
        for event_id in ids:
            await wait_processed(exec_admin, event_id)

    got = {}
    for received in recorder.received:
        message = email.message_from_bytes(received.data, policy=email.policy.default)
        got[received.rcpt_tos[0]] = message
    assert sorted(got) == [f"buyer{n}@example.org" for n in range(3)]
    for n, name in enumerate(names):
        message = got[f"buyer{n}@example.org"]
        assert message["Subject"] == f"Your order, {name}"
        assert message["From"].addresses[0].addr_spec == "shop@example.com"
        html = message.get_body(("html",)).get_content()  # type: ignore[union-attr]
        assert f"Hello {name}" in html
        assert "Jacket: 125" in html
        assert "Gloves: 25.5" in html
