"""The execution side of publishing: what a control instance sends, and applying it here.

A control instance delivers a :class:`Shipment` per (event type, channel): the event type's
definition (label, default channel, spec with the ctx schema, validation mode, allowed
channels and language settings, targeting) and the frozen bundle as the exact JSON text its
content hash was computed over. :func:`apply` checks the hash and the bundle, then writes the
event type, a local copy of the bundle's content (so rendering caches it under its own id)
and the publication in one transaction: the instance holds the whole new publication or keeps
the old one. The same hash again changes nothing. :func:`remove` stops routing;
:func:`holdings` lists the hashes held, for the control instance to compare with its own.
"""

from __future__ import annotations

import hmac
import re

import msgspec

from tidings import clock, model
from tidings.control import bundle, ctxschema, errors, eventtypes, publishing
from tidings.store import design
from tidings.store import targeting as targeting_store
from tidings.store.database import Connection, Database

_HASH = re.compile(r"^[0-9a-f]{64}$")
_encode = msgspec.json.Encoder().encode
_bundle = msgspec.json.Decoder(bundle.Bundle)


class Definition(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """An event type as an execution instance needs it for ingest and routing."""

    name: str
    label: str
    defaultChannel: model.Channel
    spec: eventtypes.Spec
    targeting: model.Targeting | None = None


class Shipment(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """A publication sent to an execution instance: ``bundle`` is the frozen bundle's JSON
    text and ``contentHash`` its SHA-256 (hex)."""

    eventType: Definition
    contentHash: str
    bundle: str
    publishedBy: str = ""


class Applied(msgspec.Struct, frozen=True):
    """What applying (or removing) a publication did here."""

    eventType: str
    channel: model.Channel
    contentHash: str
    changed: bool


class Holding(msgspec.Struct, frozen=True):
    """A publication this instance routes to."""

    eventType: str
    channel: model.Channel
    contentHash: str
    versionNumber: int | None
    publishedBy: str
    publishedAt: str


def _checked(event_type: str, channel: model.Channel, shipment: Shipment) -> bundle.Bundle:
    """The shipment's bundle, once its hash, shape and names are checked."""
    if not _HASH.match(shipment.contentHash):
        raise errors.Invalid(
            "invalid_field", "contentHash is a SHA-256 in hex", field="$.contentHash"
        )
    digest = design.bundle_hash(shipment.bundle.encode())
    if not hmac.compare_digest(digest, shipment.contentHash):
        raise errors.Invalid(
            "hash_mismatch",
            f"the bundle hashes to {digest}, not to the contentHash sent",
            field="$.bundle",
        )
    try:
        frozen = _bundle.decode(shipment.bundle)
    except msgspec.DecodeError as exc:
        raise errors.Invalid("invalid_bundle", f"bundle: {exc}", field="$.bundle") from None
    definition = shipment.eventType
    eventtypes.check_name(definition.name)
    ctxschema.check_schema(definition.spec.ctxSchema, "$.eventType.spec.ctxSchema")
    if definition.name != event_type or frozen.eventType != event_type:
        raise errors.Invalid(
            "wrong_publication",
            f"the publication is of {frozen.eventType!r}, not of {event_type!r}",
            field="$.eventType.name",
        )
    if frozen.channel != channel:
        raise errors.Invalid(
            "wrong_publication",
            f"the publication is for {frozen.channel}, not for {channel}",
            field="$.bundle",
        )
    if definition.targeting is not None and definition.targeting.event_type != event_type:
        raise errors.Invalid(
            "wrong_publication",
            "the targeting is another event type's",
            field="$.eventType.targeting",
        )
    return frozen


async def apply(
    db: Database, event_type: str, channel: model.Channel, shipment: Shipment, *, actor: str
) -> Applied:
    """Apply a publication sent by a control instance, in one transaction;
    :class:`~tidings.control.errors.Invalid` (``hash_mismatch``, ``invalid_bundle``,
    ``wrong_publication``...) changing nothing if it does not hold together."""
    frozen = _checked(event_type, channel, shipment)
    definition = shipment.eventType
    spec = _encode(definition.spec).decode()
    now = clock.now_us()
    who = f"{shipment.publishedBy or 'control'} via {actor}"
    async with db.transaction() as conn:
        changed = False
        row = await design.get_event_type(conn, event_type)
        if row is None:
            changed = await design.insert_event_type(
                conn, event_type, definition.label, definition.defaultChannel, spec, now
            )
        elif (row.label, row.default_channel, row.spec) != (
            definition.label,
            definition.defaultChannel,
            spec,
        ):
            changed = await design.update_event_type(
                conn, event_type, definition.label, definition.defaultChannel, spec, now
            )
        changed = await _apply_targeting(conn, event_type, definition.targeting) or changed
        current = await design.active_publication(conn, event_type, channel)
        if current is None or current.content_hash != shipment.contentHash:
            content = _encode(frozen.content)
            variants = _encode(frozen.variants).decode() if frozen.variants else None
            version = await design.add_version(
                conn, event_type, channel, content.decode(), variants, who, now
            )
            publication_id, digest, _ = await design.publish_bundle(
                conn, event_type, channel, version.id, content, shipment.bundle.encode(), who, now
            )
            await design.add_audit(
                conn,
                event_type,
                channel,
                "publish",
                frozen.versionNumber,
                publication_id,
                digest,
                who,
                now,
            )
            changed = True
    return Applied(event_type, channel, shipment.contentHash, changed)


async def _apply_targeting(
    conn: Connection, event_type: str, wanted: model.Targeting | None
) -> bool:
    current = await targeting_store.get_targeting(conn, event_type)
    if wanted is None:
        return current is not None and await targeting_store.delete_targeting(conn, event_type)
    if current is not None and msgspec.structs.replace(
        current, updated_at=0
    ) == msgspec.structs.replace(wanted, updated_at=0):
        return False
    await targeting_store.put_targeting(conn, wanted)
    return True


async def remove(db: Database, event_type: str, channel: model.Channel, *, actor: str) -> Applied:
    """Stop routing (event type, channel) here; events arriving afterwards end
    ``routingFailed``. Nothing published there already: nothing changes."""
    async with db.transaction() as conn:
        stopped = await publishing.stop_routing(
            conn, event_type, channel, actor=f"control via {actor}"
        )
    if stopped is None:
        return Applied(event_type, channel, "", False)
    return Applied(event_type, channel, stopped.content_hash, True)


class _Version(msgspec.Struct):
    versionNumber: int | None = None


_version = msgspec.json.Decoder(_Version)


async def holdings(db: Database) -> list[Holding]:
    """The publications routed to here, by event type and channel."""
    async with db.connection() as conn:
        rows = await design.list_active_publications(conn)
    return [
        Holding(
            r.event_type,
            r.channel,
            r.content_hash,
            _version.decode(r.bundle).versionNumber if r.bundle else None,
            r.published_by,
            clock.format_iso(r.published_at),
        )
        for r in rows
    ]
