"""Bounce routes: ``POST /api/v1/bounces`` takes a raw message (a DSN or a bounce) and acts on
it (:func:`tidings.bounces.process`); ``GET /api/v1/bounces`` lists the bounces kept."""

from __future__ import annotations

from typing import Annotated, Any

import msgspec
from litestar import Request, Response, Router, get, post
from litestar.openapi.datastructures import ResponseSpec
from litestar.params import FromQuery, QueryParameter

from tidings import bounces, clock, model
from tidings.api import auth
from tidings.api.admin import QuarantineOut
from tidings.api.errors import JSON, ApiError, ErrorResponse
from tidings.app import App
from tidings.store import bounces as bounces_store

_encode = msgspec.json.Encoder().encode


class RecipientOut(msgspec.Struct):
    """One recipient a bounce reports on."""

    address: str
    originalRecipient: str | None
    action: str
    status: str
    kind: str
    diagnostic: str


class BounceResult(msgspec.Struct):
    """What a posted message was and what Tidings did: ``action`` is ``quarantined``,
    ``counted``, ``duplicate`` or ``none`` (no delivery of ours matched)."""

    format: str
    matched: bool
    action: str
    messageIds: list[str]
    recipients: list[RecipientOut]
    eventId: str | None
    messageId: str | None
    address: str | None
    kind: str | None
    status: str | None
    softBounces: int | None
    quarantine: QuarantineOut | None


class BounceOut(msgspec.Struct):
    """A bounce kept about one event's message."""

    id: int
    eventId: str
    channel: str
    address: str
    messageId: str
    kind: str
    status: str
    diagnostic: str
    receivedAt: str


class BouncePage(msgspec.Struct):
    """Bounces, newest first; ``next`` is the ``cursor`` of the following page."""

    items: list[BounceOut]
    next: str | None


#: Media types a raw message may come as (an MTA's pipe sends message/rfc822 or text/plain).
_MESSAGE_TYPES = ("text/plain", "application/octet-stream")


def _check_media_type(content_type: str) -> None:
    media_type = content_type.partition(";")[0].strip().lower()
    if not media_type.startswith("message/") and media_type not in _MESSAGE_TYPES:
        raise ApiError(
            415,
            "unsupported_media_type",
            "send the raw message with Content-Type: message/rfc822",
        )


def _recipient(r: bounces.Recipient) -> RecipientOut:
    return RecipientOut(
        r.address, r.original or None, r.action, r.status, str(r.kind), r.diagnostic
    )


def result(handled: bounces.Handled) -> BounceResult:
    """The answer to a posted bounce."""
    report, r = handled.report, handled.recipient
    return BounceResult(
        format=report.format,
        matched=handled.event_id is not None,
        action=handled.action,
        messageIds=list(report.message_ids),
        recipients=[_recipient(x) for x in report.recipients],
        eventId=None if handled.event_id is None else str(handled.event_id),
        messageId=handled.message_id,
        address=handled.address,
        kind=None if r is None else str(r.kind),
        status=None if r is None else r.status,
        softBounces=handled.soft_bounces,
        quarantine=None if handled.quarantine is None else _quarantine_out(handled.quarantine),
    )


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


def _bounce_out(b: model.Bounce) -> BounceOut:
    return BounceOut(
        b.id,
        str(b.event_id),
        str(b.channel),
        b.address,
        b.message_id,
        str(b.kind),
        b.status,
        b.diagnostic,
        clock.format_iso(b.received_at),
    )


def router(app: App) -> Router:
    """The routes, bound to ``app``."""
    admin_scope = auth.require("admin", app.authenticate)

    @post(
        "/bounces",
        summary="Process a bounce (a raw DSN or bounce message)",
        description="The body is the whole message (`Content-Type: message/rfc822`).",
        guards=[admin_scope],
        operation_id="postBounce",
        tags=["bounces"],
        status_code=200,
        request_max_body_size=app.settings.bounce_max_bytes,
        responses={
            200: ResponseSpec(BounceResult, description="What was matched and done"),
            413: ResponseSpec(ErrorResponse, description="Over TIDINGS_BOUNCE_MAX_BYTES"),
            415: ResponseSpec(ErrorResponse, description="Not a message media type"),
            422: ResponseSpec(ErrorResponse, description="Not a bounce (the message says why)"),
        },
    )
    async def post_bounce(request: Request[Any, Any, Any]) -> Response[bytes]:
        _check_media_type(request.headers.get("content-type", ""))
        raw = await request.body()
        if len(raw) > app.settings.bounce_max_bytes:
            raise ApiError(413, "body_too_large", "the request body is too large")
        handled = await bounces.process(app.db, app.settings, raw)
        if not handled.report.is_bounce:
            raise ApiError(422, "not_a_bounce", handled.report.reason)
        return Response(_encode(result(handled)), media_type=JSON)

    @get(
        "/bounces",
        summary="Bounces received",
        guards=[admin_scope],
        operation_id="listBounces",
        tags=["bounces"],
        responses={200: ResponseSpec(BouncePage, description="A page of bounces")},
    )
    async def list_bounces(
        address: FromQuery[str | None] = None,
        limit: Annotated[int, QueryParameter(ge=1, le=500)] = 50,
        cursor: Annotated[int | None, QueryParameter(ge=1)] = None,
    ) -> Response[bytes]:
        async with app.db.connection() as conn:
            found = await bounces_store.list_bounces(
                conn, before_id=cursor, address=address, limit=limit + 1
            )
        page = found[:limit]
        following = str(page[-1].id) if len(found) > limit else None
        body = BouncePage([_bounce_out(b) for b in page], following)
        return Response(_encode(body), media_type=JSON)

    return Router("/api/v1", route_handlers=[post_bounce, list_bounces])
