"""Validating, previewing and publishing template versions (single node: a local call).

:func:`publish` validates the version (any ``error`` refuses it, with the issues), compiles
it as :mod:`tidings.control.bundle` says (blocks resolved and frozen, MJML compiled, CSS
inlined, text generated, every language variant), and routes the event type's channel to
the resulting immutable, content-hashed :class:`~tidings.control.bundle.Bundle`, writing a
``publication_audit`` row in the same transaction (publishing the bundle already routed to
changes nothing and logs nothing). Publishing an older version is the
rollback; :func:`unpublish` stops routing (events arriving afterwards end
``routingFailed``).

:func:`preview` renders a version with a test profile (or the schema's examples) exactly as
it would be published; :func:`check_draft` and :func:`preview_draft` do the same for content
not saved yet (the console's live preview), writing nothing.
"""

from __future__ import annotations

from typing import Any

import msgspec

from tidings import clock, model
from tidings.control import (
    blocks,
    bundle,
    ctxschema,
    errors,
    eventtypes,
    segments,
    templates,
)
from tidings.control import validation as checks
from tidings.engine import languages, render
from tidings.store import catalog, design
from tidings.store import instances as instances_store
from tidings.store.database import Connection, Database

_encode = msgspec.json.Encoder().encode


class Context(msgspec.Struct, frozen=True):
    """What validating a version needs: the type's spec and the blocks' newest versions."""

    spec: eventtypes.Spec
    blocks: dict[str, blocks.Block]

    @property
    def sources(self) -> dict[str, str]:
        """Block texts by name."""
        return {name: b.source for name, b in self.blocks.items()}


async def context(db: Database, event_type: str) -> Context:
    """The spec of ``event_type`` and the current blocks."""
    async with db.connection() as conn:
        row = await design.get_event_type(conn, event_type)
        if row is None:
            raise eventtypes.unknown(event_type)
        latest = await design.latest_blocks(conn)
    return Context(
        eventtypes.parse_spec(row.spec),
        {
            b.name: blocks.Block(
                b.name, b.number, b.source, b.author, clock.format_iso(b.created_at)
            )
            for b in latest
        },
    )


async def validate(
    db: Database,
    event_type: str,
    channel: model.Channel,
    number: int,
    *,
    default_sender: str,
) -> list[checks.Issue]:
    """The validation findings of one version."""
    version = await templates.get(db, event_type, channel, number)
    found = await context(db, event_type)
    return checks.validate(
        version.content,
        version.variants,
        schema=found.spec.ctxSchema,
        sources=found.sources,
        default_sender=default_sender,
    )


class Delivered(msgspec.Struct, frozen=True):
    """What delivering a publication (or an unpublication) to one execution instance did:
    ``outcome`` is ``ok``, ``failed`` (``error`` says why; ``httpStatus`` is the
    instance's answer, null when it gave none) or ``superseded`` (the instance applied a
    newer change of the pair already)."""

    instance: str
    eventType: str
    channel: model.Channel
    action: str
    contentHash: str
    outcome: str
    httpStatus: int | None
    error: str
    attempts: int
    at: str


class Published(msgspec.Struct, frozen=True):
    """What publishing did; ``instances`` holds the result per execution instance."""

    eventType: str
    channel: model.Channel
    version: int
    publicationId: int
    contentHash: str
    changed: bool
    blocks: dict[str, int]
    issues: list[checks.Issue]
    instances: list[Delivered] = []


def sendable(
    version: templates.Version, found: Context, *, default_sender: str
) -> list[checks.Issue]:
    """A version's validation findings; :class:`~tidings.control.errors.Invalid`
    (``invalid_version``, with the issues) if one is an error."""
    issues = checks.validate(
        version.content,
        version.variants,
        schema=found.spec.ctxSchema,
        sources=found.sources,
        default_sender=default_sender,
    )
    if checks.has_errors(issues):
        errors_found = [i for i in issues if i.severity == "error"]
        raise errors.Invalid(
            "invalid_version",
            f"version {version.number} has {len(errors_found)} error(s); "
            f"first: {errors_found[0].message}",
            issues=issues,
        )
    return issues


