"""Events by SMS, push and webhook, end to end: posted through the API, routed to the
published template of their channel, rendered and delivered by the real transport to a real
peer on loopback (node-smpp SMSC, HTTP/2 push gateways, an HTTP receiver)."""

from __future__ import annotations

import asyncio
import pathlib
from typing import Any

from tests import smsc
from tidings.control import files

from .conftest import Live, Serve

SMPP = {
    "smpp_system_id": "tidings",
    "smpp_password": "secret",
    "smpp_source": "Shop",
    "smpp_timeout": 5.0,
    "smpp_reconnect_min": 0.2,
}


async def publish(live: Live, root: pathlib.Path, name: str, **texts: str) -> None:
    """Publish a template folder ``name`` holding ``texts`` (file name → text)."""
    folder = root / name
    folder.mkdir(parents=True, exist_ok=True)
    for file, text in texts.items():
        (folder / file).write_text(text)
    await files.publish_folder(live.app.db, root, author="tests", renderer=live.app.renderer)
    await live.app.refresh_routing()


async def detail(live: Live, event_id: str) -> dict[str, Any]:
    response = await live.client.get(f"/api/v1/events/{event_id}")
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def test_an_sms_event_reaches_the_smsc_and_its_receipt_the_event(
    serve: Serve, tmp_path: pathlib.Path
) -> None:
    with smsc.running(tmp_path, receipt="DELIVRD", receipt_tlvs=True) as server:
        async with serve(smpp_host="127.0.0.1", smpp_port=server.port, **SMPP) as live:
            await publish(
                live,
                tmp_path / "templates",
                "orderShipped",
                **{
                    "template.toml": '[sms]\nsender = "ShopFR"\n',
                    "sms.txt": "Bonjour {{ ctx.firstName }}, commande {{ ctx.id }} expédiée.\n",
                },
            )
            body = await live.post_event(
                type="orderShipped",
                recipient={"mobilePhone": "+33 6 12 34 56 78"},
                ctx={"firstName": "Zoë", "id": "A-42"},
            )
            event = await live.wait_status(body["id"], "processed")
            [submit] = server.pdus("submit_sm")
            assert submit["destination_addr"] == "33612345678"
            assert submit["source_addr"] == "ShopFR"
            assert submit["short_message"]["message"] == "Bonjour Zoë, commande A-42 expédiée."
            assert submit["data_coding"] == 8  # ë is not in GSM-7: UCS-2
            [delivery] = event["deliveries"]
            assert delivery["channel"] == "sms"
            assert delivery["outcome"] == "delivered"
            assert delivery["providerId"]

            # The SMSC's receipt lands on the event.
            for _ in range(250):
                receipts = (await detail(live, body["id"]))["receipts"]
                if receipts:
                    break
                await asyncio.sleep(0.02)
            assert [(r["providerId"], r["state"]) for r in receipts] == [
                (delivery["providerId"], "delivered")
            ]


async def test_an_invalid_phone_number_fails_the_event_with_the_reason(
    serve: Serve, tmp_path: pathlib.Path
) -> None:
    with smsc.running(tmp_path) as server:
        async with serve(smpp_host="127.0.0.1", smpp_port=server.port, **SMPP) as live:
            await publish(live, tmp_path / "t", "otp", **{"sms.txt": "Code {{ ctx.code }}"})
            body = await live.post_event(
                type="otp", recipient={"mobilePhone": "+999 123"}, ctx={"code": "1234"}
            )
            event = await live.wait_status(body["id"], "deliveryFailed")
            assert "number" in event["reason"]
            assert server.pdus("submit_sm") == []


async def test_an_sms_event_without_an_sms_transport_is_a_routing_failure(
    serve: Serve, tmp_path: pathlib.Path
) -> None:
    async with serve() as live:
        await publish(live, tmp_path / "t", "otp", **{"sms.txt": "Code {{ ctx.code }}"})
        body = await live.post_event(
            type="otp", recipient={"mobilePhone": "+33612345678"}, ctx={"code": "1"}
        )
        event = await live.wait_status(body["id"], "routingFailed")
        assert event["reason"] == "no transport for the sms channel"
