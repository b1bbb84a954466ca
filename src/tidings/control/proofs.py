"""Proofs: a template version sent to its event type's seed addresses through the real
channel, marked as a proof.

:func:`send` validates the version (as publishing does: an ``error`` refuses it with the
issues), compiles it as :func:`~tidings.control.publishing.build` does, marks it (email and
SMS text, push title prefixed ``[Proof] ``; email header ``X-Tidings-Proof: 1``) and writes a
proof holding that frozen bundle together with one event per seed address, in one
transaction. The worker sends those events as any other, rendering the proof's bundle instead
of the publication, so delivery, retries, quarantine and the delivery log are the real ones;
:func:`result` reads the events' statuses and delivery answers back. Proof events are left
out of every report and the dashboard, and fire no status callbacks.
"""

from __future__ import annotations

from collections.abc import Callable

import msgspec

from tidings import clock, model
from tidings.control import errors, eventtypes, publishing, templates
from tidings.store import design
from tidings.store import events as events_store
from tidings.store import proofs as proofs_store
from tidings.store.database import Database

PREFIX = "[Proof] "
HEADER = "X-Tidings-Proof"
#: Proofs go before ordinary events (9 is the highest priority).
PRIORITY = 9
_ADDRESS_FIELD = {
    model.Channel.EMAIL: "email",
    model.Channel.SMS: "mobilePhone",
    model.Channel.PUSH: "pushToken",
}
_encode = msgspec.json.Encoder().encode


def mark(content: model.Content) -> model.Content:
    """A version's content as a proof of it is sent."""
    if isinstance(content, model.EmailContent):
        return msgspec.structs.replace(
            content, subject=PREFIX + content.subject, headers={**content.headers, HEADER: "1"}
        )
    if isinstance(content, model.SmsContent):
        return msgspec.structs.replace(content, text=PREFIX + content.text)
    if isinstance(content, model.PushContent):
        return msgspec.structs.replace(content, title=PREFIX + content.title)
    return content


class Delivery(msgspec.Struct, frozen=True):
    """One delivery attempt of a proof's message: the channel's answer."""

    attempt: int
    outcome: model.OutcomeKind
    reply: str
    transport: str
    at: str


class Recipient(msgspec.Struct, frozen=True):
    """A seed address and where its proof message stands."""

    address: str
    eventId: str
    status: model.EventStatus
    reason: str | None
    deliveries: list[Delivery]


class Proof(msgspec.Struct, frozen=True):
    """A proof and its result per seed address; ``final`` once no message is on its way."""

    id: int
    eventType: str
    channel: model.Channel
    version: int
    profile: str
    requestedBy: str
    createdAt: str
    final: bool
    recipients: list[Recipient]


async def send(
    db: Database,
    event_type: str,
    channel: model.Channel,
    number: int,
    *,
    profile: str | None,
    actor: str,
    default_sender: str,
    next_id: Callable[[], int],
) -> Proof:
    """Queue a proof of version ``number`` to the seed addresses of ``channel``.

    :class:`~tidings.control.errors.NotFound` for an unknown type, version or profile;
    :class:`~tidings.control.errors.Invalid` ``no_seed_addresses`` when the type has none
    for the channel, ``invalid_version`` (with the issues) when validation finds an error.
    """
    version = await templates.get(db, event_type, channel, number)
    found = await publishing.context(db, event_type)
    seeds = found.spec.seeds.of(channel)
    if not seeds:
        raise errors.Invalid(
            "no_seed_addresses",
            f"event type {event_type!r} has no {channel} seed addresses to send a proof to",
            field="$.seeds." + str(channel),
        )
    publishing.sendable(version, found, default_sender=default_sender)
    sample = await publishing.sample_profile(db, event_type, profile, found)
    frozen = publishing.build(version, found)
    marked = msgspec.structs.replace(
        frozen,
        content=mark(frozen.content),
        variants={lang: mark(c) for lang, c in frozen.variants.items()},
    )
    now = clock.now_us()
    ctx = _encode(sample.ctx)
    events = [
        events_store.NewEvent(
            id=next_id(),
            type=event_type,
            channel=str(channel),
            email=address if channel is model.Channel.EMAIL else sample.recipient.email,
            mobile_phone=address if channel is model.Channel.SMS else sample.recipient.mobilePhone,
            push_token=address if channel is model.Channel.PUSH else sample.recipient.pushToken,
            external_id=sample.recipient.externalId,
            ctx=ctx,
            priority=PRIORITY,
            source="proof",
            received_at=now,
            scheduled_at=None,
            expires_at=None,
            due_at=now,
        )
        for address in seeds
    ]
    async with db.transaction() as conn:
        row = await design.get_version(conn, event_type, channel, number)
        if row is None:  # deleted with its event type meanwhile
            raise eventtypes.unknown(event_type)
        proof_id = await proofs_store.add_proof(
            conn,
            proofs_store.ProofRow(
                0,
                event_type,
                channel,
                row.id,
                number,
                profile or "",
                _encode(marked).decode(),
                actor,
                now,
            ),
            events,
        )
    return await result(db, event_type, proof_id)


async def result(db: Database, event_type: str, proof_id: int) -> Proof:
    """A proof and where each of its messages stands;
    :class:`~tidings.control.errors.NotFound` (``unknown_proof``) if the event type has no
    such proof."""
    async with db.connection() as conn:
        found = await proofs_store.get_proof(conn, proof_id)
        if found is None or found.event_type != event_type:
            raise errors.NotFound("unknown_proof", f"no proof {proof_id} of {event_type!r}")
        events = await proofs_store.proof_events(conn, proof_id)
        deliveries = {e.id: await events_store.get_deliveries(conn, e.id) for e in events}
    field = _ADDRESS_FIELD.get(found.channel, "email")
    recipients = [
        Recipient(
            address=getattr(e.recipient, field) or "",
            eventId=str(e.id),
            status=e.status,
            reason=e.reason,
            deliveries=[
                Delivery(d.attempt, d.outcome, d.reply, d.transport, clock.format_iso(d.created_at))
                for d in deliveries[e.id]
            ],
        )
        for e in events
    ]
    return Proof(
        id=found.id,
        eventType=found.event_type,
        channel=found.channel,
        version=found.version_number,
        profile=found.profile,
        requestedBy=found.requested_by,
        createdAt=clock.format_iso(found.created_at),
        final=all(r.status in model.FINAL_STATUSES for r in recipients),
        recipients=recipients,
    )
