"""Profiles, reconciliation, enrichment and erasure through the real HTTP API, on SQLite and
PostgreSQL: a live Tidings, and (for enrichment) a real HTTP server on loopback."""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Any

import httpx

from tests.acceptance.conftest import Live, Serve, eventually
from tests.acceptance.test_api import assert_error
from tests.http_servers import Answer, Received, http_server
from tidings import clock
from tidings.control import folders

FINAL = ("processed", "ignored", "deliveryFailed", "routingFailed", "tooOld", "targetingFailed")


async def publish(live: Live, root: Path, name: str, *, toml: str = "", **texts: str) -> None:
    """Publish an event type from a template folder written from ``texts``."""
    folder = root / name
    folder.mkdir(parents=True)
    if toml:
        (folder / "template.toml").write_text(toml)
    for filename, text in texts.items():
        (folder / filename.replace("_", ".")).write_text(text)
    await folders.publish_folder(live.app.db, root, author="tests", renderer=live.app.renderer)
    await live.app.refresh_routing()


async def welcome(live: Live, root: Path, **targeting: Any) -> None:
    """The ``welcome`` email type, reconciled as ``targeting`` says."""
    await publish(
        live,
        root,
        "welcome",
        subject_txt="Welcome {{ profile.firstName }} ({{ language }})\n",
        email_txt="Hi {{ profile.firstName }} {{ profile.lastName }}, to {{ recipient.email }}; "
        "plan {{ enrichment.plan }}.\n",
    )
    response = await live.client.put("/api/v1/event-types/welcome/targeting", json=targeting)
    assert response.status_code == 200, response.text


async def outbox(live: Live) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = (await live.client.get("/api/v1/outbox")).json()["items"]
    return items


JACK = {
    "email": "jack@example.com",
    "mobilePhone": "+33612345678",
    "pushTokens": ["fcm:token-1", "fcm:token-2"],
    "language": "fr-FR",
    "attributes": {"firstName": "Jack", "lastName": "Doe", "tier": 3},
}

# ------------------------------------------------------------------------ profiles CRUD


async def test_put_get_list_delete_a_profile(live: Live) -> None:
    created = await live.client.put("/api/v1/profiles/c-1", json=JACK)
    assert created.status_code == 201, created.text
    body = created.json()
    assert body["externalId"] == "c-1"
    assert body["pushTokens"] == ["fcm:token-1", "fcm:token-2"]
    assert body["attributes"] == JACK["attributes"]
    replaced = await live.client.put(
        "/api/v1/profiles/c-1", json={**JACK, "language": "en", "externalId": "c-1"}
    )
    assert replaced.status_code == 200, replaced.text
    assert replaced.json()["createdAt"] == body["createdAt"]
    got = (await live.client.get("/api/v1/profiles/c-1")).json()
    assert got["language"] == "en"
    for n in range(2, 5):
        await live.client.put(f"/api/v1/profiles/c-{n}", json={"email": f"p{n}@example.com"})
    by_email = (
        await live.client.get("/api/v1/profiles", params={"email": "p3@example.com"})
    ).json()
    assert [p["externalId"] for p in by_email["items"]] == ["c-3"]
    by_phone = (
        await live.client.get("/api/v1/profiles", params={"mobilePhone": "+33612345678"})
    ).json()
    assert [p["externalId"] for p in by_phone["items"]] == ["c-1"]
    first = (await live.client.get("/api/v1/profiles", params={"limit": 3})).json()
    assert [p["externalId"] for p in first["items"]] == ["c-1", "c-2", "c-3"]
    rest = (
        await live.client.get("/api/v1/profiles", params={"limit": 3, "cursor": first["next"]})
    ).json()
    assert [p["externalId"] for p in rest["items"]] == ["c-4"]
    assert rest["next"] is None
    deleted = await live.client.delete("/api/v1/profiles/c-1")
    assert deleted.json() == {"externalId": "c-1", "erasedEvents": 0}
    assert_error(await live.client.get("/api/v1/profiles/c-1"), 404, "not_found")
    assert_error(await live.client.delete("/api/v1/profiles/c-1"), 404, "not_found")


