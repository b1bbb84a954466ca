"""Taking events in: validate, give an id, commit (in groups), answer.

Every surface (the native REST API, the Campaign Standard route, the Campaign Classic SOAP
router, the CLI) turns its payload into a :class:`Submission` and calls :class:`Ingest`. An
event is acknowledged only once the transaction that wrote it committed; invalid input raises
:class:`InvalidEvent` and writes nothing.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import msgspec

from tidings import clock, ids, model
from tidings.control import ctxschema
from tidings.engine import route
from tidings.store import batching, idempotency
from tidings.store import events as events_store
from tidings.store.database import Database

_encode = msgspec.json.Encoder().encode

TYPE_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_.-]{0,63}$")
# A practical address check: dot-atom local part (ASCII; we do not speak SMTPUTF8) and a
# domain of at least two labels (IDN allowed: the MIME builder encodes it with IDNA).
_LOCAL = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*"
_LABEL = r"(?:[^\W_]|[^\W_][\w-]{0,61}[^\W_])"
EMAIL = re.compile(rf"^{_LOCAL}@{_LABEL}(?:\.{_LABEL})+$")
PHONE = re.compile(r"^\+?[0-9][0-9 ().-]{4,22}[0-9]$")
MAX_EXTERNAL_ID = 255


class InvalidEvent(ValueError):
    """An event that cannot be accepted; ``field`` is a JSON path like ``$.recipient.email``."""

    def __init__(self, field: str, message: str, code: str = "invalid_field"):
        super().__init__(message)
        self.field = field
        self.message = message
        self.code = code


class _KeyTaken(Exception):
    pass


class Submission(msgspec.Struct, frozen=True):
    """An event as a client submitted it, whatever the surface."""

    type: str
    recipient: model.Recipient
    ctx: dict[str, Any]
    channel: model.Channel | None = None
    scheduled: str | None = None
    expiration: str | None = None
    priority: int = 5
    source: str = "api"


def valid_email(address: str) -> bool:
    """Whether ``address`` is an address Tidings can send to."""
    return (
        len(address) <= 254 and len(address.partition("@")[0]) <= 64 and bool(EMAIL.match(address))
    )


def _date(value: str | None, field: str) -> int | None:
    if value is None:
        return None
    try:
        return clock.parse_iso(value)
    except ValueError:
        raise InvalidEvent(
            field,
            f"{value!r} is not an ISO 8601 date (e.g. 2017-12-01 08:00:00.768Z)",
            "invalid_date",
        ) from None


def prepare(
    submission: Submission,
    *,
    event_id: int,
    now: int,
    routing: route.Routing | None,
    checkers: Mapping[str, ctxschema.Checker] | None = None,
) -> events_store.NewEvent:
    """Check a submission and turn it into the row to write; raise :class:`InvalidEvent`.

    ``routing`` (if known) tells the type's allowed channels (an event asking for another is
    refused: ``channel_not_allowed``) and its default channel, so that a missing address is
    caught here rather than when the event is routed. ``checkers`` holds the compiled ctx
    schema of each event type that has one: a strict type's mismatch is refused
    (``invalid_ctx``, naming the field), a lenient type's is recorded on the event.
    """
    if not TYPE_NAME.match(submission.type):
        raise InvalidEvent(
            "$.type",
            "type must start with a letter and hold only letters, digits, '_', '.' "
            "or '-' (at most 64)",
        )
    if not 0 <= submission.priority <= 9:
        raise InvalidEvent("$.priority", "priority must be between 0 and 9")
    r = submission.recipient
    email = r.email.strip() if r.email is not None else None
    if email is not None and not valid_email(email):
        raise InvalidEvent(
            "$.recipient.email", f"{email!r} is not a valid email address", "invalid_email"
        )
    phone = r.mobilePhone.strip() if r.mobilePhone is not None else None
    if phone is not None and not PHONE.match(phone):
        raise InvalidEvent(
            "$.recipient.mobilePhone", f"{phone!r} is not a valid phone number", "invalid_phone"
        )
    for name, value in (("pushToken", r.pushToken), ("externalId", r.externalId)):
        # PostgreSQL text cannot hold NUL, and a value it refuses would fail every event
        # sharing the group commit: refuse it here, on both databases alike.
        if value is not None and "\x00" in value:
            raise InvalidEvent(f"$.recipient.{name}", f"{name} must not contain NUL characters")
    if r.externalId is not None and len(r.externalId) > MAX_EXTERNAL_ID:
        # It is indexed, and an index entry has a size limit (PostgreSQL: ~2.7 kB).
        raise InvalidEvent(
            "$.recipient.externalId", f"externalId is longer than {MAX_EXTERNAL_ID} characters"
        )
    if not (email or phone or r.pushToken or r.externalId):
        raise InvalidEvent(
            "$.recipient",
            "the event needs a recipient: email, mobilePhone, pushToken or externalId",
            "missing_recipient",
        )
    channel = submission.channel
    if routing is not None:
        known = routing.types.get(submission.type)
        if channel is not None and known is not None and not known.allows(channel):
            allowed = ", ".join(known.channels)
            raise InvalidEvent(
                "$.wishedChannel" if submission.source == "soap" else "$.channel",
                f"event type {submission.type!r} does not send by {channel} (allowed: {allowed})",
                "channel_not_allowed",
            )
        channel = routing.channel_for(submission.type, channel)
    if channel is not None:
        needed = route.address_for(channel, model.Recipient(email, phone, r.pushToken))
        # A reconciling type's profile may hold the address (checked when it is sent).
        reconciles = routing is not None and routing.reconciles(submission.type)
        if channel is not model.Channel.WEBHOOK and not needed and not reconciles:
            field = {"email": "email", "sms": "mobilePhone", "push": "pushToken"}[channel]
            raise InvalidEvent(
                f"$.recipient.{field}",
                f"the {channel} channel needs recipient.{field}",
                "missing_recipient",
            )
    ctx_issues = None
    checker = checkers.get(submission.type) if checkers else None
    if checker is not None:
        found = checker.check(submission.ctx, lax=submission.source == "soap")
        if found:
            if checker.strict:
                raise InvalidEvent("$." + found[0].partition(": ")[0], found[0], "invalid_ctx")
            ctx_issues = _encode(found).decode()
    scheduled = _date(submission.scheduled, "$.scheduled")
    expiration = _date(submission.expiration, "$.expiration")
    if scheduled is not None and expiration is not None and expiration < scheduled:
        raise InvalidEvent(
            "$.expiration", "expiration is before scheduled", "expiration_before_scheduled"
        )
    return events_store.NewEvent(
        id=event_id,
        type=submission.type,
        channel=None if submission.channel is None else str(submission.channel),
        email=email,
        mobile_phone=phone,
        push_token=r.pushToken,
        external_id=r.externalId,
        ctx=_encode(submission.ctx),
        priority=submission.priority,
        source=submission.source,
        received_at=now,
        scheduled_at=scheduled,
        expires_at=expiration,
        due_at=now if scheduled is None else max(scheduled, now),
        ctx_issues=ctx_issues,
    )


class Ingest:
    """Accepts events: validation, ids, and group commit into the events table."""

    def __init__(
        self,
        db: Database,
        id_generator: ids.IdGenerator,
        *,
        routing: Callable[[], route.Routing | None],
        checkers: Callable[[], Mapping[str, ctxschema.Checker]] | None = None,
        on_commit: Callable[[], None] | None = None,
        on_written: Callable[[Sequence[events_store.NewEvent]], None] | None = None,
        max_rows: int = 1000,
        max_delay: float = 0.0,
    ):
        self.db = db
        self.ids = id_generator
        self._routing = routing
        self._checkers = checkers
        self._on_commit = on_commit
        # Told of every committed batch (metrics: events by type and source, batch sizes).
        self._on_written = on_written
        self.committer: batching.GroupCommitter[events_store.NewEvent, None] = (
            batching.GroupCommitter(
                self._flush, max_items=max_rows, max_delay=max_delay, name="ingest"
            )
        )

    async def _flush(self, batch: list[events_store.NewEvent]) -> list[None]:
        await self.db.write_many(events_store.insert_steps(batch, self.db.dialect))
        if self._on_written is not None:
            self._on_written(batch)
        if self._on_commit is not None:
            self._on_commit()
        return [None] * len(batch)

    def prepare(self, submission: Submission) -> events_store.NewEvent:
        """Validate one submission and give it an id (nothing is written)."""
        return prepare(
            submission,
            event_id=self.ids.next(),
            now=clock.now_us(),
            routing=self._routing(),
            checkers=None if self._checkers is None else self._checkers(),
        )

    async def accept(self, submission: Submission) -> events_store.NewEvent:
        """Validate and commit one event; return it once committed."""
        event = self.prepare(submission)
        await self.committer.submit(event)
        return event

    async def commit(self, events: Sequence[events_store.NewEvent]) -> None:
        """Commit prepared events (sharing transactions with concurrent requests)."""
        if events:
            await self.committer.submit_many(events)

    async def commit_keyed(
        self,
        events: Sequence[events_store.NewEvent],
        *,
        api_key_id: int,
        key: str,
        request_hash: str,
        status_code: int,
        body: str,
        ttl_us: int,
    ) -> tuple[str, int, str] | None:
        """Commit prepared events together with the answer to an ``Idempotency-Key``
        request, in one transaction. If another request got the key first, write nothing and
        return that request's (hash, status, body)."""
        now = clock.now_us()
        try:
            async with self.db.transaction() as conn:
                stored = await idempotency.find_answer(conn, api_key_id, key, now - ttl_us)
                if stored is not None:
                    return stored
                if not await idempotency.remember_answer(
                    conn, api_key_id, key, request_hash, status_code, body, now, now - ttl_us
                ):
                    raise _KeyTaken
                await events_store.insert_events(conn, events)
        except _KeyTaken:
            # A concurrent request with the same key committed first (PostgreSQL); ours
            # rolled back, so answer as that one did.
            return await self.find_keyed(api_key_id, key, ttl_us)
        if self._on_written is not None:
            self._on_written(events)
        if self._on_commit is not None:
            self._on_commit()
        return None

    async def find_keyed(
        self, api_key_id: int, key: str, ttl_us: int
    ) -> tuple[str, int, str] | None:
        """The stored answer for an idempotency key, if still remembered."""
        async with self.db.connection() as conn:
            return await idempotency.find_answer(conn, api_key_id, key, clock.now_us() - ttl_us)

    async def aclose(self) -> None:
        """Commit what was accepted, then stop taking events."""
        await self.committer.aclose()
