"""The execution side of publishing: what a control instance sends, and applying it here.

A control instance delivers a :class:`Shipment` per (event type, channel): the event type's
definition (label, default channel, spec with the ctx schema, validation mode, allowed
channels and language settings, targeting) and the frozen bundle as the exact JSON text its
content hash was computed over. :func:`apply` checks the hash and the bundle, then writes the
event type, a local copy of the bundle's content (so rendering caches it under its own id)
and the publication in one transaction: the instance holds the whole new publication or keeps
the old one. The same hash again changes nothing. The definition and targeting go through the
checks the control instance runs, so an instance never stores what control would refuse.
:func:`remove` stops routing; :func:`holdings` lists the hashes held (bundle and definition),
for the control instance to compare with its own.

Every change carries ``sequence``, the control instance's audit line id: deliveries may
arrive out of order (a retry landing after a newer publication, a sync racing a publish), so
the newest sequence applied per (event type, channel) is kept and an older one is refused
(``stale_publication``, 409) changing nothing. Changes of one pair are serialised.
"""

from __future__ import annotations

import hashlib
import hmac
import re

import msgspec

from tidings import clock, model
from tidings import targeting as targeting_ops
from tidings.control import bundle, errors, eventtypes, publishing
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
    sequence: int | None = None


class Applied(msgspec.Struct, frozen=True):
    """What applying (or removing) a publication did here."""

    eventType: str
    channel: model.Channel
    contentHash: str
    changed: bool


class Holding(msgspec.Struct, frozen=True):
    """A publication this instance routes to; ``definitionHash`` is
    :func:`definition_hash` of the event type's definition held here."""

    eventType: str
    channel: model.Channel
    contentHash: str
    versionNumber: int | None
    publishedBy: str
    publishedAt: str
    definitionHash: str = ""


def definition_hash(definition: Definition) -> str:
    """The SHA-256 (hex) of a definition as shipped (targeting's change time left out): what
    the control instance compares to see that an instance holds its latest definition."""
    if definition.targeting is not None:
        definition = msgspec.structs.replace(
            definition, targeting=msgspec.structs.replace(definition.targeting, updated_at=0)
        )
    return hashlib.sha256(_encode(definition)).hexdigest()


def stale(event_type: str, channel: model.Channel, sequence: int) -> errors.Conflict:
    """The error for a change older than one applied already."""
    return errors.Conflict(
        "stale_publication",
        f"a change of {event_type} {channel} newer than sequence {sequence} is applied here",
        field="$.sequence",
    )


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
    _check_definition(definition)
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
    if channel not in (definition.defaultChannel, *definition.spec.channels):
        raise errors.Invalid(
            "channel_not_allowed",
            f"event type {event_type!r} allows "
            f"{', '.join(dict.fromkeys((definition.defaultChannel, *definition.spec.channels)))}"
            f", not {channel}",
            field="$.eventType.spec.channels",
        )
    if definition.targeting is not None and definition.targeting.event_type != event_type:
        raise errors.Invalid(
            "wrong_publication",
            "the targeting is another event type's",
            field="$.eventType.targeting",
        )
    return frozen


def _check_definition(definition: Definition) -> None:
    """The control instance's checks of an event type's definition, with the fields named
    where they are in a shipment."""
    spec = definition.spec
    flat = eventtypes.Definition(
        definition.name,
        definition.label,
        spec.description,
        definition.defaultChannel,
        spec.channels,
        spec.validation,
        spec.ctxSchema,
        spec.languageField,
        spec.fallbackLanguage,
    )
    try:
        eventtypes.check_definition(flat)
    except errors.Invalid as exc:
        where = (exc.field or "$").removeprefix("$.")
        top = where.split(".", 1)[0].split("[", 1)[0]
        prefix = (
            "$.eventType." if top in ("name", "label", "defaultChannel") else "$.eventType.spec."
        )
        exc.field = prefix + where
        raise


def _targeting(event_type: str, wanted: model.Targeting) -> model.Targeting:
    """``wanted`` once the control instance's targeting checks pass (fields named as in a
    shipment: ``$.eventType.targeting.enrichment_url``)."""
    data = targeting_ops.TargetingIn(
        reconcileBy=wanted.reconcile_by,
        onMissing=wanted.on_missing,
        enrichmentUrl=wanted.enrichment_url or None,
        enrichmentMethod=wanted.enrichment_method,
        enrichmentTimeout=wanted.enrichment_timeout,
        enrichmentTtl=wanted.enrichment_ttl,
        enrichmentHeaders=wanted.enrichment_headers,
    )
    try:
        return targeting_ops.prepare(event_type, data, wanted.updated_at)
    except targeting_ops.InvalidTargeting as exc:
        name, dot, rest = exc.field.removeprefix("$.").partition(".")
        snake = re.sub(r"(?<!^)([A-Z])", r"_\1", name).lower()
        raise errors.Invalid(
            "invalid_field", exc.message, field=f"$.eventType.targeting.{snake}{dot}{rest}"
        ) from None


async def apply(
    db: Database, event_type: str, channel: model.Channel, shipment: Shipment, *, actor: str
) -> Applied:
    """Apply a publication sent by a control instance, in one transaction;
    :class:`~tidings.control.errors.Invalid` (``hash_mismatch``, ``invalid_bundle``,
    ``wrong_publication``...) changing nothing if it does not hold together, and
    :class:`~tidings.control.errors.Conflict` (``stale_publication``) if a newer change of
    the pair was applied already."""
    frozen = _checked(event_type, channel, shipment)
    definition = shipment.eventType
    targeting = (
        None if definition.targeting is None else _targeting(event_type, definition.targeting)
    )
    spec = _encode(definition.spec).decode()
    now = clock.now_us()
    who = f"{shipment.publishedBy or 'control'} via {actor}"
    async with db.transaction() as conn:
        if not await design.claim_sequence(conn, event_type, channel, shipment.sequence):
            raise stale(event_type, channel, shipment.sequence or 0)
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
        changed = await _apply_targeting(conn, event_type, targeting) or changed
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


async def remove(
    db: Database,
    event_type: str,
    channel: model.Channel,
    *,
    actor: str,
    sequence: int | None = None,
) -> Applied:
    """Stop routing (event type, channel) here; events arriving afterwards end
    ``routingFailed``. Nothing published there already: nothing changes. A ``sequence``
    older than the newest applied: ``stale_publication``, nothing changes."""
    async with db.transaction() as conn:
        if not await design.claim_sequence(conn, event_type, channel, sequence):
            raise stale(event_type, channel, sequence or 0)
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
        definitions = await definitions_of(conn, {r.event_type for r in rows})
    return [
        Holding(
            r.event_type,
            r.channel,
            r.content_hash,
            _version.decode(r.bundle).versionNumber if r.bundle else None,
            r.published_by,
            clock.format_iso(r.published_at),
            definition_hash(definitions[r.event_type]) if r.event_type in definitions else "",
        )
        for r in rows
    ]


async def definitions_of(conn: Connection, names: set[str]) -> dict[str, Definition]:
    """The definitions of the event types named (as a shipment carries them), by name."""
    targeting = {t.event_type: t for t in await targeting_store.list_targeting(conn)}
    return {
        row.name: Definition(
            row.name,
            row.label,
            row.default_channel,
            eventtypes.parse_spec(row.spec),
            targeting.get(row.name),
        )
        for row in await design.list_event_types(conn)
        if row.name in names
    }
