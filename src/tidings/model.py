"""Domain types shared by every part of Tidings.

Nothing here imports anything of ours: the store, the engine, the channels and the HTTP
surfaces all speak in these records. Records are frozen; statuses are enums with Adobe's
exact names; the allowed status transitions are data (:data:`TRANSITIONS`), enforced by
:func:`check_transition` and turned into SQL guards by :func:`sources_of`.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from typing import Any

import msgspec


class EventStatus(enum.StrEnum):
    """The life of an event, named exactly as Adobe Campaign's Message Center names it."""

    PENDING = "pending"
    PROCESSING = "processing"
    PAUSED = "paused"
    PROCESSED = "processed"
    IGNORED = "ignored"
    DELIVERY_FAILED = "deliveryFailed"
    ROUTING_FAILED = "routingFailed"
    TOO_OLD = "tooOld"
    #: Reconciliation found no profile (and the event type says not to send without one),
    #: or the recipient's data was erased before the event was sent.
    TARGETING_FAILED = "targetingFailed"


S = EventStatus

#: Which status may follow which. ``processing -> processing`` is a reclaim after a lease
#: ran out; ``processing -> pending`` is a retry waiting for its next attempt.
TRANSITIONS: Mapping[EventStatus, frozenset[EventStatus]] = {
    S.PENDING: frozenset({S.PROCESSING}),
    S.PROCESSING: frozenset(
        {
            S.PROCESSING,
            S.PENDING,
            S.PAUSED,
            S.PROCESSED,
            S.IGNORED,
            S.DELIVERY_FAILED,
            S.ROUTING_FAILED,
            S.TOO_OLD,
            S.TARGETING_FAILED,
        }
    ),
    S.PAUSED: frozenset({S.PENDING}),
    S.PROCESSED: frozenset(),
    S.IGNORED: frozenset(),
    S.DELIVERY_FAILED: frozenset(),
    S.ROUTING_FAILED: frozenset(),
    S.TOO_OLD: frozenset(),
    S.TARGETING_FAILED: frozenset(),
}

#: Statuses an event never leaves.
FINAL_STATUSES: frozenset[EventStatus] = frozenset(s for s, nxt in TRANSITIONS.items() if not nxt)


class InvalidTransition(ValueError):
    """An attempt to move an event between two statuses the lifecycle does not connect."""


def check_transition(old: EventStatus, new: EventStatus) -> None:
    """Raise :class:`InvalidTransition` unless ``old -> new`` is allowed."""
    if new not in TRANSITIONS[old]:
        raise InvalidTransition(f"an event cannot go from {old} to {new}")


def sources_of(new: EventStatus) -> tuple[EventStatus, ...]:
    """Every status from which ``new`` may be reached (used as a SQL guard)."""
    return tuple(sorted(old for old, nxt in TRANSITIONS.items() if new in nxt))


class Channel(enum.StrEnum):
    """How a message reaches its recipient."""

    EMAIL = "email"
    SMS = "sms"
    PUSH = "push"
    WEBHOOK = "webhook"


class OutcomeKind(enum.StrEnum):
    """What a transport says happened to one message."""

    DELIVERED = "delivered"
    RETRY = "retry"
    FAILED = "failed"
    IGNORED = "ignored"
    #: Not a transport's answer: a bounce that came back later (delivery log only).
    BOUNCED = "bounced"


class Recipient(msgspec.Struct, frozen=True, omit_defaults=True):
    """Where an event's message goes; which field is used depends on the channel."""

    email: str | None = None
    mobilePhone: str | None = None
    pushToken: str | None = None
    externalId: str | None = None


class Event(msgspec.Struct, frozen=True):
    """An event and its queue state. Times are microseconds since the epoch (UTC)."""

    id: int
    type: str
    channel: Channel | None
    recipient: Recipient
    ctx: dict[str, Any]
    priority: int
    status: EventStatus
    source: str
    received_at: int
    scheduled_at: int | None
    expires_at: int | None
    due_at: int
    attempts: int
    claimed_at: int | None = None
    sent_at: int | None = None
    finished_at: int | None = None
    publication_id: int | None = None
    template_version_id: int | None = None
    reason: str | None = None
    ctx_issues: str | None = None
    #: Set on a proof's events: they render the proof's bundle and stay out of the reports.
    proof_id: int | None = None


class Delivery(msgspec.Struct, frozen=True):
    """One attempt to deliver an event's message, as the delivery log keeps it."""

    event_id: int
    attempt: int
    channel: Channel
    transport: str
    address: str
    message_id: str
    outcome: OutcomeKind
    reply: str
    render_us: int
    send_us: int
    created_at: int
    provider_id: str = ""


class EmailAddress(msgspec.Struct, frozen=True):
    """A mailbox with an optional display name."""

    address: str
    name: str = ""


