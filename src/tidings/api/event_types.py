"""Designing event types over the admin API: create, read, update and delete them with their
ctx schema, their example requests (Adobe's "API preview"), and their test profiles.

Every route needs the ``admin`` scope; failures answer with the codes of
:mod:`tidings.control.errors` (404 ``unknown_event_type``, 409 ``duplicate_event_type`` or
``event_type_in_use``, 422 ``invalid_name`` / ``invalid_schema``...), except the list of
event types (``GET /api/v1/event-types``, as routing sees them), which the ``events`` scope
may read. Pause and resume live in :mod:`.admin`.
"""

from __future__ import annotations

from typing import Any

import msgspec
from litestar import Request, Response, Router, delete, get, post, put
from litestar.openapi.datastructures import ResponseSpec
from litestar.params import FromPath

from tidings.api import admin, auth, intake
from tidings.api.errors import ErrorResponse, documented, ok
from tidings.app import App
from tidings.control import catalog as control_catalog
from tidings.control import distribution, eventtypes

_definition = msgspec.json.Decoder(eventtypes.Definition)
_profile = msgspec.json.Decoder(eventtypes.Profile)
_encode = msgspec.json.Encoder().encode

ERRORS = documented(
    {
        400: "Malformed JSON",
        404: "Unknown event type (or profile)",
        422: "Invalid field, name or schema (the error names it)",
    },
    scope="admin",
)


def router(app: App) -> Router:
    """The routes, bound to ``app``."""
    admin_scope = auth.require("admin", app.authenticate)
    events_scope = auth.require("events", app.authenticate)
    db = app.db

    @get(
        "/event-types",
        summary="Event types",
        guards=[events_scope],
        operation_id="listEventTypes",
        tags=["event types"],
        responses={200: ResponseSpec(list[admin.EventTypeOut], description="Event types")},
    )
    async def list_types() -> Response[bytes]:
        found = await control_catalog.event_types(db)
        return ok(
            [admin.EventTypeOut(t.name, t.label, str(t.default_channel), t.paused) for t in found]
        )

    @post(
        "/event-types",
        summary="Create an event type",
        description="Name (`^[A-Za-z][A-Za-z0-9_]{0,63}$`), label, description, default and "
        "allowed channels, strict or lenient ctx validation, the ctx schema (fields of type "
        "string, number, boolean, date, email, url or collection, with required flags and "
        "examples) and the language settings.",
        guards=[admin_scope],
        operation_id="createEventType",
        tags=["event types"],
        status_code=201,
        request_body_doc=eventtypes.Definition,
        responses={
            201: ResponseSpec(eventtypes.EventTypeInfo, description="Created"),
            409: ResponseSpec(ErrorResponse, description="The name is taken"),
            **ERRORS,
        },
    )
    async def create(request: Request[Any, Any, Any]) -> Response[bytes]:
        definition = intake.decode(await intake.read_body(request), _definition)
        created = await eventtypes.create(db, definition)
        await app.refresh_routing()
        return ok(created, 201)

    @get(
        "/event-types/{name:str}",
        summary="An event type with its ctx schema",
        guards=[admin_scope],
        operation_id="getEventType",
        tags=["event types"],
        responses={200: ResponseSpec(eventtypes.EventTypeInfo, description="It"), **ERRORS},
    )
    async def read(name: FromPath[str]) -> Response[bytes]:
        return ok(await eventtypes.get(db, name))

    @put(
        "/event-types/{name:str}",
        summary="Replace an event type's definition",
        guards=[admin_scope],
        operation_id="updateEventType",
        tags=["event types"],
        request_body_doc=eventtypes.Definition,
        responses={200: ResponseSpec(eventtypes.EventTypeInfo, description="Updated"), **ERRORS},
    )
    async def update(request: Request[Any, Any, Any], name: FromPath[str]) -> Response[bytes]:
        definition = intake.decode(await intake.read_body(request), _definition)
        updated = await eventtypes.update(db, name, definition)
        await app.refresh_routing()
        return ok(updated)

    @delete(
        "/event-types/{name:str}",
        summary="Delete an event type (refused while its events are queued)",
        description="Each channel it routed is unpublished, here and on every registered "
        "execution instance (the results are in each instance's deliveries and the audit log).",
        guards=[admin_scope],
        operation_id="deleteEventType",
        tags=["event types"],
        status_code=204,
        responses={
            409: ResponseSpec(ErrorResponse, description="Events of the type are queued"),
            **ERRORS,
        },
    )
    async def remove(request: Request[Any, Any, Any], name: FromPath[str]) -> None:
        await distribution.delete_event_type(
            db, app.settings, name, actor=auth.current_key(request).name
        )
        await app.refresh_routing()

    @get(
        "/event-types/{name:str}/example",
        summary="Example requests sending an event of the type (API preview)",
        description="For the native route and the Campaign Standard route "
        "(`POST /{org}/campaign/{transactionalAPI}/EVT<name>`), built from the schema's "
        "examples.",
        guards=[admin_scope],
        operation_id="getEventTypeExample",
        tags=["event types"],
        responses={200: ResponseSpec(eventtypes.Examples, description="Requests"), **ERRORS},
    )
    async def example(name: FromPath[str]) -> Response[bytes]:
        return ok(eventtypes.examples(await eventtypes.get(db, name), app.settings))

    @get(
        "/event-types/{name:str}/profiles",
        summary="An event type's test profiles",
        guards=[admin_scope],
        operation_id="listTestProfiles",
        tags=["event types"],
        responses={200: ResponseSpec(list[eventtypes.Profile], description="Profiles"), **ERRORS},
    )
    async def list_profiles(name: FromPath[str]) -> Response[bytes]:
        await eventtypes.get(db, name)
        return ok(await eventtypes.profiles(db, name))

    @put(
        "/event-types/{name:str}/profiles/{profile:str}",
        summary="Create or replace a test profile (a sample recipient and ctx)",
        guards=[admin_scope],
        operation_id="putTestProfile",
        tags=["event types"],
        request_body_doc=eventtypes.Profile,
        responses={200: ResponseSpec(eventtypes.Profile, description="Saved"), **ERRORS},
    )
    async def put_profile(
        request: Request[Any, Any, Any], name: FromPath[str], profile: FromPath[str]
    ) -> Response[bytes]:
        given = intake.decode(await intake.read_body(request), _profile)
        saved = await eventtypes.put_profile(
            db, name, eventtypes.Profile(profile, given.recipient, given.ctx)
        )
        return ok(saved)

    @get(
        "/event-types/{name:str}/profiles/{profile:str}",
        summary="One test profile",
        guards=[admin_scope],
        operation_id="getTestProfile",
        tags=["event types"],
        responses={200: ResponseSpec(eventtypes.Profile, description="It"), **ERRORS},
    )
    async def get_profile(name: FromPath[str], profile: FromPath[str]) -> Response[bytes]:
        return ok(await eventtypes.get_profile(db, name, profile))

    @delete(
        "/event-types/{name:str}/profiles/{profile:str}",
        summary="Delete a test profile",
        guards=[admin_scope],
        operation_id="deleteTestProfile",
        tags=["event types"],
        status_code=204,
        responses=ERRORS,
    )
    async def delete_profile(name: FromPath[str], profile: FromPath[str]) -> None:
        await eventtypes.delete_profile(db, name, profile)

    return Router(
        "/api/v1",
        route_handlers=[
            list_types,
            create,
            read,
            update,
            remove,
            example,
            list_profiles,
            put_profile,
            get_profile,
            delete_profile,
        ],
    )
