"""The execution side of publishing: what a control instance calls on an instance it
publishes to. Every route needs an API key with the ``publish`` scope (``admin`` holds it):
a control instance is given such a key, never an ingest or admin one.

- ``GET /api/v1/execution/publications``: the publications held (hashes), to compare;
- ``PUT /api/v1/execution/publications/{type}/{channel}``: apply one (a
  :class:`~tidings.control.remote.Shipment`) in one transaction; the same hash again
  answers ``changed: false``;
- ``DELETE /api/v1/execution/publications/{type}/{channel}?sequence=N``: stop routing it.

A change older (by its ``sequence``) than one applied already answers 409
``stale_publication`` and changes nothing.
"""

from __future__ import annotations

from typing import Annotated, Any

import msgspec
from litestar import Request, Response, Router, delete, get, put
from litestar.openapi.datastructures import ResponseSpec
from litestar.params import FromPath, QueryParameter

from tidings.api import auth, intake
from tidings.api import templates as template_routes
from tidings.api.errors import documented, ok
from tidings.app import App
from tidings.control import remote

_shipment = msgspec.json.Decoder(remote.Shipment)
_BASE = "/execution/publications"


def _errors(**extra: str) -> dict[int, ResponseSpec]:
    return documented({int(k[1:]): v for k, v in extra.items()}, scope="publish")


def router(app: App) -> Router:
    """The routes, bound to ``app``."""
    publish_scope = auth.require("publish", app.authenticate)
    db = app.db

    def who(request: Request[Any, Any, Any]) -> str:
        return f"key {auth.current_key(request).prefix}"

    @get(
        _BASE,
        summary="The publications this instance routes to (content hashes)",
        guards=[publish_scope],
        operation_id="listHeldPublications",
        tags=["execution"],
        responses={
            200: ResponseSpec(list[remote.Holding], description="Held"),
            **_errors(),
        },
    )
    async def held() -> Response[bytes]:
        return ok(await remote.holdings(db))

    @put(
        f"{_BASE}/{{event_type:str}}/{{channel:str}}",
        summary="Apply a publication sent by the control instance",
        description='Body: `{"eventType": {name, label, defaultChannel, spec, targeting}, '
        '"contentHash": "<sha-256 hex>", "bundle": "<the bundle JSON, as hashed>", '
        '"sequence": <the control instance\'s audit id>}`. '
        "All of it is applied in one transaction, or nothing is. The definition and targeting "
        "are checked as the control instance checks them.",
        guards=[publish_scope],
        operation_id="applyPublication",
        tags=["execution"],
        request_body_doc=remote.Shipment,
        responses={
            200: ResponseSpec(remote.Applied, description="Applied (changed: false if held)"),
            **_errors(
                e400="Malformed JSON",
                e404="Unknown channel",
                e409="A newer change of the pair is applied here (stale_publication)",
                e413="Body too large",
                e415="Not JSON",
                e422="hash_mismatch, invalid_bundle, wrong_publication, channel_not_allowed or "
                "an invalid field of the definition or targeting (invalid_field, invalid_name, "
                "invalid_schema)",
            ),
        },
    )
    async def apply(
        request: Request[Any, Any, Any], event_type: FromPath[str], channel: FromPath[str]
    ) -> Response[bytes]:
        kind = template_routes.channel_of(channel)
        shipment = intake.decode(await intake.read_body(request), _shipment)
        done = await remote.apply(db, event_type, kind, shipment, actor=who(request))
        if done.changed:
            await app.refresh_routing()
        return ok(done)

    @delete(
        f"{_BASE}/{{event_type:str}}/{{channel:str}}",
        summary="Stop routing a publication: events arriving afterwards end routingFailed",
        guards=[publish_scope],
        operation_id="removePublication",
        tags=["execution"],
        status_code=200,
        responses={
            200: ResponseSpec(remote.Applied, description="Removed (changed: false if none)"),
            **_errors(
                e404="Unknown channel",
                e409="A newer change of the pair is applied here (stale_publication)",
            ),
        },
    )
    async def remove(
        request: Request[Any, Any, Any],
        event_type: FromPath[str],
        channel: FromPath[str],
        sequence: Annotated[int | None, QueryParameter(ge=0)] = None,
    ) -> Response[bytes]:
        done = await remote.remove(
            db,
            event_type,
            template_routes.channel_of(channel),
            actor=who(request),
            sequence=sequence,
        )
        if done.changed:
            await app.refresh_routing()
        return ok(done)

    return Router("/api/v1", route_handlers=[held, apply, remove])
