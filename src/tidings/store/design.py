"""What the control instance keeps: event type specs, template versions with their language
variants, content blocks, test profiles, frozen publications and the publication audit log.

Specs, contents and bundles are JSON text made by the control functions (this module stores
and returns them as they are); routing reads publications through :mod:`.catalog`, so every
change to what is routed bumps the routing revision here too.
"""

from __future__ import annotations

import hashlib

import msgspec

from tidings import model
from tidings.store import catalog
from tidings.store.database import Connection, Row, sql


class EventTypeRow(msgspec.Struct, frozen=True):
    """An event type with its spec (JSON text, None for a type made before specs)."""

    name: str
    label: str
    default_channel: model.Channel
    paused: bool
    spec: str | None
    created_at: int
    updated_at: int


class VersionRow(msgspec.Struct, frozen=True):
    """A saved template version: content and variants as JSON text."""

    id: int
    event_type: str
    channel: model.Channel
    number: int
    content: str
    variants: str | None
    author: str
    created_at: int


class BlockRow(msgspec.Struct, frozen=True):
    """One version of a content block."""

    name: str
    number: int
    source: str
    author: str
    created_at: int


class ProfileRow(msgspec.Struct, frozen=True):
    """A test profile: recipient and ctx as JSON text."""

    event_type: str
    name: str
    recipient: str
    ctx: str
    updated_at: int


class PublicationRow(msgspec.Struct, frozen=True):
    """A publication with its frozen bundle (JSON text)."""

    id: int
    event_type: str
    channel: model.Channel
    version_id: int
    content_hash: str
    bundle: str | None
    published_by: str
    published_at: int
    active: bool


class AuditRow(msgspec.Struct, frozen=True):
    """One line of the publication audit log."""

    id: int
    event_type: str
    channel: model.Channel
    action: str
    version_number: int | None
    publication_id: int | None
    content_hash: str
    actor: str
    created_at: int


# -- event types ----------------------------------------------------------------------------------

_TYPE_COLUMNS = "name, label, default_channel, paused, spec, created_at, updated_at"

INSERT_EVENT_TYPE = sql(
    """INSERT INTO event_types (name, label, default_channel, paused, spec, created_at,
       updated_at) VALUES ($1, $2, $3, FALSE, $4, $5, $5) ON CONFLICT (name) DO NOTHING"""
)


async def insert_event_type(
    conn: Connection, name: str, label: str, default_channel: model.Channel, spec: str, now: int
) -> bool:
    """Create an event type; False if the name is taken."""
    created = await conn.execute(INSERT_EVENT_TYPE, name, label, str(default_channel), spec, now)
    if created:
        await catalog.bump_routing_revision(conn)
    return created > 0


UPDATE_EVENT_TYPE = sql(
    """UPDATE event_types SET label = $2, default_channel = $3, spec = $4, updated_at = $5
       WHERE name = $1"""
)


async def update_event_type(
    conn: Connection, name: str, label: str, default_channel: model.Channel, spec: str, now: int
) -> bool:
    """Replace an event type's label, default channel and spec; False if it does not exist."""
    changed = await conn.execute(UPDATE_EVENT_TYPE, name, label, str(default_channel), spec, now)
    if changed:
        await catalog.bump_routing_revision(conn)
    return changed > 0


GET_EVENT_TYPE = sql(f"SELECT {_TYPE_COLUMNS} FROM event_types WHERE name = $1")
LIST_EVENT_TYPES = sql(f"SELECT {_TYPE_COLUMNS} FROM event_types ORDER BY name")


def _type_row(row: Row) -> EventTypeRow:
    return EventTypeRow(
        str(row[0]),
        str(row[1]),
        model.Channel(row[2]),
        bool(row[3]),
        None if row[4] is None else str(row[4]),
        int(row[5]),
        int(row[6]),
    )


async def get_event_type(conn: Connection, name: str) -> EventTypeRow | None:
    """One event type by name."""
    row = await conn.fetchrow(GET_EVENT_TYPE, name)
    return None if row is None else _type_row(row)


