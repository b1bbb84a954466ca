"""Lookups for the console's events explorer and instances page that the other store
modules do not offer: an event's bounces, the template version an event was rendered with,
and the newest publication."""

from __future__ import annotations

import msgspec

from tidings import ids, model
from tidings.store import bounces
from tidings.store.database import Connection, sql

_content_decoder: msgspec.json.Decoder[model.Content] = msgspec.json.Decoder(model.Content)

BOUNCES_OF_EVENT = sql(f"SELECT {bounces._COLUMNS} FROM bounces WHERE event_id = $1 ORDER BY id")


async def bounces_of_event(conn: Connection, event_id: int) -> list[model.Bounce]:
    """The bounces reported about one event's message, oldest first."""
    rows = await conn.fetch(BOUNCES_OF_EVENT, ids.to_db(event_id))
    return [bounces._bounce(r) for r in rows]


class PinnedVersion(msgspec.Struct, frozen=True):
    """A template version as an event pinned it."""

    id: int
    event_type: str
    channel: model.Channel
    number: int
    content: model.Content


GET_VERSION = sql(
    "SELECT id, event_type, channel, number, content FROM template_versions WHERE id = $1"
)


async def template_version(conn: Connection, version_id: int) -> PinnedVersion | None:
    """One template version by id."""
    row = await conn.fetchrow(GET_VERSION, version_id)
    if row is None:
        return None
    return PinnedVersion(
        int(row[0]), row[1], model.Channel(row[2]), int(row[3]), _content_decoder.decode(row[4])
    )


class PublicationInfo(msgspec.Struct, frozen=True):
    """Who published what, when."""

    id: int
    event_type: str
    channel: model.Channel
    version_id: int
    published_by: str
    published_at: int
    active: bool


LAST_PUBLICATION = sql(
    """SELECT id, event_type, channel, version_id, published_by, published_at, active
       FROM publications ORDER BY id DESC LIMIT 1"""
)
COUNT_ACTIVE = sql("SELECT COUNT(*) FROM publications WHERE active")


async def last_publication(conn: Connection) -> PublicationInfo | None:
    """The newest publication, if any."""
    r = await conn.fetchrow(LAST_PUBLICATION)
    if r is None:
        return None
    return PublicationInfo(
        int(r[0]), r[1], model.Channel(r[2]), int(r[3]), r[4], int(r[5]), bool(r[6])
    )


async def count_active_publications(conn: Connection) -> int:
    """How many publications are routed to."""
    return int(await conn.fetchval(COUNT_ACTIVE))
