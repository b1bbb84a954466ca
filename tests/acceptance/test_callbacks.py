"""Status callbacks end to end: the running server (SQLite and PostgreSQL), events posted
through the API, callbacks POSTed to real receivers, the log and the API's errors."""

from __future__ import annotations

import json
from typing import Any

import httpx

from tests import http_receivers
from tests.acceptance.conftest import EXAMPLE_CTX, Live, Serve, eventually
from tests.http_receivers import Answer
from tidings import signing

FAST = {
    "webhook_allowed_networks": "127.0.0.0/8",
    "callback_poll_interval": 0.05,
    "callback_retry_base": 0.05,
    "callback_retry_max": 0.2,
}
SECRET = "whsec_acceptance_secret"


async def subscribe(live: Live, url: str, **fields: Any) -> dict[str, Any]:
    response = await live.client.post(
        "/api/v1/callbacks/subscriptions", json={"url": url, "secret": SECRET, **fields}
    )
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


async def post_cart(live: Live, address: str = "jack@example.com") -> str:
    body = await live.post_event(
        type="cartAbandonment", recipient={"email": address}, ctx=EXAMPLE_CTX
    )
    return str(body["id"])


async def callback_log(live: Live, **params: Any) -> list[dict[str, Any]]:
    response = await live.client.get("/api/v1/callbacks/log", params=params)
    assert response.status_code == 200, response.text
    items: list[dict[str, Any]] = response.json()["items"]
    return items


async def wait_state(live: Live, event_id: str, state: str, within: float = 15.0) -> dict[str, Any]:
    found: list[dict[str, Any]] = []

    async def done() -> bool:
        found[:] = await callback_log(live, event=event_id, state=state)
        return bool(found)

    await eventually(done, within)
    return found[0]


async def test_the_final_status_reaches_the_subscriber_signed(serve: Serve) -> None:
    async with http_receivers.receiver() as rx, serve(**FAST) as live:
        sub = await subscribe(live, rx.url + "/tidings")
        assert sub["secret"] == SECRET
        event_id = await post_cart(live)
        await live.wait_status(event_id, "processed")
        [request] = await rx.wait_for(1)
        done = await wait_state(live, event_id, "delivered")
    assert request.path == "/tidings"
    signing.verify(SECRET, request.headers["tidings-signature"], request.body, 60)
    assert request.headers["tidings-message-id"] == f"callback-{done['id']}"
    payload = json.loads(request.body)
    assert payload["eventId"] == payload["PKey"] == event_id
    assert payload["kind"] == "status"
    assert payload["type"] == "cartAbandonment"
    assert payload["status"] == "processed"
    assert payload["reason"] is None
    assert payload["channel"] == "email"
    assert payload["recipient"] == {"email": "jack@example.com"}
    assert payload["finishedAt"].endswith("Z")
    [delivery] = payload["deliveries"]
    assert delivery["outcome"] == "delivered"
    assert delivery["transport"] == "outbox"
    assert delivery["address"] == "jack@example.com"
    assert done["payload"] == payload
    assert done["subscriptionId"] == sub["id"]
    assert done["attempts"] == 1
    assert [a["outcome"] for a in done["log"]] == ["delivered"]
    assert done["log"][0]["reply"].startswith("200 OK")
    assert done["deliveredAt"] is not None


async def test_a_500_is_retried_and_the_log_shows_both_attempts(serve: Serve) -> None:
    script = [Answer(500, b"try later")]
    async with http_receivers.receiver(script=script) as rx, serve(**FAST) as live:
        await subscribe(live, rx.url)
        event_id = await post_cart(live)
        done = await wait_state(live, event_id, "delivered")
    assert len(rx.requests) == 2
    assert rx.requests[0].body == rx.requests[1].body
    assert (
        rx.requests[0].headers["tidings-message-id"] == rx.requests[1].headers["tidings-message-id"]
    )
    assert done["attempts"] == 2
    assert [(a["attempt"], a["outcome"]) for a in done["log"]] == [(1, "retry"), (2, "delivered")]
    assert done["log"][0]["reply"] == "500 Internal Server Error: try later"


