"""What goes over the wire: request and response bodies as msgspec structs.

Field names are the public (camelCase) names. The same structs drive decoding, encoding and
the OpenAPI document, so the documentation cannot drift from the behaviour.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated, Any

import msgspec
from msgspec import Meta

from tidings import clock, ingest, model
from tidings.store import events as events_store

_issues_decoder = msgspec.json.Decoder(list[str])

Priority = Annotated[int, Meta(ge=0, le=9, description="0-9, 9 first; default 5")]
DateText = Annotated[
    str,
    Meta(
        description="ISO 8601 date-time; the T may be a space; no zone means UTC",
        examples=["2017-12-01 08:00:00.768Z"],
    ),
]


class RecipientIn(msgspec.Struct, forbid_unknown_fields=True):
    """Where the message goes; which field is used depends on the channel."""

    email: str | None = None
    mobilePhone: str | None = None
    pushToken: str | None = None
    externalId: str | None = None


class EventIn(msgspec.Struct, forbid_unknown_fields=True):
    """One event for ``POST /api/v1/events``."""

    type: Annotated[str, Meta(description="event type name", examples=["cartAbandonment"])]
    recipient: RecipientIn
    ctx: dict[str, Any] = {}
    channel: model.Channel | None = None
    scheduled: DateText | None = None
    expiration: DateText | None = None
    priority: Priority = 5

    def submission(self) -> ingest.Submission:
        """The surface-neutral form."""
        r = self.recipient
        return ingest.Submission(
            type=self.type,
            recipient=model.Recipient(r.email, r.mobilePhone, r.pushToken, r.externalId),
            ctx=self.ctx,
            channel=self.channel,
            scheduled=self.scheduled,
            expiration=self.expiration,
            priority=self.priority,
            source="api",
        )


class BatchIn(msgspec.Struct, forbid_unknown_fields=True):
    """Up to ``max_batch_events`` events for ``POST /api/v1/events/batch``."""

    events: list[msgspec.Raw]


class BatchItemsIn(msgspec.Struct, forbid_unknown_fields=True):
    """:class:`BatchIn` with its items decoded too: one pass when every item fits."""

    events: list[EventIn]


class BatchInDoc(msgspec.Struct):
    """The documented shape of :class:`BatchIn` (items are decoded one by one)."""

    events: list[EventIn]


class AdobeEventIn(msgspec.Struct, forbid_unknown_fields=True):
    """Campaign Standard's transactional event body."""

    email: str | None = None
    mobilePhone: str | None = None
    ctx: dict[str, Any] = {}
    scheduled: DateText | None = None
    expiration: DateText | None = None


class RecipientOut(msgspec.Struct, omit_defaults=True):
    """The recipient fields an event was given."""

    email: str | None = None
    mobilePhone: str | None = None
    pushToken: str | None = None
    externalId: str | None = None


class Timeline(msgspec.Struct):
    """When things happened to an event (ISO 8601, UTC)."""

    receivedAt: str
    claimedAt: str | None = None
    sentAt: str | None = None
    finishedAt: str | None = None


class EventOut(msgspec.Struct):
    """An event and its status. ``id`` is a decimal string (64-bit ids exceed what
    JavaScript numbers hold exactly)."""

    id: str
    href: str
    type: str
    channel: str | None
    status: model.EventStatus
    recipient: RecipientOut
    ctx: dict[str, Any]
    priority: int
    scheduled: str | None
    expiration: str | None
    attempts: int
    reason: str | None
    timeline: Timeline
    templateVersionId: int | None = None


class DeliveryOut(msgspec.Struct):
    """One delivery attempt."""

    attempt: int
    channel: str
    transport: str
    address: str
    messageId: str
    outcome: model.OutcomeKind
    reply: str
    renderMs: float
    sendMs: float
    at: str
    providerId: str = ""


class ReceiptOut(msgspec.Struct):
    """A provider's delivery receipt (an SMSC's ``deliver_sm``) about the event's message."""

    providerId: str
    state: str
    error: str
    text: str
    at: str


