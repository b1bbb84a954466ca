"""Looking things up: the events explorer, an event's page, and the outbox.

Message HTML is never put into a console page: it is served on its own URL with a
``Content-Security-Policy: sandbox`` that forbids scripts, and shown in an
``<iframe sandbox="">``, so a hostile template or ctx value cannot act as the operator.
"""

from __future__ import annotations

from typing import Any

from litestar import Request, Response, get
from litestar.handlers import HTTPRouteHandler
from litestar.params import FromPath

from tidings import clock, ids, model
from tidings.app import App
from tidings.console import auth, frame
from tidings.engine import render
from tidings.store import catalog, explorer
from tidings.store import events as events_store
from tidings.store import outbox as outbox_store

PAGE_SIZE = 50
#: For message HTML: no scripts, no plugins, no forms, nothing of the console; images and
#: inline styles as email clients show them.
MESSAGE_CSP = (
    "sandbox; default-src 'none'; img-src https: http: data:; style-src 'unsafe-inline'; "
    "font-src https: data:; frame-ancestors 'self'"
)


class BadFilter(ValueError):
    """A search field the explorer cannot use; the message names it."""


def _time(text: str, name: str) -> int | None:
    if not text:
        return None
    try:
        return clock.parse_iso(text)
    except ValueError:
        raise BadFilter(f"{name}: not a date and time") from None


def search_filter(query: dict[str, str]) -> events_store.EventFilter:
    """The events filter the explorer's search form asks for."""
    status = None
    if query.get("status"):
        try:
            status = model.EventStatus(query["status"])
        except ValueError:
            raise BadFilter("status: not an event status") from None
    cursor = None
    if query.get("cursor"):
        cursor = ids.parse(query["cursor"])
        if cursor is None:
            raise BadFilter("cursor: not an event id")
    for name in ("type", "recipient"):
        if "\x00" in query.get(name, "") or len(query.get(name, "")) > 320:
            raise BadFilter(f"{name}: too long, or holds a NUL character")
    return events_store.EventFilter(
        status=status,
        type=query.get("type") or None,
        recipient=query.get("recipient") or None,
        received_from=_time(query.get("from", ""), "from"),
        received_to=_time(query.get("to", ""), "to"),
        before_id=cursor,
    )


def message_response(html: str) -> Response[str]:
    """A message's HTML, sandboxed (see the module docstring)."""
    return Response(
        html,
        media_type=frame.HTML,
        headers={
            "Content-Security-Policy": MESSAGE_CSP,
            "X-Content-Type-Options": "nosniff",
            "Referrer-Policy": "no-referrer",
            "Cache-Control": "no-store",
        },
    )


