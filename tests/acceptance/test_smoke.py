"""The README's first example, over a real socket."""

from __future__ import annotations

from .conftest import EXAMPLE_CTX, Live


async def test_adobe_example_is_processed_and_lands_in_the_outbox(live: Live) -> None:
    response = await live.client.post(
        "/local/campaign/mclocal/EVTcartAbandonment",
        json={"email": "test@example.com", "ctx": EXAMPLE_CTX},
    )
    assert response.status_code == 201, response.text
    pkey = response.json()["PKey"]
    await live.wait_status(pkey, "processed")
    outbox = (await live.client.get("/api/v1/outbox")).json()["items"]
    assert [m["eventId"] for m in outbox] == [pkey]
    assert "Jack" in outbox[0]["html"]