class EventDetail(EventOut):
    """An event with its delivery log and the receipts about its messages."""

    deliveries: list[DeliveryOut] = []
    receipts: list[ReceiptOut] = []
    #: What did not fit the event type's ctx schema (lenient validation let it through).
    ctxIssues: list[str] = []


class EventPage(msgspec.Struct):
    """A page of events, newest first; pass ``next`` as ``cursor`` for the following page."""

    items: list[EventOut]
    next: str | None


class ItemError(msgspec.Struct, omit_defaults=True):
    """Why one batch item was rejected."""

    code: str
    message: str
    field: str | None = None


class BatchItemResult(msgspec.Struct, omit_defaults=True):
    """The result for the item at ``index``: ``event`` if stored, else ``error``."""

    index: int
    event: EventOut | None = None
    error: ItemError | None = None


class BatchOut(msgspec.Struct):
    """One result per submitted item, in order."""

    accepted: int
    rejected: int
    results: list[BatchItemResult]


class AdobeEventOut(msgspec.Struct, omit_defaults=True):
    """An event as Campaign Standard's transactional API shows it."""

    PKey: str
    ctx: dict[str, Any]
    href: str
    serverUrl: str
    status: model.EventStatus
    type: str  # always "transactional", as Adobe answers
    email: str | None = None
    mobilePhone: str | None = None
    scheduled: str | None = None
    expiration: str | None = None
    reason: str | None = None


def _iso(us: int | None) -> str | None:
    return None if us is None else clock.format_iso(us)


def event_out(event: model.Event) -> EventOut:
    """The API view of a stored event."""
    r = event.recipient
    return EventOut(
        id=str(event.id),
        href=f"/api/v1/events/{event.id}",
        type=event.type,
        channel=None if event.channel is None else str(event.channel),
        status=event.status,
        recipient=RecipientOut(r.email, r.mobilePhone, r.pushToken, r.externalId),
        ctx=event.ctx,
        priority=event.priority,
        scheduled=_iso(event.scheduled_at),
        expiration=_iso(event.expires_at),
        attempts=event.attempts,
        reason=event.reason,
        timeline=Timeline(
            receivedAt=clock.format_iso(event.received_at),
            claimedAt=_iso(event.claimed_at),
            sentAt=_iso(event.sent_at),
            finishedAt=_iso(event.finished_at),
        ),
        templateVersionId=event.template_version_id,
    )


def accepted_out(event: events_store.NewEvent, ctx: dict[str, Any]) -> EventOut:
    """The API view of an event just accepted (status ``pending``)."""
    return EventOut(
        id=str(event.id),
        href=f"/api/v1/events/{event.id}",
        type=event.type,
        channel=event.channel,
        status=model.EventStatus.PENDING,
        recipient=RecipientOut(
            event.email, event.mobile_phone, event.push_token, event.external_id
        ),
        ctx=ctx,
        priority=event.priority,
        scheduled=_iso(event.scheduled_at),
        expiration=_iso(event.expires_at),
        attempts=0,
        reason=None,
        timeline=Timeline(receivedAt=clock.format_iso(event.received_at)),
    )


def event_detail(
    event: model.Event,
    deliveries: list[model.Delivery],
    receipts: Sequence[model.Receipt] = (),
) -> EventDetail:
    """An event with its delivery log and receipts."""
    base = event_out(event)
    return EventDetail(
        **{f: getattr(base, f) for f in EventOut.__struct_fields__},
        deliveries=[
            DeliveryOut(
                attempt=d.attempt,
                channel=str(d.channel),
                transport=d.transport,
                address=d.address,
                messageId=d.message_id,
                outcome=d.outcome,
                reply=d.reply,
                renderMs=d.render_us / 1000,
                sendMs=d.send_us / 1000,
                at=clock.format_iso(d.created_at),
                providerId=d.provider_id,
            )
            for d in deliveries
        ],
        receipts=[
            ReceiptOut(
                providerId=r.provider_id,
                state=r.state,
                error=r.error,
                text=r.text,
                at=clock.format_iso(r.received_at),
            )
            for r in receipts
        ],
        ctxIssues=_issues_decoder.decode(event.ctx_issues) if event.ctx_issues else [],
    )