async def test_bad_profiles_are_refused_and_change_nothing(live: Live) -> None:
    put = live.client.put
    assert_error(
        await put("/api/v1/profiles/x", json={"email": "x@"}), 422, "invalid_email", "$.email"
    )
    assert_error(
        await put("/api/v1/profiles/x", json={"mobilePhone": "call me"}), 422, "invalid_phone"
    )
    assert_error(
        await put("/api/v1/profiles/x", json={"language": "français"}), 422, "invalid_field"
    )
    assert_error(
        await put("/api/v1/profiles/x", json={"externalId": "y"}),
        422,
        "invalid_field",
        "$.externalId",
    )
    assert_error(await put("/api/v1/profiles/x", json={"colour": "red"}), 422, "unknown_field")
    assert_error(await put("/api/v1/profiles/x", json={"attributes": [1]}), 422, "invalid_field")
    assert_error(
        await put(
            "/api/v1/profiles/x", content=b"{nope", headers={"Content-Type": "application/json"}
        ),
        400,
        "malformed_json",
    )
    assert_error(
        await put("/api/v1/profiles/x", json={"pushTokens": ["a\x00b"]}), 422, "invalid_field"
    )
    assert (await live.client.get("/api/v1/profiles")).json()["items"] == []
    anonymous = httpx.AsyncClient(base_url=live.url)
    async with anonymous:
        assert_error(await anonymous.get("/api/v1/profiles"), 401, "unauthorized")


# ------------------------------------------------------------------------ import


async def test_import_ndjson_with_bad_lines(live: Live) -> None:
    lines = [
        '{"externalId": "n-1", "email": "n1@example.com", "attributes": {"firstName": "Ann"}}',
        "{not json",
        "",
        '{"externalId": "n-2", "email": "bad@"}',
        '{"email": "nobody@example.com"}',
        '{"externalId": "n-3", "mobilePhone": "+441234567890", "language": "en"}',
        '{"externalId": "n-1", "email": "n1@example.com", "attributes": {"firstName": "Anne"}}',
    ]
    response = await live.client.post(
        "/api/v1/profiles/import",
        content="\n".join(lines).encode(),
        headers={"Content-Type": "application/x-ndjson"},
    )
    assert response.status_code == 200, response.text
    result = response.json()
    assert result["imported"] == 3
    assert result["failed"] == 3
    assert [e["line"] for e in result["errors"]] == [2, 4, 5]
    assert result["errors"][1]["field"] == "$.email"
    assert "externalId" in result["errors"][2]["message"]
    ann = (await live.client.get("/api/v1/profiles/n-1")).json()
    assert ann["attributes"] == {"firstName": "Anne"}  # the later line wins
    assert (await live.client.get("/api/v1/profiles/n-3")).json()["language"] == "en"


async def test_import_csv_with_bad_lines_in_streamed_pieces(live: Live) -> None:
    text = (
        "externalId,email,mobilePhone,pushTokens,language,firstName,note\r\n"
        'k-1,k1@example.com,,fcm:a fcm:b,de,Klaus,"two\r\nlines, quoted"\r\n'
        "k-2,not-an-email,,,,Kim,\r\n"
        "k-3,k3@example.com,,,\r\n"
        'k-4,k4@example.com,+4915112345678,,,"Kai ""K"" Müller",\r\n'
    ).encode()

    async def pieces() -> Any:
        for i in range(0, len(text), 7):  # pieces that cut lines and characters
            yield text[i : i + 7]

    response = await live.client.post(
        "/api/v1/profiles/import", content=pieces(), headers={"Content-Type": "text/csv"}
    )
    assert response.status_code == 200, response.text
    result = response.json()
    assert (result["imported"], result["failed"]) == (2, 2)
    assert [e["line"] for e in result["errors"]] == [4, 5]
    assert "fields" in result["errors"][1]["message"]
    klaus = (await live.client.get("/api/v1/profiles/k-1")).json()
    assert klaus["pushTokens"] == ["fcm:a", "fcm:b"]
    assert klaus["attributes"] == {"firstName": "Klaus", "note": "two\nlines, quoted"}
    kai = (await live.client.get("/api/v1/profiles/k-4")).json()
    assert kai["attributes"] == {"firstName": 'Kai "K" Müller'}
    assert kai["mobilePhone"] == "+4915112345678"