async def test_a_receiver_that_is_down_gets_the_callback_later(serve: Serve) -> None:
    port = http_receivers.closed_port()
    async with serve(**FAST) as live:
        await subscribe(live, f"http://127.0.0.1:{port}/late")
        event_id = await post_cart(live)

        async def tried() -> bool:
            found = await callback_log(live, event=event_id)
            return bool(found) and found[0]["attempts"] >= 2

        await eventually(tried)
        [waiting] = await callback_log(live, event=event_id)
        assert waiting["state"] == "pending"
        assert waiting["nextAt"] is not None
        assert waiting["lastReply"].startswith("cannot connect")
        async with http_receivers.receiver(port=port) as rx:
            done = await wait_state(live, event_id, "delivered")
    assert len(rx.requests) == 1
    assert {a["outcome"] for a in done["log"][:-1]} == {"retry"}
    assert done["log"][-1]["outcome"] == "delivered"


async def test_a_4xx_fails_at_once_and_max_attempts_end_retries(serve: Serve) -> None:
    async with (
        http_receivers.receiver(default=Answer(404, b"gone")) as gone,
        http_receivers.receiver(default=Answer(503, b"busy")) as busy,
        serve(**FAST, callback_max_attempts=3) as live,
    ):
        await subscribe(live, gone.url)
        await subscribe(live, busy.url)
        event_id = await post_cart(live)

        async def both_failed() -> bool:
            return len(await callback_log(live, event=event_id, state="failed")) == 2

        await eventually(both_failed)
        failed = await callback_log(live, event=event_id)
    by_url = {c["subscriptionId"]: c for c in failed}
    assert sorted(c["attempts"] for c in by_url.values()) == [1, 3]
    assert len(gone.requests) == 1
    assert len(busy.requests) == 3


async def test_subscription_filters(serve: Serve) -> None:
    async with (
        http_receivers.receiver() as everything,
        http_receivers.receiver() as other_type,
        http_receivers.receiver() as failures,
        http_receivers.receiver() as carts,
        serve(**FAST) as live,
    ):
        await subscribe(live, everything.url)
        await subscribe(live, other_type.url, eventTypes=["passwordReset"])
        await subscribe(live, failures.url, statuses=["deliveryFailed", "routingFailed"])
        await subscribe(live, carts.url, eventTypes=["cartAbandonment"], statuses=["processed"])
        event_id = await post_cart(live)
        await everything.wait_for(1)
        await carts.wait_for(1)
        logged = await callback_log(live, event=event_id)
    assert len(logged) == 2
    assert other_type.requests == []
    assert failures.requests == []


async def test_removing_a_subscription_stops_its_callbacks(serve: Serve) -> None:
    async with http_receivers.receiver() as rx, serve(**FAST) as live:
        sub = await subscribe(live, rx.url)
        listed = (await live.client.get("/api/v1/callbacks/subscriptions")).json()
        assert [s["id"] for s in listed] == [sub["id"]]
        assert "secret" not in listed[0]
        removed = await live.client.delete(f"/api/v1/callbacks/subscriptions/{sub['id']}")
        assert removed.status_code == 204
        again = await live.client.delete(f"/api/v1/callbacks/subscriptions/{sub['id']}")
        assert again.status_code == 404
        assert again.json()["error"]["code"] == "not_found"
        assert (await live.client.get("/api/v1/callbacks/subscriptions")).json() == []
        event_id = await post_cart(live)
        await live.wait_status(event_id, "processed")
        assert await callback_log(live, event=event_id) == []
    assert rx.requests == []


async def test_a_generated_secret_signs(serve: Serve) -> None:
    async with http_receivers.receiver() as rx, serve(**FAST) as live:
        response = await live.client.post("/api/v1/callbacks/subscriptions", json={"url": rx.url})
        assert response.status_code == 201
        secret = response.json()["secret"]
        assert secret.startswith("whsec_")
        await post_cart(live)
        [request] = await rx.wait_for(1)
    signing.verify(secret, request.headers["tidings-signature"], request.body, 60)