class EmailMessage(msgspec.Struct, frozen=True):
    """A rendered email, ready for a transport. ``message_id`` is stable per event, so a
    retry after a crash carries the same Message-ID and receivers can de-duplicate."""

    event_id: int
    message_id: str
    sender: EmailAddress
    to: EmailAddress
    subject: str
    html: str
    text: str
    reply_to: EmailAddress | None = None
    headers: tuple[tuple[str, str], ...] = ()
    return_path: str = ""  # the envelope sender (MAIL FROM); empty: the sender's address


class PushPlatform(enum.StrEnum):
    """Which gateway a push token belongs to (Adobe's wishedChannel 41 and 42)."""

    APNS = "apns"
    FCM = "fcm"


class SmsMessage(msgspec.Struct, frozen=True):
    """A rendered SMS, ready for a transport. ``to`` is E.164 (``+33612345678``);
    ``reference`` is stable per event, so a retry can be recognised."""

    event_id: int
    reference: str
    to: str
    text: str
    sender: str = ""
    expires_at: int | None = None


class PushMessage(msgspec.Struct, frozen=True):
    """A rendered push notification for one device token. ``expires_at`` (µs since the
    epoch) is the event's expiration, passed to the gateway (``apns-expiration``, FCM ttl)."""

    event_id: int
    message_id: str
    platform: PushPlatform
    token: str
    title: str
    body: str
    data: dict[str, str] = {}
    sound: str = ""
    badge: int | None = None
    collapse_id: str = ""
    priority: int = 10
    expires_at: int | None = None


class WebhookMessage(msgspec.Struct, frozen=True):
    """A rendered webhook call: ``body`` (JSON text) is POSTed to ``url``."""

    event_id: int
    message_id: str
    url: str
    body: str
    headers: tuple[tuple[str, str], ...] = ()


class Outcome(msgspec.Struct, frozen=True):
    """The answer of ``Transport.send``.

    ``reply`` is the remote side's words (an SMTP reply line, an HTTP status and body);
    ``retry_after`` is a delay in seconds the remote side asked for, if any; ``quarantine``
    says the address is permanently bad and should not be tried again; ``unreachable`` says
    the connector could not talk to its server at all (a failover group then tries the next
    one); ``via`` names the connector that answered, when a group chose among several.
    """

    kind: OutcomeKind
    reply: str = ""
    provider_id: str = ""
    retry_after: float | None = None
    quarantine: bool = False
    unreachable: bool = False
    via: str = ""


class EmailContent(msgspec.Struct, frozen=True, tag="email"):
    """The published content of an email template (one version)."""

    subject: str
    html: str
    text: str = ""
    sender_name: str = ""
    sender_address: str = ""
    reply_to: str = ""
    headers: dict[str, str] = {}


class SmsContent(msgspec.Struct, frozen=True, tag="sms"):
    """The published content of an SMS template (one version)."""

    text: str
    sender: str = ""


class PushContent(msgspec.Struct, frozen=True, tag="push"):
    """The published content of a push template (one version); ``data`` values are
    templates too."""

    title: str
    body: str
    data: dict[str, str] = {}
    sound: str = ""
    badge: str = ""
    collapse_id: str = ""


class WebhookContent(msgspec.Struct, frozen=True, tag="webhook"):
    """The published content of a webhook template (one version): ``body`` renders to JSON."""

    url: str
    body: str
    headers: dict[str, str] = {}


Content = EmailContent | SmsContent | PushContent | WebhookContent
"""A template version's content, tagged with its channel."""

CONTENT_CHANNEL: dict[type[Content], Channel] = {
    EmailContent: Channel.EMAIL,
    SmsContent: Channel.SMS,
    PushContent: Channel.PUSH,
    WebhookContent: Channel.WEBHOOK,
}


class Publication(msgspec.Struct, frozen=True):
    """The template version an event type's channel is routed to."""

    id: int
    event_type: str
    channel: Channel
    version_id: int
    content: Content
    variants: dict[str, Content] = {}  # by language; ``content`` is the fallback language's
    language_field: str = ""  # where an event names its language: ``ctx.language``...
    #: Set when this is a proof's bundle rather than a publication (``id`` is then 0).
    proof_id: int | None = None


class EventType(msgspec.Struct, frozen=True):
    """What the execution side needs to know about an event type."""

    name: str
    label: str
    default_channel: Channel
    paused: bool
    #: The channels an event may ask for; empty: any (a type made from a template folder).
    channels: tuple[Channel, ...] = ()

    def allows(self, channel: Channel) -> bool:
        """Whether an event of this type may ask for ``channel``."""
        return not self.channels or channel in self.channels


class QuarantineEntry(msgspec.Struct, frozen=True):
    """An address Tidings will not send to (events to it end ``ignored``)."""

    channel: Channel
    address: str
    reason: str
    source: str
    created_at: int
    expires_at: int | None = None
    event_id: int | None = None


