"""Several SMTP relays: the next takes the traffic while one is down, and comes back;
per-relay rate limits smooth bursts (real aiosmtpd servers, the real API and worker)."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from tests.smtp_servers import Recorder, aiosmtpd_server

from .conftest import EXAMPLE_CTX, Live, Serve
from .test_delivery import closed_port, delivery_log, retrying, smtp, wait_for

TYPE = "cartAbandonment"


class Timed(Recorder):
    """A recorder that also notes when each message arrived."""

    def __init__(self) -> None:
        super().__init__()
        self.times: list[float] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.times.append(time.monotonic())
        return await super().handle_DATA(server, session, envelope)


async def post(live: Live, n: int) -> list[str]:
    ids = []
    for i in range(n):
        body = await live.post_event(
            type=TYPE, recipient={"email": f"user{i}@example.com"}, ctx=EXAMPLE_CTX
        )
        ids.append(str(body["id"]))
    return ids


async def test_the_backup_relay_takes_the_traffic_and_the_primary_gets_it_back(
    serve: Serve, database_url: str
) -> None:
    primary_port = closed_port()
    backup = Recorder()
    async with aiosmtpd_server(backup) as b:
        relays = f"127.0.0.1:{primary_port}, 127.0.0.1:{b.port}"
        settings = smtp(0, smtp_host=relays, connector_down_after=1, connector_down_for=1.0)
        async with serve(**settings) as live:
            ids = await post(live, 5)
            for event_id in ids:
                await live.wait_status(event_id, "processed")
            assert sorted(r.rcpt_tos[0] for r in backup.received) == [
                f"user{i}@example.com" for i in range(5)
            ]
            log = await delivery_log(database_url, ids[0])
            assert [d.transport for d in log] == [f"smtp 127.0.0.1:{b.port}"]
            assert log[0].outcome == "delivered"
            # Nothing failed or waited for a retry: the refusal moved the message at once.
            assert all(e["attempts"] == 1 for e in [await fetch(live, i) for i in ids])

            # The primary comes up; after the down time it gets the traffic back.
            primary = Recorder()
            async with aiosmtpd_server(primary, port=primary_port):
                await asyncio.sleep(1.1)
                # One at a time: while the probe is in flight, concurrent messages still go
                # to the backup; once it succeeded, everything goes to the primary.
                later = []
                for _ in range(3):
                    (event_id,) = await post(live, 1)
                    await live.wait_status(event_id, "processed")
                    later.append(event_id)
                assert len(primary.received) == 3
                for event_id in later:
                    log = await delivery_log(database_url, event_id)
                    assert log[-1].transport == f"smtp 127.0.0.1:{primary_port}"


async def test_with_every_relay_down_events_wait_and_are_delivered_later(serve: Serve) -> None:
    port_a, port_b = closed_port(), closed_port()
    settings = smtp(
        0,
        smtp_host=f"127.0.0.1:{port_a},127.0.0.1:{port_b}",
        connector_down_after=1,
        connector_down_for=0.5,
        retry_base=0.2,
        retry_max=0.5,
    )
    async with serve(**settings) as live:
        (event_id,) = await post(live, 1)
        waiting = await wait_for(live, event_id, retrying(1))
        assert "cannot connect to 127.0.0.1" in waiting["reason"]
        recorder = Recorder()
        async with aiosmtpd_server(recorder, port=port_b):
            await live.wait_status(event_id, "processed", within=15)
        assert [r.rcpt_tos for r in recorder.received] == [["user0@example.com"]]


async def test_a_relay_rate_limit_spreads_a_burst_instead_of_failing_it(serve: Serve) -> None:
    recorder = Timed()
    async with aiosmtpd_server(recorder) as s:
        settings = smtp(s.port, smtp_rate_limit=20.0, smtp_rate_burst=1.0)
        async with serve(**settings) as live:
            ids = await post(live, 21)
            for event_id in ids:
                await live.wait_status(event_id, "processed", within=20)
    assert len(recorder.received) == 21
    # 21 messages at 20 a second with no burst take at least a second at the server.
    assert recorder.times[-1] - recorder.times[0] >= 0.95


async def fetch(live: Live, event_id: str) -> dict[str, Any]:
    response = await live.client.get(f"/api/v1/events/{event_id}")
    assert response.status_code == 200, response.text
    result: dict[str, Any] = response.json()
    return result