async def list_event_types(conn: Connection) -> list[EventTypeRow]:
    """Every event type, by name."""
    return [_type_row(r) for r in await conn.fetch(LIST_EVENT_TYPES)]


LIST_SPECS = sql("SELECT name, spec FROM event_types WHERE spec IS NOT NULL")


async def list_specs(conn: Connection) -> list[tuple[str, str]]:
    """(name, spec) of every event type that has a spec (what ingest validates with)."""
    return [(str(r[0]), str(r[1])) for r in await conn.fetch(LIST_SPECS)]


COUNT_QUEUED = sql(
    "SELECT COUNT(*) FROM events WHERE type = $1 AND status IN ('pending', 'processing')"
)


async def count_queued(conn: Connection, event_type: str) -> int:
    """How many events of a type wait in the queue (pending or being processed)."""
    return int(await conn.fetchval(COUNT_QUEUED, event_type))


DELETE_EVENT_TYPE = sql("DELETE FROM event_types WHERE name = $1")
DELETE_VERSIONS = sql("DELETE FROM template_versions WHERE event_type = $1")
DELETE_PROFILES = sql("DELETE FROM test_profiles WHERE event_type = $1")
DEACTIVATE_ALL = sql("UPDATE publications SET active = FALSE WHERE event_type = $1 AND active")


async def delete_event_type(conn: Connection, name: str) -> bool:
    """Delete an event type with its template versions and test profiles, and stop routing
    it (publications stay, inactive, for the record); False if it does not exist."""
    deleted = await conn.execute(DELETE_EVENT_TYPE, name)
    if not deleted:
        return False
    await conn.execute(DELETE_VERSIONS, name)
    await conn.execute(DELETE_PROFILES, name)
    await conn.execute(DEACTIVATE_ALL, name)
    await catalog.bump_routing_revision(conn)
    return True


# -- template versions ----------------------------------------------------------------------------

_VERSION_COLUMNS = "id, event_type, channel, number, content, variants, author, created_at"

NEXT_NUMBER = sql(
    """SELECT COALESCE(MAX(number), 0) + 1 FROM template_versions
       WHERE event_type = $1 AND channel = $2"""
)
INSERT_VERSION = sql(
    """INSERT INTO template_versions (event_type, channel, number, content, variants, author,
       created_at) VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING id"""
)


async def add_version(
    conn: Connection,
    event_type: str,
    channel: model.Channel,
    content: str,
    variants: str | None,
    author: str,
    now: int,
) -> VersionRow:
    """Save a new version (the next number) of a template."""
    number = int(await conn.fetchval(NEXT_NUMBER, event_type, str(channel)))
    version_id = await conn.fetchval(
        INSERT_VERSION, event_type, str(channel), number, content, variants, author, now
    )
    return VersionRow(int(version_id), event_type, channel, number, content, variants, author, now)


def _version_row(row: Row) -> VersionRow:
    return VersionRow(
        int(row[0]),
        str(row[1]),
        model.Channel(row[2]),
        int(row[3]),
        str(row[4]),
        None if row[5] is None else str(row[5]),
        str(row[6]),
        int(row[7]),
    )


GET_VERSION = sql(
    f"""SELECT {_VERSION_COLUMNS} FROM template_versions
        WHERE event_type = $1 AND channel = $2 AND number = $3"""
)


async def get_version(
    conn: Connection, event_type: str, channel: model.Channel, number: int
) -> VersionRow | None:
    """One version of a template by number."""
    row = await conn.fetchrow(GET_VERSION, event_type, str(channel), number)
    return None if row is None else _version_row(row)


LIST_VERSIONS = sql(
    f"""SELECT {_VERSION_COLUMNS} FROM template_versions
        WHERE event_type = $1 AND channel = $2 ORDER BY number DESC"""
)