async def test_import_refuses_other_media_types(live: Live) -> None:
    response = await live.client.post("/api/v1/profiles/import", json={"externalId": "j"})
    assert_error(response, 415, "unsupported_media_type")
    assert (await live.client.get("/api/v1/profiles")).json()["items"] == []


# ------------------------------------------------------------------------ targeting


async def test_targeting_routes(live: Live) -> None:
    path = "/api/v1/event-types/cartAbandonment/targeting"
    default = (await live.client.get(path)).json()
    assert default["reconcileBy"] == "none"
    assert default["onMissing"] == "send"
    assert default["enrichmentUrl"] is None
    set_to = {
        "reconcileBy": "email",
        "onMissing": "targetingFailed",
        "enrichmentUrl": "https://crm.example.com/enrich",
        "enrichmentMethod": "get",
        "enrichmentTimeout": 1.5,
        "enrichmentTtl": 30,
        "enrichmentHeaders": {"Authorization": "Bearer s3cret"},
    }
    stored = (await live.client.put(path, json=set_to)).json()
    assert stored["enrichmentMethod"] == "GET"
    assert (await live.client.get(path)).json() == stored
    for bad, field in (
        ({"reconcileBy": "phone"}, "$.reconcileBy"),
        ({"enrichmentUrl": "ftp://x"}, "$.enrichmentUrl"),
        ({"enrichmentTimeout": 0}, "$.enrichmentTimeout"),
        ({"enrichmentTtl": -1}, "$.enrichmentTtl"),
        ({"enrichmentHeaders": {"Bad Name": "x"}}, "$.enrichmentHeaders.Bad Name"),
        ({"enrichmentHeaders": {"X-A": "a\r\nInjected: 1"}}, "$.enrichmentHeaders.X-A"),
    ):
        assert_error(await live.client.put(path, json=bad), 422, "invalid_field", field)
    assert (await live.client.get(path)).json() == stored
    assert_error(
        await live.client.put("/api/v1/event-types/nope/targeting", json={}), 404, "not_found"
    )
    assert_error(await live.client.get("/api/v1/event-types/nope/targeting"), 404, "not_found")
    assert (await live.client.delete(path)).status_code == 204
    assert (await live.client.get(path)).json()["reconcileBy"] == "none"
    document = (await live.client.get("/api/v1/openapi.json")).json()
    assert {"get", "put", "delete"} <= set(
        document["paths"]["/api/v1/event-types/{name}/targeting"]
    )
    assert "targetingFailed" in str(document["components"]["schemas"])


# ------------------------------------------------------------------------ reconciliation


async def test_reconciliation_fills_the_address_and_renders_the_profile(
    live: Live, tmp_path: Path
) -> None:
    await welcome(live, tmp_path, reconcileBy="externalId", onMissing="send")
    await live.client.put("/api/v1/profiles/c-9", json=JACK)
    event = await live.post_event(type="welcome", recipient={"externalId": "c-9"}, ctx={})
    done = await live.wait_status(event["id"], *FINAL)
    assert done["status"] == "processed", done
    assert done["deliveries"][0]["address"] == "jack@example.com"
    [message] = await outbox(live)
    assert message["recipient"] == "jack@example.com"
    assert message["subject"] == "Welcome Jack (fr-FR)"
    assert message["text"].startswith("Hi Jack Doe, to jack@example.com; plan .")
    # The event's own address wins over the profile's.
    own = await live.post_event(
        type="welcome", recipient={"externalId": "c-9", "email": "own@example.com"}, ctx={}
    )
    assert (await live.wait_status(own["id"], *FINAL))["deliveries"][0]["address"] == (
        "own@example.com"
    )


