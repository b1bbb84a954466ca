"""The ASGI application: every HTTP surface of Tidings, bound to one :class:`~tidings.app.App`.

- ``/api/v1/...``: the native API (:mod:`.events`) and operations (:mod:`.admin`),
- ``/{org}/campaign/{transactionalAPI}/...``: Campaign Standard compatibility (:mod:`.adobe`),
- ``/healthz``: the process answers; ``/readyz``, ``/metrics``: readiness and Prometheus
  metrics (:mod:`.ops`),
- ``/api/v1/openapi.json``: the OpenAPI document (:mod:`.openapi`).
- ``/nl/jsp/...``: Campaign Classic SOAP compatibility (:mod:`.soap`), and
  ``/api/v1/templates/import-adobe`` (:mod:`.adobe_templates`).
- ``/api/v1/bounces``: bounces in (raw messages) and their list (:mod:`.bounces`).
- ``/api/v1/callbacks/...``: status-callback subscriptions and their log (:mod:`.callbacks`).
- ``/api/v1/reports/...``: event history, service level, processing time (:mod:`.reports`).
- ``/console``: the web console (:mod:`tidings.console`).
- ``/api/v1/profiles``, ``/api/v1/event-types/{name}/targeting``: profiles, reconciliation
  and enrichment (:mod:`.profiles`).
- ``/api/v1/instances``: the execution instances a control instance publishes to
  (:mod:`.instances`); ``/api/v1/execution/publications``: publications received from a
  control instance (:mod:`.execution`).
"""

from __future__ import annotations

from typing import Any

from litestar import Litestar, Request, Response, get
from litestar.exceptions import HTTPException

from tidings import console, ratelimit
from tidings.api import (
    admin,
    adobe,
    adobe_templates,
    bounces,
    callbacks,
    errors,
    event_types,
    events,
    execution,
    instances,
    openapi,
    ops,
    profiles,
    proofs,
    reports,
    soap,
    templates,
)
from tidings.api.fast import FastIntake
from tidings.app import App
from tidings.control import errors as control_errors
from tidings.store.database import Unavailable


def asgi(app: App) -> FastIntake:
    """What the server runs: the event intake's fast lane in front of :func:`create_app`."""
    return FastIntake(app, create_app(app))


async def refuse_nul(request: Request[Any, Any, Any]) -> None:
    """422 for a NUL character in the URL's path or query: PostgreSQL text cannot hold one
    (the query would fail), so it is refused before any query, on every database alike."""
    if "\x00" in request.scope["path"]:
        raise errors.ApiError(422, "invalid_field", "the URL must not contain NUL characters")
    if b"%00" in request.scope["query_string"]:
        names = [k for k, v in request.query_params.multi_items() if "\x00" in k + v]
        raise errors.ApiError(
            422,
            "invalid_field",
            "query parameters must not contain NUL characters",
            field=names[0] if names else None,
        )


def create_app(app: App) -> Litestar:
    """The Litestar application serving ``app``."""

    @get("/healthz", summary="The process is up", tags=["operations"], include_in_schema=True)
    async def healthz() -> Response[bytes]:
        return Response(b'{"status":"ok"}', media_type=errors.JSON)

    return Litestar(
        route_handlers=[
            healthz,
            ops.router(app),
            events.router(app),
            admin.router(app),
            adobe.router(app),
            soap.router(app),
            adobe_templates.router(app),
            bounces.router(app),
            callbacks.router(app),
            event_types.router(app),
            templates.router(app),
            proofs.router(app),
            reports.router(app),
            console.router(app),
            profiles.router(app),
            instances.router(app),
            execution.router(app),
        ],
        exception_handlers={
            errors.ApiError: errors.handle_api_error,
            control_errors.ControlError: errors.handle_control,
            ratelimit.Limited: errors.handle_rate_limited,
            Unavailable: errors.handle_unavailable,
            HTTPException: errors.handle_http,
            Exception: errors.handle_crash,
        },
        openapi_config=openapi.config(),
        before_request=refuse_nul,
        request_max_body_size=app.settings.max_body_bytes,
        debug=False,
        logging_config=None,
    )
