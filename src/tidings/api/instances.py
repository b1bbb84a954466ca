"""Execution instances over the admin API: the registry a control instance publishes to
(add, list, show with the latest deliveries, remove) and ``sync``, which catches a lagging
instance up. Every route needs the ``admin`` scope.
"""

from __future__ import annotations

from typing import Any

import msgspec
from litestar import Request, Response, Router, delete, get, post
from litestar.openapi.datastructures import ResponseSpec
from litestar.params import FromPath

from tidings.api import auth, intake
from tidings.api.errors import documented, ok
from tidings.app import App
from tidings.control import distribution, instances, publishing

_new = msgspec.json.Decoder(instances.NewInstance)


def _errors(**extra: str) -> dict[int, ResponseSpec]:
    return documented({int(k[1:]): v for k, v in extra.items()}, scope="admin")


def router(app: App) -> Router:
    """The routes, bound to ``app``."""
    admin_scope = auth.require("admin", app.authenticate)
    db = app.db

    @post(
        "/instances",
        summary="Register an execution instance to publish to",
        description='Body: `{"name": "paris", "baseUrl": "https://exec.example.com", '
        '"credential": "tid_..."}`; the credential is an API key of that instance with the '
        "`publish` scope. Publications made afterwards are delivered to it; `sync` sends it "
        "what is published already.",
        guards=[admin_scope],
        operation_id="addInstance",
        tags=["instances"],
        status_code=201,
        request_body_doc=instances.NewInstance,
        responses={
            201: ResponseSpec(instances.Instance, description="Registered"),
            **_errors(
                e400="Malformed JSON",
                e409="An instance of that name exists (duplicate_instance)",
                e413="Body too large",
                e415="Not JSON",
                e422="Invalid name, URL or credential (the error names the field)",
            ),
        },
    )
    async def add(request: Request[Any, Any, Any]) -> Response[bytes]:
        new = intake.decode(await intake.read_body(request), _new)
        return ok(await instances.add(db, new, allow_http=app.settings.instance_allow_http), 201)

    @get(
        "/instances",
        summary="Registered execution instances with their last outcome",
        guards=[admin_scope],
        operation_id="listInstances",
        tags=["instances"],
        responses={200: ResponseSpec(list[instances.Instance], description="Them"), **_errors()},
    )
    async def list_all() -> Response[bytes]:
        return ok(await instances.list_all(db))

    @get(
        "/instances/{name:str}",
        summary="An execution instance and its latest deliveries",
        guards=[admin_scope],
        operation_id="getInstance",
        tags=["instances"],
        responses={
            200: ResponseSpec(instances.InstanceDetail, description="It"),
            **_errors(e404="No such instance (unknown_instance)"),
        },
    )
    async def read(name: FromPath[str]) -> Response[bytes]:
        return ok(await instances.get(db, name))

    @delete(
        "/instances/{name:str}",
        summary="Stop publishing to an execution instance (it keeps what it holds)",
        guards=[admin_scope],
        operation_id="removeInstance",
        tags=["instances"],
        status_code=204,
        responses=_errors(e404="No such instance (unknown_instance)"),
    )
    async def remove(name: FromPath[str]) -> None:
        await instances.remove(db, name)

    @post(
        "/instances/{name:str}/sync",
        summary="Send an execution instance every publication it lacks",
        description="Reads what the instance holds, sends each publication routed here that "
        "it lacks or holds another version of, and each unpublication it missed; answers one "
        "result per publication sent (an empty list: it was up to date).",
        guards=[admin_scope],
        operation_id="syncInstance",
        tags=["instances"],
        status_code=200,
        responses={
            200: ResponseSpec(list[publishing.Delivered], description="Results"),
            **_errors(
                e404="No such instance (unknown_instance)",
                e502="The instance cannot be read (instance_unreachable)",
            ),
        },
    )
    async def sync(name: FromPath[str]) -> Response[bytes]:
        return ok(await distribution.sync(db, app.settings, name))

    return Router("/api/v1", route_handlers=[add, list_all, read, remove, sync])