async def test_a_quarantined_profile_address_is_not_sent_to(live: Live, tmp_path: Path) -> None:
    # The claim checks the events' own addresses; a profile's are looked up after it.
    await welcome(live, tmp_path, reconcileBy="externalId", onMissing="send")
    await live.client.put("/api/v1/profiles/c-9", json=JACK)
    await live.client.put("/api/v1/profiles/c-10", json={"email": "kim@example.com"})
    added = await live.client.post("/api/v1/quarantine", json={"address": "jack@example.com"})
    assert added.status_code == 201, added.text
    held = await live.post_event(type="welcome", recipient={"externalId": "c-9"}, ctx={})
    sent = await live.post_event(type="welcome", recipient={"externalId": "c-10"}, ctx={})
    done = await live.wait_status(held["id"], *FINAL)
    assert (done["status"], done["deliveries"]) == ("ignored", []), done
    assert "jack@example.com" in done["reason"]
    assert (await live.wait_status(sent["id"], *FINAL))["status"] == "processed"
    assert [m["recipient"] for m in await outbox(live)] == ["kim@example.com"]


async def test_reconciliation_by_email_and_phone(live: Live, tmp_path: Path) -> None:
    await welcome(live, tmp_path, reconcileBy="email")
    await live.client.put("/api/v1/profiles/c-9", json=JACK)
    event = await live.post_event(type="welcome", recipient={"email": "jack@example.com"}, ctx={})
    assert (await live.wait_status(event["id"], *FINAL))["status"] == "processed"
    assert (await outbox(live))[0]["subject"] == "Welcome Jack (fr-FR)"
    await live.client.put(
        "/api/v1/event-types/welcome/targeting",
        json={"reconcileBy": "mobilePhone", "onMissing": "targetingFailed"},
    )
    by_phone = await live.post_event(
        type="welcome", recipient={"mobilePhone": "+33612345678"}, ctx={}, channel="email"
    )
    done = await live.wait_status(by_phone["id"], *FINAL)
    assert done["status"] == "processed", done
    assert done["deliveries"][0]["address"] == "jack@example.com"


async def test_no_profile_sends_without_it_or_ends_targeting_failed(
    live: Live, tmp_path: Path
) -> None:
    await welcome(live, tmp_path, reconcileBy="externalId", onMissing="send")
    sent = await live.post_event(
        type="welcome", recipient={"externalId": "ghost", "email": "g@example.com"}, ctx={}
    )
    assert (await live.wait_status(sent["id"], *FINAL))["status"] == "processed"
    assert (await outbox(live))[0]["subject"] == "Welcome ()"
    await live.client.put(
        "/api/v1/event-types/welcome/targeting",
        json={"reconcileBy": "externalId", "onMissing": "targetingFailed"},
    )
    failed = await live.post_event(
        type="welcome", recipient={"externalId": "ghost", "email": "g@example.com"}, ctx={}
    )
    done = await live.wait_status(failed["id"], *FINAL)
    assert done["status"] == "targetingFailed"
    assert "ghost" in done["reason"]
    # Without an address of its own and no profile to give one, it fails the same way.
    bare = await live.post_event(type="welcome", recipient={"externalId": "ghost2"}, ctx={})
    assert (await live.wait_status(bare["id"], *FINAL))["status"] == "targetingFailed"
    assert len(await outbox(live)) == 1


