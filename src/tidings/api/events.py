"""The native events API: ``/api/v1/events``."""

from __future__ import annotations

from typing import Annotated, Any

import msgspec
from litestar import Request, Response, Router, get, post
from litestar.openapi.datastructures import ResponseSpec
from litestar.params import FromPath, QueryParameter

from tidings import clock, ids, ingest, model
from tidings.api import auth, intake, payloads
from tidings.api.errors import JSON, ApiError, ErrorResponse, from_validation
from tidings.app import App
from tidings.store import events as events_store
from tidings.store import receipts as receipts_store

_event_in = msgspec.json.Decoder(payloads.EventIn)
_batch_in = msgspec.json.Decoder(payloads.BatchIn)
_batch_typed = msgspec.json.Decoder(payloads.BatchItemsIn)
_encode = msgspec.json.Encoder().encode


def prepare_one(app: App, body: bytes) -> intake.Prepared:
    """Validate one native event: what to store and what to answer."""
    payload = intake.decode(body, _event_in)
    try:
        event = app.ingest.prepare(payload.submission())
    except ingest.InvalidEvent as exc:
        raise intake.invalid(exc) from None
    out = payloads.accepted_out(event, payload.ctx)
    return intake.Prepared([event], 201, _encode(out), {"Location": out.href})


def prepare_batch(app: App, body: bytes) -> intake.Prepared:
    """Validate a batch, item by item: the valid items to store, one result per item.

    The batch is decoded in one pass, every item as a :class:`payloads.EventIn`; only if that
    fails (an item does not fit, or the body is not JSON) is it decoded again item by item, so
    that each bad item gets its own error and the good ones are still stored."""
    items: list[payloads.EventIn] | list[payloads.EventIn | payloads.BatchItemResult]
    try:
        items = _batch_typed.decode(body).events
    except (msgspec.DecodeError, UnicodeDecodeError, RecursionError):
        # (ValidationError is a DecodeError.) The slow path says what is wrong, and where.
        raw = intake.decode(body, _batch_in).events
        _check_size(app, len(raw))
        items = [_decode_item(index, item) for index, item in enumerate(raw)]
    else:
        _check_size(app, len(items))
    accepted: list[events_store.NewEvent] = []
    results: list[payloads.BatchItemResult] = []
    prepare = app.ingest.prepare
    for index, payload in enumerate(items):
        if isinstance(payload, payloads.BatchItemResult):
            results.append(payload)
            continue
        try:
            event = prepare(payload.submission())
        except ingest.InvalidEvent as exc:
            results.append(_item_error(index, exc.code, exc.message, exc.field))
            continue
        accepted.append(event)
        results.append(
            payloads.BatchItemResult(index, event=payloads.accepted_out(event, payload.ctx))
        )
    out = payloads.BatchOut(len(accepted), len(results) - len(accepted), results)
    return intake.Prepared(accepted, 200, _encode(out))


def _check_size(app: App, count: int) -> None:
    limit = app.settings.max_batch_events
    if count > limit:
        raise ApiError(413, "batch_too_large", f"a batch holds at most {limit} events, not {count}")


def _decode_item(index: int, raw: msgspec.Raw) -> payloads.EventIn | payloads.BatchItemResult:
    """One batch item, or the result saying why it does not fit."""
    try:
        return intake.decode_item(raw, _event_in)
    except msgspec.ValidationError as exc:
        error = from_validation(exc).body
        return _item_error(index, error.code, error.message, error.field)


