"""Two SMSCs in one failover group: two node-smpp SMSCs started by the test, the real API and
worker (SQLite and PostgreSQL). The backup takes the traffic while the primary is down and
its receipts land on the right delivery; the primary gets the traffic back after the probe;
with both down the event waits and is delivered when one comes up."""

from __future__ import annotations

import asyncio
import pathlib
from typing import Any

from tests import smsc
from tests.http_receivers import closed_port

from .conftest import Live, Serve, eventually
from .test_channels import SMPP, detail, publish
from .test_delivery import retrying, wait_for

GROUP = SMPP | {
    "smpp_reconnect_min": 0.1,
    "smpp_reconnect_max": 0.3,
    "connector_down_after": 1,
    "connector_down_for": 1.0,
    "retry_base": 0.2,
    "retry_max": 0.5,
}


def group(*ports: int) -> dict[str, Any]:
    return GROUP | {"smpp_host": ",".join(f"127.0.0.1:{p}" for p in ports)}


async def otp(live: Live, root: pathlib.Path) -> None:
    await publish(live, root, "otp", **{"sms.txt": "Code {{ ctx.code }}"})


async def send(live: Live, code: str) -> str:
    body = await live.post_event(
        type="otp", recipient={"mobilePhone": "+33612345678"}, ctx={"code": code}
    )
    return str(body["id"])


async def receipts_of(live: Live, event_id: str) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []

    async def came() -> bool:
        found[:] = (await detail(live, event_id))["receipts"]
        return bool(found)

    await eventually(came, 10.0)
    return found


def texts(server: smsc.Smsc) -> list[str]:
    return [p["short_message"]["message"] for p in server.pdus("submit_sm")]


async def test_the_backup_smsc_takes_the_traffic_and_the_primary_gets_it_back(
    serve: Serve, tmp_path: pathlib.Path
) -> None:
    primary_port = closed_port()
    with smsc.running(tmp_path, receipt="DELIVRD") as backup:
        async with serve(**group(primary_port, backup.port)) as live:
            await otp(live, tmp_path / "templates")
            first = await send(live, "1111")
            event = await live.wait_status(first, "processed")
            # the refused primary moved the message at once: no retry
            assert event["attempts"] == 1
            [delivery] = event["deliveries"]
            assert delivery["transport"] == f"smpp 127.0.0.1:{backup.port}"
            assert delivery["providerId"] == "msg1"
            assert texts(backup) == ["Code 1111"]
            [receipt] = await receipts_of(live, first)
            assert (receipt["providerId"], receipt["state"]) == ("msg1", "delivered")

            # The primary comes up (on the port that was refused); after the down time one
            # message probes it and from then on it takes the traffic.
            with smsc.running(tmp_path, port=primary_port, receipt="UNDELIV") as primary:
                await asyncio.sleep(1.2)
                later = []
                for code in ("2222", "3333"):
                    event_id = await send(live, code)
                    await live.wait_status(event_id, "processed")
                    later.append(event_id)
                assert texts(primary) == ["Code 2222", "Code 3333"]
                assert texts(backup) == ["Code 1111"]
                for event_id, provider_id in zip(later, ("msg1", "msg2"), strict=True):
                    [delivery] = (await detail(live, event_id))["deliveries"]
                    assert delivery["transport"] == f"smpp 127.0.0.1:{primary_port}"
                    assert delivery["providerId"] == provider_id
                    # The primary also hands out msg1: its receipt (UNDELIV) lands on the
                    # delivery the primary took, not on the backup's msg1.
                    [receipt] = await receipts_of(live, event_id)
                    assert (receipt["providerId"], receipt["state"]) == (
                        provider_id,
                        "undeliverable",
                    )
                [receipt] = await receipts_of(live, first)
                assert receipt["state"] == "delivered"


async def test_with_both_smscs_down_the_event_waits_and_is_delivered_later(
    serve: Serve, tmp_path: pathlib.Path
) -> None:
    port_a, port_b = closed_port(), closed_port()
    async with serve(**group(port_a, port_b)) as live:
        await otp(live, tmp_path / "templates")
        event_id = await send(live, "4444")
        waiting = await wait_for(live, event_id, retrying(1))
        assert "cannot bind to 127.0.0.1" in waiting["reason"]
        with smsc.running(tmp_path, port=port_b, receipt="DELIVRD") as server:
            event = await live.wait_status(event_id, "processed", within=15)
            assert texts(server) == ["Code 4444"]
            assert event["deliveries"][-1]["transport"] == f"smpp 127.0.0.1:{port_b}"
            [receipt] = await receipts_of(live, event_id)
            assert receipt["state"] == "delivered"


async def test_throttling_is_retried_on_the_same_smsc_not_failed_over(
    serve: Serve, tmp_path: pathlib.Path
) -> None:
    with (
        smsc.running(tmp_path, throttle_every=1) as primary,
        smsc.running(tmp_path) as backup,
    ):
        async with serve(**group(primary.port, backup.port)) as live:
            await otp(live, tmp_path / "templates")
            event_id = await send(live, "5555")
            waiting = await wait_for(live, event_id, retrying(1))
            assert "ESME_RTHROTTLED" in waiting["reason"]
            await wait_for(live, event_id, retrying(2))
            assert backup.pdus("submit_sm") == []
            assert len(primary.pdus("submit_sm")) >= 2
