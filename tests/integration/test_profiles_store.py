"""Profiles and targeting in the store, on SQLite and PostgreSQL; the enrichment client
against a real HTTP server."""

from __future__ import annotations

import msgspec
import pytest

from tests.http_servers import Answer, http_server
from tests.integration.test_store import NOW, insert, new_event
from tidings import enrichment, model, profiles
from tidings.engine import reconciliation, route
from tidings.store import catalog
from tidings.store import events as events_store
from tidings.store import profiles as store
from tidings.store import targeting as targeting_store
from tidings.store.database import Database

S = model.EventStatus


def profile(key: str, **fields: object) -> model.Profile:
    return model.Profile(external_id=key, created_at=NOW, updated_at=NOW, **fields)  # type: ignore[arg-type]


async def test_upsert_keeps_created_at_and_replaces_the_rest(db: Database) -> None:
    first = profile(
        "a", email="a@example.com", push_tokens=("t",), attributes={"n": [1, {"x": "é"}]}
    )
    async with db.transaction() as conn:
        await store.upsert_profiles(conn, [first])
    later = msgspec.structs.replace(
        first, email=None, attributes={}, created_at=NOW + 5, updated_at=NOW + 5
    )
    async with db.transaction() as conn:
        await store.upsert_profiles(conn, [later])
        got = await store.get_profile(conn, "a")
    assert got is not None
    assert (got.email, got.attributes, got.push_tokens) == (None, {}, ("t",))
    assert (got.created_at, got.updated_at) == (NOW, NOW + 5)


async def test_one_query_matches_a_claim_batch(db: Database) -> None:
    async with db.transaction() as conn:
        await store.upsert_profiles(
            conn,
            [
                profile("a", email="shared@example.com"),
                msgspec.structs.replace(
                    profile("b", email="shared@example.com", mobile_phone="+33612345678"),
                    updated_at=NOW + 1,
                ),
                profile("c", email="c@example.com"),
            ],
        )
    routing = route.Routing.build(
        1,
        [],
        [],
        targeting=[
            model.Targeting("byId", model.ReconcileBy.EXTERNAL_ID),
            model.Targeting("byEmail", model.ReconcileBy.EMAIL),
            model.Targeting("byPhone", model.ReconcileBy.MOBILE_PHONE),
        ],
    )

    def ev(i: int, type_: str, **r: str) -> model.Event:
        return model.Event(
            id=i, type=type_, channel=None, recipient=model.Recipient(**r), ctx={}, priority=5,
            status=S.PROCESSING, source="api", received_at=NOW, scheduled_at=None,
            expires_at=None, due_at=NOW, attempts=1,
        )  # fmt: skip

    events = [
        ev(1, "byId", externalId="a"),
        ev(2, "byEmail", email="shared@example.com"),  # two profiles: the latest wins
        ev(3, "byPhone", mobilePhone="+33612345678"),
        ev(4, "byId", externalId="nobody"),
        ev(5, "other", externalId="c"),  # its type does not reconcile
        ev(6, "byEmail", externalId="c"),  # no email to match by
    ]
    async with db.connection() as conn:
        found = await reconciliation.profiles_for(conn, events, routing)
    assert {i: p.external_id for i, p in found.items()} == {1: "a", 2: "b", 3: "b"}


async def test_erasure_touches_only_queued_events_of_the_profile(db: Database) -> None:
    mine = profile(
        "c-9", email="jack@example.com", mobile_phone="+33612345678", push_tokens=("tok",)
    )
    async with db.transaction() as conn:
        await store.upsert_profiles(conn, [mine])
    by_email, by_token, other = new_event(email="jack@example.com"), new_event(), new_event()
    by_token = msgspec.structs.replace(by_token, email=None, push_token="tok")
    other = msgspec.structs.replace(other, email="someone@example.com")
    await insert(db, by_email, by_token, other)
    done = msgspec.structs.replace(new_event(email="jack@example.com"))
    await insert(db, done)
    async with db.transaction() as conn:
        await conn.execute(
            events_store.sql("UPDATE events SET status = 'processed' WHERE id = $1"),
            events_store.ids.to_db(done.id),
        )
    erasure = await profiles.delete(db, "c-9")
    assert erasure is not None
    assert erasure.events == 2
    async with db.connection() as conn:
        for e in (by_email, by_token):
            got = await events_store.get_event(conn, e.id)
            assert got is not None
            assert got.recipient == model.Recipient()
            assert (got.ctx, got.reason) == ({}, "recipient erased")
        kept = await events_store.get_event(conn, other.id)
        history = await events_store.get_event(conn, done.id)
        assert await store.get_profile(conn, "c-9") is None
    assert kept is not None
    assert kept.ctx == {"n": 1}
    assert history is not None
    assert history.recipient.email == "jack@example.com"
    assert await profiles.delete(db, "c-9") is None


async def test_targeting_changes_bump_the_routing_revision(db: Database) -> None:
    async with db.transaction() as conn:
        await catalog.upsert_event_type(conn, "order", "Order", model.Channel.EMAIL, NOW)
        before = await catalog.routing_revision(conn)
        await targeting_store.put_targeting(
            conn,
            model.Targeting(
                "order",
                model.ReconcileBy.EMAIL,
                model.OnMissing.TARGETING_FAILED,
                enrichment_url="http://x/e",
                enrichment_headers={"A": "b"},
                updated_at=NOW,
            ),
        )
        assert await catalog.routing_revision(conn) == before + 1
        [got] = await targeting_store.list_targeting(conn)
        assert got.enrichment_headers == {"A": "b"}
        assert got.on_missing is model.OnMissing.TARGETING_FAILED
        assert await targeting_store.delete_targeting(conn, "order")
        assert not await targeting_store.delete_targeting(conn, "order")
        assert await catalog.routing_revision(conn) == before + 2


def _event(i: int) -> model.Event:
    return model.Event(
        id=i, type="t", channel=None, recipient=model.Recipient(email=f"{i}@example.com"),
        ctx={}, priority=5, status=S.PROCESSING, source="api", received_at=NOW,
        scheduled_at=None, expires_at=None, due_at=NOW, attempts=1,
    )  # fmt: skip


async def test_enricher_cache_is_bounded_and_drops_are_temporary() -> None:
    async with http_server(lambda r: Answer(body=b'{"n": 1}')) as server:
        t = model.Targeting("t", enrichment_url=server.url, enrichment_ttl=60)
        enricher = enrichment.Enricher(cache_size=2)
        try:
            for i in (1, 2, 1, 3, 1, 2):
                await enricher.fetch(t, _event(i))
            # 1, 2 miss; 1 hits; 3 misses and pushes out 2; 1 hits; 2 misses again.
            assert enricher.calls == 4
            no_cache = msgspec.structs.replace(t, enrichment_ttl=0)
            await enricher.fetch(no_cache, _event(7))
            await enricher.fetch(no_cache, _event(7))
            assert enricher.calls == 6
        finally:
            await enricher.aclose()
    async with http_server(lambda r: Answer(drop=True)) as server:
        enricher = enrichment.Enricher()
        try:
            t = model.Targeting("t", enrichment_url=server.url + "/d")
            with pytest.raises(enrichment.Unavailable, match=r"failed|could not be reached"):
                await enricher.fetch(t, _event(1))
        finally:
            await enricher.aclose()