async def test_channel_is_chosen_by_the_profile_addresses(live: Live, tmp_path: Path) -> None:
    await publish(
        live,
        tmp_path,
        "otp",
        toml='default_channel = "sms"\n',
        sms_txt="Code {{ ctx.code }}\n",
        subject_txt="Your code\n",
        email_txt="Code {{ ctx.code }} for {{ profile.firstName }}\n",
    )
    await live.client.put("/api/v1/event-types/otp/targeting", json={"reconcileBy": "externalId"})
    await live.client.put(
        "/api/v1/profiles/e-1", json={"email": "e1@example.com", "attributes": {"firstName": "Eve"}}
    )
    event = await live.post_event(type="otp", recipient={"externalId": "e-1"}, ctx={"code": "42"})
    done = await live.wait_status(event["id"], *FINAL)
    assert done["status"] == "processed", done
    assert done["deliveries"][0]["channel"] == "email"
    assert (await outbox(live))[0]["text"].startswith("Code 42 for Eve")


# ------------------------------------------------------------------------ enrichment


async def test_enrichment_answer_is_rendered_and_cached(live: Live, tmp_path: Path) -> None:
    def crm(request: Received) -> Answer:
        return Answer(body=b'{"plan": "gold"}')

    async with http_server(crm) as server:
        await welcome(
            live,
            tmp_path,
            reconcileBy="externalId",
            enrichmentUrl=server.url + "/enrich",
            enrichmentHeaders={"X-Token": "t0k"},
        )
        await live.client.put("/api/v1/profiles/c-9", json=JACK)
        for _ in range(2):
            event = await live.post_event(
                type="welcome", recipient={"externalId": "c-9"}, ctx={"n": 1}
            )
            assert (await live.wait_status(event["id"], *FINAL))["status"] == "processed"
        assert len(server.requests) == 1  # the second answer came from the cache
        call = server.requests[0]
        assert call.method == "POST"
        assert call.path == "/enrich"
        assert call.headers["x-token"] == "t0k"
        assert b'"externalId":"c-9"' in call.body
        assert b'"ctx":{"n":1}' in call.body
        assert b'"email":"jack@example.com"' in call.body  # the filled-in recipient
    assert all("plan gold." in m["text"] for m in await outbox(live))


async def test_enrichment_by_get(live: Live, tmp_path: Path) -> None:
    async with http_server(lambda r: Answer(body=b'{"plan": "silver"}')) as server:
        await welcome(live, tmp_path, enrichmentUrl=server.url + "/e", enrichmentMethod="GET")
        event = await live.post_event(
            type="welcome", recipient={"email": "x@example.com"}, ctx={"a": "b"}
        )
        assert (await live.wait_status(event["id"], *FINAL))["status"] == "processed"
        call = server.requests[0]
        assert call.method == "GET"
        assert call.query == {"eventType": "welcome", "email": "x@example.com", "ctx": '{"a":"b"}'}
    assert "plan silver." in (await outbox(live))[0]["text"]


def _soon(seconds: float) -> str:
    return clock.format_iso(clock.now_us() + int(seconds * 1_000_000))


async def _fails(live: Live, tmp_path: Path, url: str, **targeting: Any) -> dict[str, Any]:
    await welcome(live, tmp_path, enrichmentUrl=url, **targeting)
    event = await live.post_event(
        type="welcome", recipient={"email": "x@example.com"}, ctx={}, expiration=_soon(1.5)
    )
    done = await live.wait_status(event["id"], *FINAL)
    assert done["status"] == "deliveryFailed", done
    assert await outbox(live) == []
    return done


async def test_enrichment_500_is_retried_then_fails(live: Live, tmp_path: Path) -> None:
    async with http_server(lambda r: Answer(500, b"database down", "text/plain")) as server:
        done = await _fails(live, tmp_path, server.url + "/e")
        assert len(server.requests) >= 2  # retried
        assert done["attempts"] >= 2
    assert done["reason"] == f"enrichment source {server.url}/e answered 500: database down"


async def test_enrichment_404_fails_at_once(live: Live, tmp_path: Path) -> None:
    async with http_server(lambda r: Answer(404, b'{"error": "unknown"}')) as server:
        done = await _fails(live, tmp_path, server.url + "/e")
        assert len(server.requests) == 1
    assert done["attempts"] == 1
    assert "answered 404" in done["reason"]