async def list_versions(
    conn: Connection, event_type: str, channel: model.Channel
) -> list[VersionRow]:
    """Every version of a template, newest first."""
    return [_version_row(r) for r in await conn.fetch(LIST_VERSIONS, event_type, str(channel))]


# -- content blocks -------------------------------------------------------------------------------

NEXT_BLOCK_NUMBER = sql("SELECT COALESCE(MAX(number), 0) + 1 FROM content_blocks WHERE name = $1")
INSERT_BLOCK = sql(
    """INSERT INTO content_blocks (name, number, source, author, created_at)
       VALUES ($1, $2, $3, $4, $5)"""
)


async def add_block(conn: Connection, name: str, source: str, author: str, now: int) -> BlockRow:
    """Save a new version of a content block."""
    number = int(await conn.fetchval(NEXT_BLOCK_NUMBER, name))
    await conn.execute(INSERT_BLOCK, name, number, source, author, now)
    return BlockRow(name, number, source, author, now)


LATEST_BLOCKS = sql(
    """SELECT b.name, b.number, b.source, b.author, b.created_at FROM content_blocks b
       WHERE b.number = (SELECT MAX(number) FROM content_blocks c WHERE c.name = b.name)
       ORDER BY b.name"""
)


async def latest_blocks(conn: Connection) -> list[BlockRow]:
    """The newest version of every content block, by name."""
    return [
        BlockRow(str(r[0]), int(r[1]), str(r[2]), str(r[3]), int(r[4]))
        for r in await conn.fetch(LATEST_BLOCKS)
    ]


BLOCK_VERSIONS = sql(
    """SELECT name, number, source, author, created_at FROM content_blocks WHERE name = $1
       ORDER BY number DESC"""
)


async def block_versions(conn: Connection, name: str) -> list[BlockRow]:
    """Every version of one block, newest first."""
    return [
        BlockRow(str(r[0]), int(r[1]), str(r[2]), str(r[3]), int(r[4]))
        for r in await conn.fetch(BLOCK_VERSIONS, name)
    ]


LATEST_VERSIONS_MENTIONING = sql(
    f"""SELECT {_VERSION_COLUMNS} FROM template_versions v
        WHERE v.number = (SELECT MAX(number) FROM template_versions w
                          WHERE w.event_type = v.event_type AND w.channel = v.channel)
          AND (v.content LIKE $1 OR v.variants LIKE $1)
        ORDER BY v.event_type, v.channel"""
)


async def latest_versions_mentioning(conn: Connection, text: str) -> list[VersionRow]:
    """The newest version of every template whose content or variants hold ``text``
    (``%`` and ``_`` in it match themselves only loosely: callers check the rows)."""
    return [_version_row(r) for r in await conn.fetch(LATEST_VERSIONS_MENTIONING, f"%{text}%")]


# -- test profiles --------------------------------------------------------------------------------

UPSERT_PROFILE = sql(
    """INSERT INTO test_profiles (event_type, name, recipient, ctx, updated_at)
       VALUES ($1, $2, $3, $4, $5)
       ON CONFLICT (event_type, name) DO UPDATE SET recipient = excluded.recipient,
         ctx = excluded.ctx, updated_at = excluded.updated_at"""
)


async def put_profile(
    conn: Connection, event_type: str, name: str, recipient: str, ctx: str, now: int
) -> ProfileRow:
    """Create or replace a test profile."""
    await conn.execute(UPSERT_PROFILE, event_type, name, recipient, ctx, now)
    return ProfileRow(event_type, name, recipient, ctx, now)


GET_PROFILE = sql(
    """SELECT event_type, name, recipient, ctx, updated_at FROM test_profiles
       WHERE event_type = $1 AND name = $2"""
)
LIST_PROFILES = sql(
    """SELECT event_type, name, recipient, ctx, updated_at FROM test_profiles
       WHERE event_type = $1 ORDER BY name"""
)


def _profile_row(row: Row) -> ProfileRow:
    return ProfileRow(str(row[0]), str(row[1]), str(row[2]), str(row[3]), int(row[4]))