def _error(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    error: dict[str, Any] = response.json()["error"]
    assert error["code"] == code, error
    return error


async def test_bad_subscriptions_are_refused_and_change_nothing(live: Live) -> None:
    post = live.client.post
    path = "/api/v1/callbacks/subscriptions"
    cases = [
        ({"url": "ftp://example.com/x"}, "invalid_url", "$.url"),
        ({"url": "https://user:pw@example.com/"}, "invalid_url", "$.url"),
        ({"url": "not a url"}, "invalid_url", "$.url"),
        ({"url": "http://127.0.0.1:9/"}, "invalid_url", "$.url"),  # loopback: not allowed
        ({"url": "http://[::ffff:10.0.0.1]/"}, "invalid_url", "$.url"),
        ({"url": "https://example.com/", "secret": "short"}, "invalid_field", "$.secret"),
        ({"url": "https://example.com/", "statuses": ["done"]}, "invalid_field", "$.statuses"),
        ({"url": "https://example.com/", "eventTypes": ["a,b"]}, "invalid_field", "$.eventTypes"),
        ({"url": "https://example.com/", "kinds": ["bounce"]}, "invalid_field", "$.kinds"),
        ({"url": "https://example.com/", "kinds": []}, "invalid_field", "$.kinds"),
        ({"url": "https://example.com/", "receipts": ["DELIVRD"]}, "invalid_field", "$.receipts"),
        (
            {"url": "https://example.com/", "kinds": ["status"], "receipts": ["expired"]},
            "invalid_field",
            "$.receipts",
        ),
        ({"url": "https://example.com/", "kinds": "status"}, "invalid_field", "$.kinds"),
        ({"url": "https://example.com/", "extra": 1}, "unknown_field", "$.extra"),
        ({"secret": "x" * 20}, "missing_field", "$.url"),
        ({"url": 5}, "invalid_field", "$.url"),
    ]
    for body, code, field in cases:
        error = _error(await post(path, json=body), 422, code)
        assert error["field"] == field, (body, error)
    _error(
        await post(path, content=b"[1]", headers={"content-type": "application/json"}),
        400,
        "malformed_json",
    )
    _error(
        await post(path, content=b"{", headers={"content-type": "application/json"}),
        400,
        "malformed_json",
    )
    _error(
        await post(path, content=b"{}", headers={"content-type": "text/plain"}),
        415,
        "unsupported_media_type",
    )
    assert (await live.client.get(path)).json() == []
    _error(await live.client.delete(f"{path}/12345"), 404, "not_found")


async def test_log_filters_are_checked(live: Live) -> None:
    get = live.client.get
    _error(await get("/api/v1/callbacks/log", params={"event": "abc"}), 422, "invalid_field")
    _error(await get("/api/v1/callbacks/log", params={"state": "lost"}), 422, "invalid_field")
    _error(await get("/api/v1/callbacks/log", params={"subscription": "x"}), 422, "invalid_field")
    _error(await get("/api/v1/callbacks/log", params={"limit": "0"}), 422, "invalid_field")
    empty = await get("/api/v1/callbacks/log", params={"subscription": 1, "state": "pending"})
    assert empty.json() == {"items": [], "next": None}


async def test_log_pages_with_a_cursor(serve: Serve) -> None:
    async with http_receivers.receiver() as rx, serve(**FAST) as live:
        await subscribe(live, rx.url)
        for n in range(5):
            await post_cart(live, f"r{n}@example.com")
        await rx.wait_for(5)
        first = (await live.client.get("/api/v1/callbacks/log", params={"limit": 2})).json()
        second = (
            await live.client.get(
                "/api/v1/callbacks/log", params={"limit": 10, "cursor": first["next"]}
            )
        ).json()
    ids_ = [c["id"] for c in first["items"] + second["items"]]
    assert len(ids_) == 5
    assert ids_ == sorted(ids_, reverse=True)
    assert second["next"] is None


async def test_callbacks_need_the_admin_scope(live: Live) -> None:
    created = await live.client.post("/api/v1/keys", json={"name": "app", "scopes": ["events"]})
    assert created.status_code == 201, created.text
    headers = {"Authorization": f"Bearer {created.json()['key']}"}
    async with httpx.AsyncClient(base_url=live.url, headers=headers) as client:
        _error(await client.get("/api/v1/callbacks/subscriptions"), 403, "forbidden")
        _error(await client.get("/api/v1/callbacks/log"), 403, "forbidden")
    async with httpx.AsyncClient(base_url=live.url) as anonymous:
        _error(await anonymous.get("/api/v1/callbacks/log"), 401, "unauthorized")


async def test_openapi_documents_the_callback_routes(live: Live) -> None:
    document = (await live.client.get("/api/v1/openapi.json")).json()
    paths = document["paths"]
    create = paths["/api/v1/callbacks/subscriptions"]["post"]
    assert create["requestBody"]["content"]["application/json"]["schema"]["$ref"].endswith(
        "SubscriptionIn"
    )
    assert {"201", "400", "401", "403", "415", "422"} <= set(create["responses"])
    assert "get" in paths["/api/v1/callbacks/subscriptions"]
    assert "404" in paths["/api/v1/callbacks/subscriptions/{sub_id}"]["delete"]["responses"]
    log = paths["/api/v1/callbacks/log"]["get"]
    assert {p["name"] for p in log["parameters"]} >= {"subscription", "event", "state", "cursor"}
