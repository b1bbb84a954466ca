"""Event types, template versions and publications: what routing reads.

Every change that affects routing (a publication, a pause) bumps the ``routing`` revision in
the same transaction, so workers notice it with one cheap read per claim and reload.
"""

from __future__ import annotations

import hashlib

import msgspec

from tidings import model
from tidings.store.database import Connection, sql

_content_decoder: msgspec.json.Decoder[model.Content] = msgspec.json.Decoder(model.Content)
_encode = msgspec.json.Encoder().encode

ROUTING = "routing"

GET_REVISION = sql("SELECT value FROM revisions WHERE name = $1")
BUMP_REVISION = sql(
    """INSERT INTO revisions (name, value) VALUES ($1, 1)
       ON CONFLICT (name) DO UPDATE SET value = revisions.value + 1"""
)


async def routing_revision(conn: Connection) -> int:
    """The current routing revision (0 before anything was published)."""
    value = await conn.fetchval(GET_REVISION, ROUTING)
    return int(value or 0)


async def bump_routing_revision(conn: Connection) -> None:
    """Tell every worker that routing data changed."""
    await conn.execute(BUMP_REVISION, ROUTING)


UPSERT_EVENT_TYPE = sql(
    """INSERT INTO event_types (name, label, default_channel, paused, created_at, updated_at)
       VALUES ($1, $2, $3, FALSE, $4, $4)
       ON CONFLICT (name) DO UPDATE SET label = excluded.label,
         default_channel = excluded.default_channel, updated_at = excluded.updated_at"""
)


async def upsert_event_type(
    conn: Connection, name: str, label: str, default_channel: model.Channel, now: int
) -> None:
    """Create an event type, or update its label and default channel."""
    await conn.execute(UPSERT_EVENT_TYPE, name, label, str(default_channel), now)
    await bump_routing_revision(conn)


LIST_EVENT_TYPES = sql(
    "SELECT name, label, default_channel, paused, spec FROM event_types ORDER BY name"
)


class _Channels(msgspec.Struct, frozen=True):
    """The part of an event type's spec that routing reads: its allowed channels."""

    channels: tuple[model.Channel, ...] = ()


_channels_decoder = msgspec.json.Decoder(_Channels)


async def list_event_types(conn: Connection) -> list[model.EventType]:
    """Every event type, by name, with its allowed channels (none listed for a type without
    a spec: any channel)."""
    rows = await conn.fetch(LIST_EVENT_TYPES)
    return [
        model.EventType(
            r[0],
            r[1],
            model.Channel(r[2]),
            bool(r[3]),
            _channels_decoder.decode(r[4]).channels if r[4] else (),
        )
        for r in rows
    ]


SET_PAUSED = sql("UPDATE event_types SET paused = $2, updated_at = $3 WHERE name = $1")


async def set_paused(conn: Connection, name: str, paused: bool, now: int) -> bool:
    """Pause or resume an event type; False if it does not exist."""
    changed = await conn.execute(SET_PAUSED, name, paused, now)
    if changed:
        await bump_routing_revision(conn)
    return changed > 0


NEXT_VERSION_NUMBER = sql(
    """SELECT COALESCE(MAX(number), 0) + 1 FROM template_versions
       WHERE event_type = $1 AND channel = $2"""
)
INSERT_VERSION = sql(
    """INSERT INTO template_versions (event_type, channel, number, content, author, created_at)
       VALUES ($1, $2, $3, $4, $5, $6) RETURNING id"""
)


async def add_template_version(
    conn: Connection,
    event_type: str,
    channel: model.Channel,
    content: model.Content,
    author: str,
    now: int,
) -> tuple[int, int]:
    """Save a new version of a template; return its (id, number)."""
    number = int(await conn.fetchval(NEXT_VERSION_NUMBER, event_type, str(channel)))
    version_id = await conn.fetchval(
        INSERT_VERSION, event_type, str(channel), number, _encode(content).decode(), author, now
    )
    return int(version_id), number


LATEST_VERSION = sql(
    """SELECT id, number, content FROM template_versions WHERE event_type = $1 AND channel = $2
       ORDER BY number DESC LIMIT 1"""
)


async def latest_version(
    conn: Connection, event_type: str, channel: model.Channel
) -> tuple[int, int, model.Content] | None:
    """The newest version of a template: (id, number, content)."""
    row = await conn.fetchrow(LATEST_VERSION, event_type, str(channel))
    return None if row is None else (int(row[0]), int(row[1]), _content_decoder.decode(row[2]))


DEACTIVATE = sql(
    "UPDATE publications SET active = FALSE WHERE event_type = $1 AND channel = $2 AND active"
)
INSERT_PUBLICATION = sql(
    """INSERT INTO publications (event_type, channel, version_id, content, content_hash,
       published_by, published_at, active) VALUES ($1, $2, $3, $4, $5, $6, $7, TRUE)
       RETURNING id"""
)
GET_ACTIVE_HASH = sql(
    """SELECT id, content_hash, version_id FROM publications
       WHERE event_type = $1 AND channel = $2 AND active"""
)


async def publish(
    conn: Connection,
    event_type: str,
    channel: model.Channel,
    version_id: int,
    content: model.Content,
    published_by: str,
    now: int,
) -> int:
    """Make ``version_id`` the one routed to for (event type, channel); return the
    publication id. Publishing the version that is already active changes nothing."""
    body = _encode(content)
    digest = hashlib.sha256(body).hexdigest()
    current = await conn.fetchrow(GET_ACTIVE_HASH, event_type, str(channel))
    if current is not None and current[1] == digest and current[2] == version_id:
        return int(current[0])
    await conn.execute(DEACTIVATE, event_type, str(channel))
    publication_id = await conn.fetchval(
        INSERT_PUBLICATION,
        event_type,
        str(channel),
        version_id,
        body.decode(),
        digest,
        published_by,
        now,
    )
    await bump_routing_revision(conn)
    return int(publication_id)


async def unpublish(conn: Connection, event_type: str, channel: model.Channel) -> bool:
    """Stop routing (event type, channel); events arriving afterwards end ``routingFailed``."""
    changed = await conn.execute(DEACTIVATE, event_type, str(channel))
    if changed:
        await bump_routing_revision(conn)
    return changed > 0


ACTIVE_PUBLICATIONS = sql(
    "SELECT id, event_type, channel, version_id, content, bundle FROM publications WHERE active"
)


class _Languages(msgspec.Struct, frozen=True):
    """The part of a publication's bundle that routing reads: its language variants."""

    variants: dict[str, model.Content] = {}
    languageField: str = ""


_languages_decoder = msgspec.json.Decoder(_Languages)


async def active_publications(conn: Connection) -> list[model.Publication]:
    """Every publication currently routed to, with its language variants (publications of
    template folders have none)."""
    rows = await conn.fetch(ACTIVE_PUBLICATIONS)
    found = []
    for r in rows:
        languages = _languages_decoder.decode(r[5]) if r[5] else _Languages()
        found.append(
            model.Publication(
                id=int(r[0]),
                event_type=r[1],
                channel=model.Channel(r[2]),
                version_id=int(r[3]),
                content=_content_decoder.decode(r[4]),
                variants=languages.variants,
                language_field=languages.languageField,
            )
        )
    return found


async def load_routing(
    conn: Connection,
) -> tuple[int, list[model.EventType], list[model.Publication]]:
    """Everything routing needs: (revision, event types, active publications)."""
    revision = await routing_revision(conn)
    return revision, await list_event_types(conn), await active_publications(conn)