def build(version: templates.Version, found: Context) -> bundle.Bundle:
    """The frozen bundle of a (validated) version."""
    used: dict[str, str] = {}
    content = bundle.compile_content(version.content, found.sources, used)
    variants = {
        lang: bundle.compile_content(c, found.sources, used)
        for lang, c in sorted(version.variants.items())
    }
    return bundle.Bundle(
        eventType=version.eventType,
        channel=version.channel,
        versionNumber=version.number,
        content=content,
        variants=variants,
        languageField=found.spec.languageField,
        fallbackLanguage=found.spec.fallbackLanguage,
        blocks={name: found.blocks[name].number for name in sorted(used)},
        ctxSchema=found.spec.ctxSchema,
        validation=str(found.spec.validation),
    )


async def publish(
    db: Database,
    event_type: str,
    channel: model.Channel,
    number: int,
    *,
    actor: str,
    default_sender: str,
) -> Published:
    """Validate and publish a version; :class:`~tidings.control.errors.Invalid`
    (``invalid_version``, with the issues) if validation finds an error."""
    version = await templates.get(db, event_type, channel, number)
    found = await context(db, event_type)
    issues = sendable(version, found, default_sender=default_sender)
    frozen = build(version, found)
    now = clock.now_us()
    async with db.transaction() as conn:
        row = await design.get_version(conn, event_type, channel, number)
        if row is None:  # deleted with its event type meanwhile
            raise eventtypes.unknown(event_type)
        publication_id, digest, changed = await design.publish_bundle(
            conn, event_type, channel, row.id, _encode(frozen.content), _encode(frozen), actor, now
        )
        if changed:
            await design.add_audit(
                conn, event_type, channel, "publish", number, publication_id, digest, actor, now
            )
    return Published(
        event_type, channel, number, publication_id, digest, changed, frozen.blocks, issues
    )


async def unpublish(db: Database, event_type: str, channel: model.Channel, *, actor: str) -> None:
    """Stop routing (event type, channel); :class:`~tidings.control.errors.NotFound` if
    nothing is published there."""
    async with db.transaction() as conn:
        if await stop_routing(conn, event_type, channel, actor=actor) is None:
            raise errors.NotFound(
                "not_published", f"no {channel} template of {event_type!r} is published"
            )


async def stop_routing(
    conn: Connection, event_type: str, channel: model.Channel, *, actor: str
) -> design.PublicationRow | None:
    """In a transaction: stop routing (event type, channel) and log it; the publication
    stopped, or None if nothing was published there (nothing is written then)."""
    current = await design.active_publication(conn, event_type, channel)
    if current is None:
        return None
    await catalog.unpublish(conn, event_type, channel)
    await design.add_audit(
        conn,
        event_type,
        channel,
        "unpublish",
        None,
        current.id,
        current.content_hash,
        actor,
        clock.now_us(),
    )
    return current


async def delete_event_type(db: Database, name: str, *, actor: str) -> list[model.Channel]:
    """Delete an event type, its template versions and test profiles, unpublishing (and
    logging) each channel it routed; those channels. Refused
    (:class:`~tidings.control.errors.Conflict`) while events of the type are queued."""
    async with db.transaction() as conn:
        if await design.get_event_type(conn, name) is None:
            raise eventtypes.unknown(name)
        queued = await design.count_queued(conn, name)
        if queued:
            raise errors.Conflict(
                "event_type_in_use",
                f"{queued} event(s) of type {name!r} are queued; delete it once they are done",
            )
        stopped = []
        for publication in await design.list_active_publications(conn):
            if publication.event_type == name:
                await stop_routing(conn, name, publication.channel, actor=actor)
                stopped.append(publication.channel)
        await design.delete_event_type(conn, name)
    return stopped


class AuditEntry(msgspec.Struct, frozen=True):
    """One line of the publication audit log; ``instances`` names the execution instances
    that got it."""

    eventType: str
    channel: model.Channel
    action: str
    version: int | None
    publicationId: int | None
    contentHash: str
    actor: str
    at: str
    instances: list[str] = []


async def audit(db: Database, event_type: str = "", limit: int = 100) -> list[AuditEntry]:
    """The audit log, newest first."""
    async with db.connection() as conn:
        rows = await design.list_audit(conn, event_type, limit)
        got = (
            await instances_store.delivered_for_audit(conn, rows[-1].id, rows[0].id) if rows else {}
        )
    return [
        AuditEntry(
            r.event_type,
            r.channel,
            r.action,
            r.version_number,
            r.publication_id,
            r.content_hash,
            r.actor,
            clock.format_iso(r.created_at),
            got.get(r.id, []),
        )
        for r in rows
    ]


_bundle_decoder = msgspec.json.Decoder(bundle.Bundle)