def handlers(app: App) -> list[HTTPRouteHandler]:
    """The explorer and outbox pages for ``app``."""
    db = app.db
    signed_in = auth.require(db)

    def not_found(request: Request[Any, Any, Any], what: str) -> Response[str]:
        return frame.page(
            request, "error.html", status=404, title="Not found", message=f"There is no {what}."
        )

    @get("/events", guards=[signed_in], include_in_schema=False)
    async def events_page(request: Request[Any, Any, Any]) -> Response[Any]:
        query = {k: v.strip() for k, v in request.query_params.items()}
        wanted = query.get("id", "")
        if wanted:
            number = ids.parse(wanted)
            if number is not None:
                async with db.connection() as conn:
                    if await events_store.get_event(conn, number) is not None:
                        return Response(
                            "",
                            status_code=303,
                            headers={"Location": f"{auth.PATH}/events/{number}"},
                        )
        error = ""
        found: list[model.Event] = []
        following = None
        try:
            where = search_filter(query)
        except BadFilter as exc:
            error = str(exc)
        else:
            if wanted:
                error = f"no event with id {wanted}"
            else:
                async with db.connection() as conn:
                    found = await events_store.list_events(conn, where, PAGE_SIZE + 1)
                if len(found) > PAGE_SIZE:
                    found = found[:PAGE_SIZE]
                    following = str(found[-1].id)
        async with db.connection() as conn:
            types = [t.name for t in await catalog.list_event_types(conn)]
        return frame.page(
            request,
            "events.html",
            status=(404 if wanted else 422) if error else 200,
            events=found,
            query=query,
            next_cursor=following,
            error=error,
            types=types,
        )

    @get("/events/{event_id:str}", guards=[signed_in], include_in_schema=False)
    async def event_page(request: Request[Any, Any, Any], event_id: FromPath[str]) -> Response[str]:
        number = ids.parse(event_id)
        if number is None:
            return not_found(request, f"event {event_id[:40]!r}")
        async with db.connection() as conn:
            event = await events_store.get_event(conn, number)
            if event is None:
                return not_found(request, f"event {number}")
            deliveries = await events_store.get_deliveries(conn, number)
            bounces = await explorer.bounces_of_event(conn, number)
            kept = await outbox_store.messages_for_event(conn, number)
            version = (
                await explorer.template_version(conn, event.template_version_id)
                if event.template_version_id is not None
                else None
            )
        timeline = [
            (label, at)
            for label, at in (
                ("received", event.received_at),
                ("scheduled", event.scheduled_at),
                ("claimed", event.claimed_at),
                ("sent", event.sent_at),
                ("finished", event.finished_at),
            )
            if at is not None
        ]
        return frame.page(
            request,
            "event.html",
            event=event,
            timeline=timeline,
            deliveries=deliveries,
            bounces=bounces,
            kept=kept,
            version=version,
            rendered=_rendered(app, event, version) if not kept else None,
        )

    @get("/events/{event_id:str}/message.html", guards=[signed_in], include_in_schema=False)
    async def event_message(
        request: Request[Any, Any, Any], event_id: FromPath[str]
    ) -> Response[str]:
        number = ids.parse(event_id)
        async with db.connection() as conn:
            event = None if number is None else await events_store.get_event(conn, number)
            version = (
                await explorer.template_version(conn, event.template_version_id)
                if event is not None and event.template_version_id is not None
                else None
            )
        rendered = _rendered(app, event, version) if event is not None else None
        if not isinstance(rendered, model.EmailMessage):
            return not_found(request, "rendered email for this event")
        return message_response(rendered.html)

    @get("/outbox", guards=[signed_in], include_in_schema=False)
    async def outbox_page(request: Request[Any, Any, Any]) -> Response[str]:
        recipient = request.query_params.get("recipient", "").strip() or None
        cursor_text = request.query_params.get("cursor", "")
        cursor = int(cursor_text) if cursor_text.isdigit() and len(cursor_text) < 19 else None
        async with db.connection() as conn:
            found = await outbox_store.list_messages(
                conn, before_id=cursor, recipient=recipient, limit=PAGE_SIZE + 1
            )
        following = str(found[PAGE_SIZE - 1].id) if len(found) > PAGE_SIZE else None
        return frame.page(
            request,
            "outbox.html",
            messages=found[:PAGE_SIZE],
            recipient=recipient or "",
            next_cursor=following,
        )

    @get("/outbox/{message_id:int}", guards=[signed_in], include_in_schema=False)
    async def outbox_message(
        request: Request[Any, Any, Any], message_id: FromPath[int]
    ) -> Response[str]:
        async with db.connection() as conn:
            message = await outbox_store.get_message(conn, message_id)
        if message is None:
            return not_found(request, f"outbox message {message_id}")
        return frame.page(request, "message.html", message=message)

    @get("/outbox/{message_id:int}/html", guards=[signed_in], include_in_schema=False)
    async def outbox_html(
        request: Request[Any, Any, Any], message_id: FromPath[int]
    ) -> Response[str]:
        async with db.connection() as conn:
            message = await outbox_store.get_message(conn, message_id)
        if message is None:
            return not_found(request, f"outbox message {message_id}")
        return message_response(message.html)

    return [events_page, event_page, event_message, outbox_page, outbox_message, outbox_html]


def _rendered(
    app: App, event: model.Event, version: explorer.PinnedVersion | None
) -> render.Message | str | None:
    """The event's message re-rendered from its pinned template version, or why not."""
    if version is None:
        return None
    publication = model.Publication(
        id=event.publication_id or 0,
        event_type=version.event_type,
        channel=version.channel,
        version_id=version.id,
        content=version.content,
    )
    try:
        return app.renderer.render(app.renderer.compile(publication), event)
    except Exception as exc:  # a template that no longer renders: say so on the page
        return f"cannot render: {exc}"