class BounceKind(enum.StrEnum):
    """How a bounce counts: ``hard`` quarantines the address, ``soft`` counts toward
    ``soft_bounce_limit``, ``delayed`` (a warning, the mail is still queued) only is kept."""

    HARD = "hard"
    SOFT = "soft"
    DELAYED = "delayed"


class Bounce(msgspec.Struct, frozen=True):
    """A bounce about one recipient of one event's message, as the bounces table keeps it."""

    event_id: int
    channel: Channel
    address: str
    message_id: str
    kind: BounceKind
    status: str
    diagnostic: str
    received_at: int
    id: int = 0


class OutboxMessage(msgspec.Struct, frozen=True):
    """A message kept in the local outbox instead of being sent."""

    event_id: int
    message_id: str
    channel: Channel
    recipient: str
    sender: str
    subject: str
    html: str
    text: str
    raw: str
    created_at: int
    id: int = 0


class ApiKey(msgspec.Struct, frozen=True):
    """A client credential; only a hash of its secret is stored."""

    id: int
    name: str
    prefix: str
    scopes: frozenset[str]
    created_at: int
    revoked_at: int | None = None


class ReconcileBy(enum.StrEnum):
    """Which recipient field an event type's events are matched to a profile by."""

    NONE = "none"
    EXTERNAL_ID = "externalId"
    EMAIL = "email"
    MOBILE_PHONE = "mobilePhone"


class OnMissing(enum.StrEnum):
    """What happens to an event whose reconciliation finds no profile."""

    SEND = "send"
    TARGETING_FAILED = "targetingFailed"


class Targeting(msgspec.Struct, frozen=True):
    """An event type's reconciliation and enrichment settings (none by default).

    ``enrichment_url`` empty: no enrichment source. Durations are in seconds.
    """

    event_type: str
    reconcile_by: ReconcileBy = ReconcileBy.NONE
    on_missing: OnMissing = OnMissing.SEND
    enrichment_url: str = ""
    enrichment_method: str = "POST"
    enrichment_timeout: float = 2.0
    enrichment_ttl: float = 60.0
    enrichment_headers: dict[str, str] = {}
    updated_at: int = 0


class Profile(msgspec.Struct, frozen=True):
    """What Tidings holds about a recipient, keyed by the caller's ``external_id``."""

    external_id: str
    email: str | None = None
    mobile_phone: str | None = None
    push_tokens: tuple[str, ...] = ()
    language: str | None = None
    attributes: dict[str, Any] = {}
    created_at: int = 0
    updated_at: int = 0
    id: int = 0


class Receipt(msgspec.Struct, frozen=True):
    """A provider's delivery receipt about one message, as the receipts table keeps it;
    ``event_id`` is None when no delivery carries ``provider_id``."""

    channel: Channel
    provider_id: str
    state: str
    error: str
    text: str
    received_at: int
    event_id: int | None = None
    attempt: int | None = None
    transport: str = ""


class CallbackState(enum.StrEnum):
    """Where a status callback stands: waiting to be (re)sent, or done one way or the other."""

    PENDING = "pending"
    DELIVERED = "delivered"
    FAILED = "failed"


class CallbackSubscription(msgspec.Struct, frozen=True):
    """A client's subscription to status callbacks. ``kinds`` says which callbacks it gets
    (``status``: final statuses, ``receipt``: delivery receipts); empty filters (event types,
    final statuses, receipt states) match everything."""

    id: int
    url: str
    secret: str
    event_types: tuple[str, ...]
    statuses: tuple[str, ...]
    active: bool
    created_at: int
    kinds: tuple[str, ...] = ("receipt", "status")
    receipt_states: tuple[str, ...] = ()


class CallbackAttempt(msgspec.Struct, frozen=True):
    """One try at sending a callback, as the log keeps it."""

    callback_id: int
    attempt: int
    outcome: OutcomeKind
    reply: str
    duration_us: int
    created_at: int


class Callback(msgspec.Struct, frozen=True):
    """A status callback (or receipt) in the outbox; ``payload`` is the JSON body."""

    id: int
    subscription_id: int
    event_id: int
    kind: str
    payload: str
    attempts: int
    next_at: int
    last_reply: str
    state: CallbackState
    created_at: int
    delivered_at: int | None = None


class OperatorRole(enum.StrEnum):
    """What a console operator may do: ``operator`` sees everything (read-only) and manages
    quarantine; ``designer`` also edits templates; ``admin`` also manages keys and operators."""

    OPERATOR = "operator"
    DESIGNER = "designer"
    ADMIN = "admin"


class Operator(msgspec.Struct, frozen=True):
    """A person who signs in to the console; only an argon2 hash of the password is stored."""

    id: int
    name: str
    role: OperatorRole
    created_at: int
    disabled: bool = False


class ConsoleSession(msgspec.Struct, frozen=True):
    """A signed-in console session: whose it is, its CSRF token, and when it ends."""

    operator: Operator
    csrf_token: str
    expires_at: int