async def publication(db: Database, event_type: str, channel: model.Channel) -> bundle.Bundle:
    """The bundle routed to for (event type, channel)."""
    async with db.connection() as conn:
        current = await design.active_publication(conn, event_type, channel)
    if current is None or current.bundle is None:
        raise errors.NotFound(
            "not_published", f"no {channel} template of {event_type!r} is published here"
        )
    return _bundle_decoder.decode(current.bundle)


# -- preview --------------------------------------------------------------------------------------


class Preview(msgspec.Struct, frozen=True, omit_defaults=True):
    """A rendered version: ``message`` is the message as the channel would get it."""

    channel: model.Channel
    language: str
    message: dict[str, Any]
    segments: int | None = None
    encoding: str | None = None
    characters: int | None = None


def _event(profile: eventtypes.Profile, event_type: str) -> model.Event:
    now = clock.now_us()
    return model.Event(
        id=1,
        type=event_type,
        channel=None,
        recipient=profile.recipient,
        ctx=profile.ctx,
        priority=5,
        status=model.EventStatus.PENDING,
        source="preview",
        received_at=now,
        scheduled_at=None,
        expires_at=None,
        due_at=now,
        attempts=0,
    )


async def sample_profile(
    db: Database, event_type: str, profile: str | None, found: Context
) -> eventtypes.Profile:
    """The named test profile, or a sample made of the schema's examples."""
    if profile:
        return await eventtypes.get_profile(db, event_type, profile)
    return eventtypes.Profile(
        "example",
        model.Recipient(
            email="someone@example.com", mobilePhone="+33612345678", pushToken="fcm:token"
        ),
        ctxschema.example_ctx(found.spec.ctxSchema),
    )


async def preview(
    db: Database,
    event_type: str,
    channel: model.Channel,
    number: int,
    *,
    profile: str | None,
    default_sender: str,
) -> Preview:
    """Render version ``number`` for a test profile (the schema's examples without one)."""
    version = await templates.get(db, event_type, channel, number)
    return await _preview(db, version, profile=profile, default_sender=default_sender)


def _unsaved(event_type: str, channel: model.Channel, draft: templates.Draft) -> templates.Version:
    """A draft dressed as a version (number 0), for checks and previews that save nothing."""
    return templates.Version(event_type, channel, 0, "", "", draft.content, draft.variants)


async def check_draft(
    db: Database,
    event_type: str,
    channel: model.Channel,
    draft: templates.Draft,
    *,
    default_sender: str,
) -> list[checks.Issue]:
    """The validation findings of content not saved yet."""
    found = await context(db, event_type)
    return checks.validate(
        draft.content,
        draft.variants,
        schema=found.spec.ctxSchema,
        sources=found.sources,
        default_sender=default_sender,
    )


async def preview_draft(
    db: Database,
    event_type: str,
    channel: model.Channel,
    draft: templates.Draft,
    *,
    profile: str | None,
    default_sender: str,
) -> Preview:
    """Render content not saved yet, as :func:`preview` renders a version;
    :class:`~tidings.control.errors.Invalid` when it does not compile or render."""
    version = _unsaved(event_type, channel, draft)
    return await _preview(db, version, profile=profile, default_sender=default_sender)


async def _preview(
    db: Database, version: templates.Version, *, profile: str | None, default_sender: str
) -> Preview:
    event_type, channel = version.eventType, version.channel
    found = await context(db, event_type)
    sample = await sample_profile(db, event_type, profile, found)
    frozen = build(version, found)
    event = _event(sample, event_type)
    chosen = languages.pick(frozen.variants, event, frozen.languageField)
    language = frozen.fallbackLanguage
    if chosen is not None:
        wanted = languages.language_of(event, frozen.languageField)
        language = wanted if wanted in frozen.variants else wanted.partition("-")[0]
    content = chosen or frozen.content
    renderer = render.Renderer(default_sender=default_sender or "nobody@localhost")
    try:
        message = renderer.render(
            renderer.compile(model.Publication(0, event_type, channel, 0, content)), event
        )
    except render.RenderError as exc:
        raise errors.Invalid("render_error", str(exc)) from None
    shown: dict[str, Any] = msgspec.to_builtins(message)
    if isinstance(message, model.SmsMessage):
        count = segments.count(message.text)
        return Preview(channel, language, shown, count.segments, count.encoding, count.units)
    if isinstance(message, model.WebhookMessage):
        shown["body"] = msgspec.json.decode(message.body)
    return Preview(channel, language, shown)
