"""Adobe Campaign Standard's transactional messages API, so websites written for it work
unchanged: ``POST /{org}/campaign/{transactionalAPI}/{eventId}`` and
``GET /{org}/campaign/{transactionalAPI}/{eventId}/{PKey}``.

``{org}`` and ``{transactionalAPI}`` come from settings (``org``, ``transactional_api``);
``{eventId}`` is ``EVT`` followed by the event type's name. The event's channel is its type's
default channel, whose address field (``email`` or ``mobilePhone``) must be present.
"""

from __future__ import annotations

from typing import Any

import msgspec
from litestar import Request, Response, Router, get, post
from litestar.openapi.datastructures import ResponseSpec
from litestar.params import FromPath

from tidings import clock, ids, ingest, model
from tidings.api import auth, intake, payloads
from tidings.api.errors import JSON, ApiError, ErrorResponse
from tidings.app import App
from tidings.store import events as events_store

_adobe_in = msgspec.json.Decoder(payloads.AdobeEventIn)
_encode = msgspec.json.Encoder().encode


def _fmt(us: int | None) -> str | None:
    return None if us is None else clock.format_adobe(us)


async def event_type_of(app: App, org: str, api: str, event_id: str) -> str:
    """The event type named by a Campaign Standard URL; 404 if there is none."""
    settings = app.settings
    if org != settings.org or api != settings.transactional_api:
        raise ApiError(404, "not_found", f"no transactional API at /{org}/campaign/{api}")
    name = event_id[3:] if event_id.startswith("EVT") else ""
    routing = app.routing()
    if routing is None or name not in routing.types:
        await app.refresh_routing()  # it may have been created a moment ago
        routing = app.routing()
    if not name or routing is None or name not in routing.types:
        raise ApiError(404, "unknown_event_type", f"no event type {event_id!r}", field="eventId")
    return name


def adobe_out(
    app: App,
    event_id: str,
    pkey: int,
    status: model.EventStatus,
    ctx: dict[str, Any],
    email: str | None,
    phone: str | None,
    scheduled: int | None,
    expiration: int | None,
    reason: str | None = None,
) -> payloads.AdobeEventOut:
    """An event as Campaign Standard shows it."""
    return payloads.AdobeEventOut(
        PKey=str(pkey),
        ctx=ctx,
        href=f"{app.settings.transactional_api}/{event_id}/{pkey}",
        serverUrl=app.settings.server_url,
        status=status,
        type="transactional",
        email=email,
        mobilePhone=phone,
        scheduled=_fmt(scheduled),
        expiration=_fmt(expiration),
        reason=reason,
    )


def prepare(app: App, name: str, event_id: str, body: bytes) -> intake.Prepared:
    """Validate a Campaign Standard event body of type ``name``: what to store and answer."""
    payload = intake.decode(body, _adobe_in)
    submission = ingest.Submission(
        type=name,
        recipient=model.Recipient(email=payload.email, mobilePhone=payload.mobilePhone),
        ctx=payload.ctx,
        scheduled=payload.scheduled,
        expiration=payload.expiration,
        source="adobe",
    )
    try:
        event = app.ingest.prepare(submission)
    except ingest.InvalidEvent as exc:
        # Adobe's body has no "recipient" object: name the top-level field.
        exc.field = exc.field.replace("$.recipient.", "$.")
        # Adobe answers 400 for a ctx that does not fit the event's definition.
        raise intake.invalid(exc, 400 if exc.code == "invalid_ctx" else 422) from None
    out = adobe_out(
        app,
        event_id,
        event.id,
        model.EventStatus.PENDING,
        payload.ctx,
        event.email,
        event.mobile_phone,
        event.scheduled_at,
        event.expires_at,
    )
    return intake.Prepared([event], 201, _encode(out))


def router(app: App) -> Router:
    """The routes, bound to ``app``."""
    events_scope = auth.require("events", app.authenticate)

    @post(
        "/{org:str}/campaign/{transactional_api:str}/{event_id:str}",
        summary="Send an event (Campaign Standard)",
        description="Body as Adobe documents it: `email` and/or `mobilePhone`, optional "
        "`scheduled` and `expiration`, and `ctx`.",
        responses={
            201: ResponseSpec(payloads.AdobeEventOut, description="Stored"),
            404: ResponseSpec(ErrorResponse, description="Unknown eventId"),
            **intake.INTAKE_ERRORS,
        },
        status_code=201,
        guards=[events_scope],
        operation_id="adobeCreateEvent",
        request_body_doc=payloads.AdobeEventIn,
    )
    async def create(
        request: Request[Any, Any, Any],
        org: FromPath[str],
        transactional_api: FromPath[str],
        event_id: FromPath[str],
    ) -> Response[bytes]:
        name = await event_type_of(app, org, transactional_api, event_id)
        body = await intake.read_body(request)
        return await intake.commit(request, app, body, lambda: prepare(app, name, event_id, body))

    @get(
        "/{org:str}/campaign/{transactional_api:str}/{event_id:str}/{pkey:str}",
        summary="An event's current state (Campaign Standard)",
        responses={
            200: ResponseSpec(payloads.AdobeEventOut, description="The event"),
            404: ResponseSpec(ErrorResponse, description="No such event"),
        },
        guards=[events_scope],
        operation_id="adobeGetEvent",
    )
    async def status(
        org: FromPath[str],
        transactional_api: FromPath[str],
        event_id: FromPath[str],
        pkey: FromPath[str],
    ) -> Response[bytes]:
        name = await event_type_of(app, org, transactional_api, event_id)
        number = ids.parse(pkey)
        event = None
        if number is not None:
            async with app.db.connection() as conn:
                event = await events_store.get_event(conn, number)
        if event is None or event.type != name:
            raise ApiError(404, "not_found", f"no event {pkey} of type {event_id}")
        out = adobe_out(
            app,
            event_id,
            event.id,
            event.status,
            event.ctx,
            event.recipient.email,
            event.recipient.mobilePhone,
            event.scheduled_at,
            event.expires_at,
            event.reason,
        )
        return Response(_encode(out), media_type=JSON)

    return Router("/", route_handlers=[create, status], tags=["campaign standard"])