async def test_enrichment_timeout_is_retried_then_fails(live: Live, tmp_path: Path) -> None:
    async with http_server(lambda r: Answer(delay=5.0)) as server:
        done = await _fails(live, tmp_path, server.url + "/slow", enrichmentTimeout=0.3)
    assert done["reason"] == f"enrichment source {server.url}/slow timed out after 0.3 s"


async def test_enrichment_refused_is_retried_then_fails(live: Live, tmp_path: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # nothing listens there once closed
    done = await _fails(live, tmp_path, f"http://127.0.0.1:{port}/e")
    assert done["reason"].startswith(f"enrichment source http://127.0.0.1:{port}/e could not be")


async def test_enrichment_non_json_is_retried_then_fails(live: Live, tmp_path: Path) -> None:
    async with http_server(lambda r: Answer(body=b"<html>", content_type="text/html")) as server:
        done = await _fails(live, tmp_path, server.url + "/e")
    assert "did not answer a JSON object" in done["reason"]


# ------------------------------------------------------------------------ erasure


async def test_deleting_a_profile_erases_its_queued_events(live: Live, tmp_path: Path) -> None:
    await welcome(live, tmp_path, reconcileBy="externalId")
    await live.client.put("/api/v1/profiles/c-9", json=JACK)
    await live.client.put("/api/v1/profiles/c-10", json={"email": "other@example.com"})
    assert (await live.client.post("/api/v1/event-types/welcome/pause")).status_code == 200
    ctx = {"secret": "Jack's order"}
    by_id = await live.post_event(type="welcome", recipient={"externalId": "c-9"}, ctx=ctx)
    by_email = await live.post_event(
        type="welcome", recipient={"email": "jack@example.com"}, ctx=ctx
    )
    later = await live.post_event(
        type="welcome",
        recipient={"mobilePhone": "+33612345678", "email": "x@example.com"},
        ctx=ctx,
        scheduled=_soon(3600),
    )
    other = await live.post_event(type="welcome", recipient={"externalId": "c-10"}, ctx=ctx)
    for event in (by_id, by_email, other):
        await live.wait_status(event["id"], "paused")
    erased = (await live.client.delete("/api/v1/profiles/c-9")).json()
    assert erased == {"externalId": "c-9", "erasedEvents": 3}
    for event in (by_id, by_email, later):
        stored = (await live.client.get(f"/api/v1/events/{event['id']}")).json()
        assert stored["ctx"] == {}
        assert not any(stored["recipient"].values()), stored["recipient"]
        assert stored["reason"] == "recipient erased"
    kept = (await live.client.get(f"/api/v1/events/{other['id']}")).json()
    assert kept["ctx"] == ctx
    assert kept["recipient"]["externalId"] == "c-10"
    assert (await live.client.post("/api/v1/event-types/welcome/resume")).status_code == 200
    for event in (by_id, by_email):
        done = await live.wait_status(event["id"], *FINAL)
        assert (done["status"], done["reason"]) == ("targetingFailed", "recipient erased")
    assert (await live.wait_status(other["id"], *FINAL))["status"] == "processed"
    assert [m["recipient"] for m in await outbox(live)] == ["other@example.com"]

    async def nothing_left() -> bool:
        async with live.app.db.connection() as conn:
            from tidings.store import profiles as profiles_store

            return await profiles_store.get_profile(conn, "c-9") is None

    await eventually(nothing_left)


async def test_import_over_the_size_limit_is_413(serve: Serve) -> None:
    async with serve(profile_import_max_bytes=100) as live:
        body = b"".join(b'{"externalId": "x-%d"}\n' % i for i in range(20))
        response = await live.client.post(
            "/api/v1/profiles/import",
            content=body,
            headers={"Content-Type": "application/x-ndjson"},
        )
        assert_error(response, 413, "body_too_large")
