"""Operating routes: the outbox, quarantine, event types (pause/resume) and API keys.

The list of event types is served with their other routes, by :mod:`.event_types`.
"""

from __future__ import annotations

from typing import Annotated, Any

import msgspec
from litestar import Request, Response, Router, delete, get, post
from litestar.openapi.datastructures import ResponseSpec
from litestar.params import FromPath, FromQuery, QueryParameter

from tidings import apikeys, clock, model, quarantine
from tidings.api import auth, intake
from tidings.api.errors import ApiError, ErrorResponse, ok
from tidings.app import App
from tidings.control import catalog as control_catalog
from tidings.store import outbox as outbox_store

_encode = msgspec.json.Encoder().encode


class OutboxItem(msgspec.Struct):
    """A message kept in the local outbox."""

    id: int
    eventId: str
    messageId: str
    channel: str
    recipient: str
    sender: str
    subject: str
    text: str
    html: str
    createdAt: str


class OutboxDetail(OutboxItem):
    """An outbox message with its complete MIME source."""

    raw: str = ""


class OutboxPage(msgspec.Struct):
    """Outbox messages, newest first; ``next`` is the ``cursor`` of the following page."""

    items: list[OutboxItem]
    next: str | None


class QuarantineIn(msgspec.Struct, forbid_unknown_fields=True):
    """An address to quarantine."""

    address: str
    channel: model.Channel = model.Channel.EMAIL
    reason: str = "added by an operator"
    expiresAt: str | None = None


class QuarantineOut(msgspec.Struct):
    """A quarantined address."""

    channel: str
    address: str
    reason: str
    source: str
    createdAt: str
    expiresAt: str | None
    eventId: str | None


class EventTypeOut(msgspec.Struct):
    """An event type as routing sees it."""

    name: str
    label: str
    defaultChannel: str
    paused: bool


class ResumeOut(msgspec.Struct):
    """A resumed event type and how many paused events went back to the queue."""

    name: str
    resumed: int


class KeyIn(msgspec.Struct, forbid_unknown_fields=True):
    """A key to create."""

    name: str
    scopes: list[str] = msgspec.field(default_factory=lambda: ["events"])


class KeyOut(msgspec.Struct, omit_defaults=True):
    """An API key; ``key`` appears only in the answer that created it."""

    prefix: str
    name: str
    scopes: list[str]
    createdAt: str
    revokedAt: str | None = None
    key: str | None = None


def _outbox_item(m: model.OutboxMessage) -> dict[str, Any]:
    return {
        "id": m.id,
        "eventId": str(m.event_id),
        "messageId": m.message_id,
        "channel": str(m.channel),
        "recipient": m.recipient,
        "sender": m.sender,
        "subject": m.subject,
        "text": m.text,
        "html": m.html,
        "createdAt": clock.format_iso(m.created_at),
    }


def _quarantine_out(q: model.QuarantineEntry) -> QuarantineOut:
    return QuarantineOut(
        str(q.channel),
        q.address,
        q.reason,
        q.source,
        clock.format_iso(q.created_at),
        None if q.expires_at is None else clock.format_iso(q.expires_at),
        None if q.event_id is None else str(q.event_id),
    )


def _key_out(k: model.ApiKey, key: str | None = None) -> KeyOut:
    return KeyOut(
        k.prefix,
        k.name,
        sorted(k.scopes),
        clock.format_iso(k.created_at),
        None if k.revoked_at is None else clock.format_iso(k.revoked_at),
        key,
    )


def _channel(text: str | None) -> model.Channel | None:
    if text is None:
        return None
    try:
        return model.Channel(text)
    except ValueError:
        raise ApiError(
            422, "invalid_field", "channel must be email, sms, push or webhook", field="channel"
        ) from None


def _no_nul(**fields: str) -> None:
    """422 for a field holding NUL, which PostgreSQL text cannot store."""
    for name, value in fields.items():
        if "\x00" in value:
            raise ApiError(
                422, "invalid_field", f"{name} must not contain NUL characters", field=f"$.{name}"
            )