def router(app: App) -> Router:
    """The routes, bound to ``app``."""
    events_scope = auth.require("events", app.authenticate)

    @post(
        "/events",
        summary="Send one event",
        description="Stores the event (answering only after it is committed) and returns it "
        "with status `pending`. Send `Idempotency-Key` to make retries safe.",
        responses={
            201: ResponseSpec(payloads.EventOut, description="Stored"),
            **intake.INTAKE_ERRORS,
        },
        status_code=201,
        guards=[events_scope],
        operation_id="createEvent",
        request_body_doc=payloads.EventIn,
    )
    async def create_event(request: Request[Any, Any, Any]) -> Response[bytes]:
        body = await intake.read_body(request)
        return await intake.commit(request, app, body, lambda: prepare_one(app, body))

    @post(
        "/events/batch",
        summary="Send up to 1,000 events",
        description="Each item is validated on its own: valid items are stored even when "
        "others are rejected. The answer has one result per item, in order.",
        responses={
            200: ResponseSpec(payloads.BatchOut, description="Per-item results"),
            **intake.INTAKE_ERRORS,
        },
        status_code=200,
        guards=[events_scope],
        operation_id="createEvents",
        request_body_doc=payloads.BatchInDoc,
    )
    async def create_events(request: Request[Any, Any, Any]) -> Response[bytes]:
        body = await intake.read_body(request)
        return await intake.commit(request, app, body, lambda: prepare_batch(app, body))

    @get(
        "/events/{event_id:str}",
        summary="An event, its status, timeline and delivery log",
        responses={
            200: ResponseSpec(payloads.EventDetail, description="The event"),
            404: ResponseSpec(ErrorResponse, description="No such event"),
        },
        guards=[events_scope],
        operation_id="getEvent",
    )
    async def get_event(event_id: FromPath[str]) -> Response[bytes]:
        number = ids.parse(event_id)
        event = None
        if number is not None:
            async with app.db.connection() as conn:
                event = await events_store.get_event(conn, number)
                deliveries = await events_store.get_deliveries(conn, number) if event else []
                receipts = await receipts_store.receipts_for_event(conn, number) if event else []
        if event is None:
            raise ApiError(404, "not_found", f"no event {event_id}")
        detail = payloads.event_detail(event, deliveries, receipts)
        return Response(_encode(detail), media_type=JSON)

    @get(
        "/events",
        summary="Find events",
        description="Newest first. Filters combine; `next` in the answer is the `cursor` "
        "of the following page.",
        responses={
            200: ResponseSpec(payloads.EventPage, description="A page of events"),
            422: ResponseSpec(ErrorResponse, description="Invalid filter"),
        },
        guards=[events_scope],
        operation_id="listEvents",
    )
    async def list_events(
        status: Annotated[str | None, QueryParameter(description="an event status")] = None,
        event_type: Annotated[
            str | None, QueryParameter(name="type", description="event type name")
        ] = None,
        recipient: Annotated[
            str | None, QueryParameter(description="email, mobile phone or external id")
        ] = None,
        received_from: Annotated[
            str | None, QueryParameter(name="from", description="received at or after (ISO 8601)")
        ] = None,
        received_to: Annotated[
            str | None, QueryParameter(name="to", description="received before (ISO 8601)")
        ] = None,
        limit: Annotated[str | None, QueryParameter(description="page size, 1-500 (50)")] = None,
        cursor: Annotated[str | None, QueryParameter(description="`next` of the last page")] = None,
    ) -> Response[bytes]:
        where = events_store.EventFilter(
            status=_status(status),
            type=event_type,
            recipient=recipient,
            received_from=_time(received_from, "from"),
            received_to=_time(received_to, "to"),
            before_id=_cursor(cursor),
        )
        size = _limit(limit)
        async with app.db.connection() as conn:
            found = await events_store.list_events(conn, where, size + 1)
        page = found[:size]
        following = str(page[-1].id) if len(found) > size else None
        return Response(
            _encode(payloads.EventPage([payloads.event_out(e) for e in page], following)),
            media_type=JSON,
        )

    return Router(
        "/api/v1",
        route_handlers=[create_event, create_events, get_event, list_events],
        tags=["events"],
    )


def _item_error(index: int, code: str, message: str, field: str | None) -> payloads.BatchItemResult:
    """A rejected batch item; its field path is rooted at the item."""
    path = f"$.events[{index}]{field[1:]}" if field else f"$.events[{index}]"
    return payloads.BatchItemResult(index, error=payloads.ItemError(code, message, path))


def _status(text: str | None) -> model.EventStatus | None:
    if text is None:
        return None
    try:
        return model.EventStatus(text)
    except ValueError:
        names = ", ".join(s.value for s in model.EventStatus)
        raise ApiError(
            422, "invalid_field", f"status must be one of {names}", field="status"
        ) from None


def _time(text: str | None, name: str) -> int | None:
    if text is None:
        return None
    try:
        return clock.parse_iso(text)
    except ValueError:
        raise ApiError(422, "invalid_date", f"{name} is not an ISO 8601 date", field=name) from None


def _cursor(text: str | None) -> int | None:
    if text is None:
        return None
    value = ids.parse(text)
    if value is None:
        raise ApiError(422, "invalid_field", "cursor is not one this API gave", field="cursor")
    return value


def _limit(text: str | None) -> int:
    if text is None:
        return 50
    if not text.isdigit() or not 1 <= int(text) <= 500:
        raise ApiError(422, "invalid_field", "limit must be 1-500", field="limit")
    return int(text)