async def get_profile(conn: Connection, event_type: str, name: str) -> ProfileRow | None:
    """One test profile."""
    row = await conn.fetchrow(GET_PROFILE, event_type, name)
    return None if row is None else _profile_row(row)


async def list_profiles(conn: Connection, event_type: str) -> list[ProfileRow]:
    """An event type's test profiles, by name."""
    return [_profile_row(r) for r in await conn.fetch(LIST_PROFILES, event_type)]


DELETE_PROFILE = sql("DELETE FROM test_profiles WHERE event_type = $1 AND name = $2")


async def delete_profile(conn: Connection, event_type: str, name: str) -> bool:
    """Delete a test profile; False if there was none."""
    return await conn.execute(DELETE_PROFILE, event_type, name) > 0


# -- publications and the audit log ---------------------------------------------------------------

ACTIVE = sql(
    """SELECT id, content_hash, version_id FROM publications
       WHERE event_type = $1 AND channel = $2 AND active"""
)
DEACTIVATE = sql(
    "UPDATE publications SET active = FALSE WHERE event_type = $1 AND channel = $2 AND active"
)
INSERT_PUBLICATION = sql(
    """INSERT INTO publications (event_type, channel, version_id, content, content_hash,
       published_by, published_at, active, bundle) VALUES ($1, $2, $3, $4, $5, $6, $7, TRUE, $8)
       RETURNING id"""
)


def bundle_hash(bundle: bytes) -> str:
    """The content hash of a publication: SHA-256 of its bundle's JSON."""
    return hashlib.sha256(bundle).hexdigest()


async def publish_bundle(
    conn: Connection,
    event_type: str,
    channel: model.Channel,
    version_id: int,
    content: bytes,
    bundle: bytes,
    published_by: str,
    now: int,
) -> tuple[int, str, bool]:
    """Route (event type, channel) to a frozen bundle whose routed content is ``content``;
    return (publication id, content hash, whether anything changed). Publishing the bundle
    that is already active changes nothing."""
    digest = bundle_hash(bundle)
    current = await conn.fetchrow(ACTIVE, event_type, str(channel))
    if current is not None and current[1] == digest and int(current[2]) == version_id:
        return int(current[0]), digest, False
    await conn.execute(DEACTIVATE, event_type, str(channel))
    publication_id = await conn.fetchval(
        INSERT_PUBLICATION,
        event_type,
        str(channel),
        version_id,
        content.decode(),
        digest,
        published_by,
        now,
        bundle.decode(),
    )
    await catalog.bump_routing_revision(conn)
    return int(publication_id), digest, True


GET_ACTIVE_PUBLICATION = sql(
    """SELECT id, event_type, channel, version_id, content_hash, bundle, published_by,
       published_at, active FROM publications WHERE event_type = $1 AND channel = $2 AND active"""
)


def _publication_row(row: Row) -> PublicationRow:
    return PublicationRow(
        int(row[0]),
        str(row[1]),
        model.Channel(row[2]),
        int(row[3]),
        str(row[4]),
        None if row[5] is None else str(row[5]),
        str(row[6]),
        int(row[7]),
        bool(row[8]),
    )


async def active_publication(
    conn: Connection, event_type: str, channel: model.Channel
) -> PublicationRow | None:
    """The publication routed to for (event type, channel), if any."""
    row = await conn.fetchrow(GET_ACTIVE_PUBLICATION, event_type, str(channel))
    return None if row is None else _publication_row(row)


LIST_ACTIVE_PUBLICATIONS = sql(
    """SELECT id, event_type, channel, version_id, content_hash, bundle, published_by,
       published_at, active FROM publications WHERE active ORDER BY event_type, channel"""
)


async def list_active_publications(conn: Connection) -> list[PublicationRow]:
    """Every publication routed to, by event type and channel."""
    return [_publication_row(r) for r in await conn.fetch(LIST_ACTIVE_PUBLICATIONS)]