def router(app: App) -> Router:
    """The routes, bound to ``app``."""
    events_scope = auth.require("events", app.authenticate)
    admin_scope = auth.require("admin", app.authenticate)
    db = app.db

    @get(
        "/outbox",
        summary="Messages in the local outbox",
        guards=[events_scope],
        responses={200: ResponseSpec(OutboxPage, description="A page of messages")},
        operation_id="listOutbox",
        tags=["outbox"],
    )
    async def list_outbox(
        recipient: FromQuery[str | None] = None,
        limit: Annotated[int, QueryParameter(ge=1, le=500)] = 50,
        cursor: Annotated[int | None, QueryParameter(ge=1)] = None,
    ) -> Response[bytes]:
        async with db.connection() as conn:
            found = await outbox_store.list_messages(
                conn, before_id=cursor, recipient=recipient, limit=limit + 1
            )
        page = found[:limit]
        following = str(page[-1].id) if len(found) > limit else None
        return ok({"items": [_outbox_item(m) for m in page], "next": following})

    @get(
        "/outbox/{message_id:int}",
        summary="One outbox message with its MIME source",
        guards=[events_scope],
        operation_id="getOutboxMessage",
        tags=["outbox"],
        responses={
            200: ResponseSpec(OutboxDetail, description="The message"),
            404: ResponseSpec(ErrorResponse, description="No such message"),
        },
    )
    async def get_outbox(message_id: FromPath[int]) -> Response[bytes]:
        async with db.connection() as conn:
            message = await outbox_store.get_message(conn, message_id)
        if message is None:
            raise ApiError(404, "not_found", f"no outbox message {message_id}")
        return ok({**_outbox_item(message), "raw": message.raw})

    @get(
        "/quarantine",
        summary="Quarantined addresses",
        guards=[admin_scope],
        operation_id="listQuarantine",
        tags=["quarantine"],
        responses={200: ResponseSpec(list[QuarantineOut], description="Entries")},
    )
    async def list_quarantine(channel: FromQuery[str | None] = None) -> Response[bytes]:
        found = await quarantine.entries(db, _channel(channel))
        return ok([_quarantine_out(q) for q in found])

    @post(
        "/quarantine",
        summary="Quarantine an address",
        guards=[admin_scope],
        operation_id="addQuarantine",
        tags=["quarantine"],
        status_code=201,
        responses={201: ResponseSpec(QuarantineOut, description="Added")},
        request_body_doc=QuarantineIn,
    )
    async def add_quarantine(request: Request[Any, Any, Any]) -> Response[bytes]:
        payload = intake.decode(await intake.read_body(request), msgspec.json.Decoder(QuarantineIn))
        expires = None
        if payload.expiresAt is not None:
            try:
                expires = clock.parse_iso(payload.expiresAt)
            except ValueError:
                raise ApiError(
                    422, "invalid_date", "expiresAt is not an ISO 8601 date", field="$.expiresAt"
                ) from None
        if not payload.address.strip():
            raise ApiError(422, "invalid_field", "address is empty", field="$.address")
        _no_nul(address=payload.address, reason=payload.reason)
        entry = await quarantine.add(
            db, payload.channel, payload.address, reason=payload.reason, expires_at=expires
        )
        return ok(_quarantine_out(entry), 201)

    @delete(
        "/quarantine/{channel:str}/{address:str}",
        summary="Release an address",
        guards=[admin_scope],
        operation_id="removeQuarantine",
        tags=["quarantine"],
        status_code=204,
    )
    async def remove_quarantine(channel: FromPath[str], address: FromPath[str]) -> None:
        kind = _channel(channel)
        assert kind is not None
        if not await quarantine.remove(db, kind, address):
            raise ApiError(404, "not_found", f"{address} is not quarantined on {channel}")

    @post(
        "/event-types/{name:str}/pause",
        summary="Pause an event type",
        guards=[admin_scope],
        operation_id="pauseEventType",
        tags=["event types"],
        status_code=200,
        responses={200: ResponseSpec(EventTypeOut, description="Paused")},
    )
    async def pause(name: FromPath[str]) -> Response[bytes]:
        try:
            await control_catalog.pause(db, name)
        except control_catalog.UnknownEventType:
            raise ApiError(404, "not_found", f"no event type {name!r}") from None
        await app.refresh_routing()
        known = app.routing()
        assert known is not None
        t = known.types[name]
        return ok(EventTypeOut(t.name, t.label, str(t.default_channel), t.paused))

    @post(
        "/event-types/{name:str}/resume",
        summary="Resume an event type",
        guards=[admin_scope],
        operation_id="resumeEventType",
        tags=["event types"],
        status_code=200,
        responses={200: ResponseSpec(ResumeOut, description="Resumed")},
    )
    async def resume(name: FromPath[str]) -> Response[bytes]:
        try:
            count = await control_catalog.resume(db, name)
        except control_catalog.UnknownEventType:
            raise ApiError(404, "not_found", f"no event type {name!r}") from None
        await app.refresh_routing()
        return ok(ResumeOut(name, count))

    @get(
        "/keys",
        summary="API keys",
        guards=[admin_scope],
        operation_id="listKeys",
        tags=["keys"],
        responses={200: ResponseSpec(list[KeyOut], description="Keys")},
    )
    async def list_keys() -> Response[bytes]:
        return ok([_key_out(k) for k in await apikeys.list_all(db)])

    @post(
        "/keys",
        summary="Create an API key (shown once)",
        guards=[admin_scope],
        operation_id="createKey",
        tags=["keys"],
        status_code=201,
        responses={201: ResponseSpec(KeyOut, description="Created")},
        request_body_doc=KeyIn,
    )
    async def create_key(request: Request[Any, Any, Any]) -> Response[bytes]:
        payload = intake.decode(await intake.read_body(request), msgspec.json.Decoder(KeyIn))
        _no_nul(name=payload.name)
        try:
            key, record = await apikeys.create(db, payload.name, frozenset(payload.scopes))
        except ValueError as exc:
            raise ApiError(422, "invalid_field", str(exc), field="$.scopes") from None
        return ok(_key_out(record, key), 201)

    @delete(
        "/keys/{prefix:str}",
        summary="Revoke an API key",
        guards=[admin_scope],
        operation_id="revokeKey",
        tags=["keys"],
        status_code=204,
    )
    async def revoke_key(prefix: FromPath[str]) -> None:
        if not await apikeys.revoke(db, prefix):
            raise ApiError(404, "not_found", f"no active key {prefix!r}")
        app.forget_key(prefix)

    return Router(
        "/api/v1",
        route_handlers=[
            list_outbox,
            get_outbox,
            list_quarantine,
            add_quarantine,
            remove_quarantine,
            pause,
            resume,
            list_keys,
            create_key,
            revoke_key,
        ],
    )
