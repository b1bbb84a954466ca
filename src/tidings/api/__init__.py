"""The ASGI application: every HTTP surface of Tidings, bound to one :class:`~tidings.app.App`.

- ``/api/v1/...``: the native API (:mod:`.events`) and operations (:mod:`.admin`),
- ``/{org}/campaign/{transactionalAPI}/...``: Campaign Standard compatibility (:mod:`.adobe`),
- ``/healthz``: the process answers,
- ``/api/v1/openapi.json``: the OpenAPI document (:mod:`.openapi`).
"""

from __future__ import annotations

from litestar import Litestar, Response, get
from litestar.exceptions import HTTPException

from tidings.api import admin, adobe, errors, events, openapi
from tidings.app import App
from tidings.store.database import Unavailable


def create_app(app: App) -> Litestar:
    """The Litestar application serving ``app``."""

    @get("/healthz", summary="The process is up", tags=["operations"], include_in_schema=True)
    async def healthz() -> Response[bytes]:
        return Response(b'{"status":"ok"}', media_type=errors.JSON)

    return Litestar(
        route_handlers=[
            healthz,
            events.router(app),
            admin.router(app),
            adobe.router(app),
        ],
        exception_handlers={
            errors.ApiError: errors.handle_api_error,
            Unavailable: errors.handle_unavailable,
            HTTPException: errors.handle_http,
            Exception: errors.handle_crash,
        },
        openapi_config=openapi.config(),
        request_max_body_size=app.settings.max_body_bytes,
        debug=False,
        logging_config=None,
    )