INSERT_AUDIT = sql(
    """INSERT INTO publication_audit (event_type, channel, action, version_number,
       publication_id, content_hash, actor, created_at)
       VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING id"""
)


async def add_audit(
    conn: Connection,
    event_type: str,
    channel: model.Channel,
    action: str,
    version_number: int | None,
    publication_id: int | None,
    content_hash: str,
    actor: str,
    now: int,
) -> int:
    """Record who published (or unpublished) what, and when; the audit line's id."""
    found = await conn.fetchval(
        INSERT_AUDIT,
        event_type,
        str(channel),
        action,
        version_number,
        publication_id,
        content_hash,
        actor,
        now,
    )
    return int(found)


LATEST_AUDIT = sql(
    """SELECT id, action, content_hash FROM publication_audit
       WHERE event_type = $1 AND channel = $2
       ORDER BY id DESC LIMIT 1"""
)


async def latest_audit(
    conn: Connection, event_type: str, channel: model.Channel
) -> tuple[int, str, str] | None:
    """The newest audit line of (event type, channel): (id, action, content hash)."""
    row = await conn.fetchrow(LATEST_AUDIT, event_type, str(channel))
    return None if row is None else (int(row[0]), str(row[1]), str(row[2]))


#: The newest sequence a control instance applied per (event type, channel), on an execution
#: instance: a ``revisions`` row named ``publication/<type>/<channel>``.
START_SEQUENCE = sql(
    "INSERT INTO revisions (name, value) VALUES ($1, 0) ON CONFLICT (name) DO NOTHING"
)
ADVANCE_SEQUENCE = sql("UPDATE revisions SET value = $2 WHERE name = $1 AND value <= $2")
LOCK_SEQUENCE = sql("UPDATE revisions SET value = value WHERE name = $1")


async def claim_sequence(
    conn: Connection, event_type: str, channel: model.Channel, sequence: int | None
) -> bool:
    """In a transaction: lock (event type, channel) until it ends (concurrent changes of the
    pair wait their turn) and record ``sequence`` as the newest applied; False, recording
    nothing, if a newer one was applied already. ``None`` only locks."""
    name = f"publication/{event_type}/{channel}"
    await conn.execute(START_SEQUENCE, name)
    if sequence is None:
        await conn.execute(LOCK_SEQUENCE, name)
        return True
    return bool(await conn.execute(ADVANCE_SEQUENCE, name, sequence))


LATEST_AUDITS = sql(
    """SELECT a.id, a.event_type, a.channel, a.action, a.content_hash FROM publication_audit a
       JOIN (SELECT event_type, channel, MAX(id) AS id FROM publication_audit
             GROUP BY event_type, channel) m ON a.id = m.id"""
)


async def latest_audits(conn: Connection) -> dict[tuple[str, str], tuple[int, str, str]]:
    """The newest audit line of every (event type, channel) that has one: (id, action,
    content hash)."""
    return {
        (str(r[1]), str(r[2])): (int(r[0]), str(r[3]), str(r[4]))
        for r in await conn.fetch(LATEST_AUDITS)
    }


LIST_AUDIT = sql(
    """SELECT id, event_type, channel, action, version_number, publication_id, content_hash,
       actor, created_at FROM publication_audit WHERE ($1 = '' OR event_type = $1)
       ORDER BY id DESC LIMIT $2"""
)


async def list_audit(conn: Connection, event_type: str, limit: int) -> list[AuditRow]:
    """The audit log, newest first (one event type's, or all when ``event_type`` is '')."""
    rows = await conn.fetch(LIST_AUDIT, event_type, limit)
    return [
        AuditRow(
            int(r[0]),
            str(r[1]),
            model.Channel(r[2]),
            str(r[3]),
            None if r[4] is None else int(r[4]),
            None if r[5] is None else int(r[5]),
            str(r[6]),
            str(r[7]),
            int(r[8]),
        )
        for r in rows
    ]
