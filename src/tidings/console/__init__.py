"""The web console at ``/console``: server-rendered pages (Jinja2, HTMX), for operators.

- sign-in (:mod:`.signin`), sessions, roles, CSRF and login throttling (:mod:`.auth`),
- the dashboard, reports and this instance's health (:mod:`.monitor`),
- the events explorer and the outbox (:mod:`.explorer`),
- event types and their test profiles (:mod:`.designer`), the template editor
  (:mod:`.editor`) and content blocks (:mod:`.blocks`),
- quarantine, API keys and operators (:mod:`.manage`),
- the layout, headers and filters every page shares (:mod:`.frame`), and
- ``static/``: the console's CSS and script, and the browser libraries vendored from the npm
  registry (``static/vendor``, re-vendored by ``scripts/vendor-console-assets``).

The pages call the same functions as the HTTP API and the CLI; none holds logic of its own.
"""

from __future__ import annotations

import logging
import urllib.parse
from pathlib import Path
from typing import Any

from litestar import Request, Response, Router, get
from litestar.datastructures import CacheControlHeader
from litestar.exceptions import HTTPException
from litestar.params import FromPath
from litestar.static_files import create_static_files_router

from tidings.app import App
from tidings.console import (
    auth,
    blocks,
    designer,
    editor,
    explorer,
    frame,
    manage,
    monitor,
    proofing,
    registry,
    signin,
)
from tidings.store.database import Unavailable

STATIC = Path(__file__).parent / "static"
log = logging.getLogger("tidings.console")


def refused(request: Request[Any, Any, Any], exc: auth.ConsoleRefusal) -> Response[str]:
    """The answer to a refused console request (see :mod:`.auth`)."""
    if isinstance(exc, auth.SignInRequired):
        wanted = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        target = f"{auth.PATH}/login?next={urllib.parse.quote(wanted, safe='/')}"
        if request.headers.get("hx-request"):
            return Response("", status_code=200, headers={"HX-Redirect": target})
        return Response("", status_code=303, headers={"Location": target, **frame.HEADERS})
    headers = {"Retry-After": str(exc.retry_after)} if isinstance(exc, auth.Throttled) else None
    title = {403: "Not allowed", 429: "Slow down"}.get(exc.status, "Refused")
    return frame.page(
        request, "error.html", status=exc.status, title=title, message=exc.message, headers=headers
    )


def http_error(request: Request[Any, Any, Any], exc: HTTPException) -> Response[str]:
    """Litestar's own errors (a bad path parameter, 405...) as a console page."""
    return frame.page(
        request,
        "error.html",
        status=exc.status_code,
        title="Something is not right",
        message=exc.detail if isinstance(exc.detail, str) else "the request failed",
    )


def unavailable(request: Request[Any, Any, Any], exc: Unavailable) -> Response[str]:
    """The database does not answer: 503, try again shortly."""
    log.warning("console answering 503: %s", exc)
    return frame.page(
        request,
        "error.html",
        status=503,
        title="Database unavailable",
        message="The database does not answer right now; try again in a few seconds.",
        headers={"Retry-After": "5"},
    )


def crashed(request: Request[Any, Any, Any], exc: Exception) -> Response[str]:
    """Anything unexpected: logged, answered with a 500 page that shows no internals."""
    log.exception("console page failed", exc_info=exc)
    try:
        return frame.page(
            request,
            "error.html",
            status=500,
            title="Something went wrong",
            message="This page failed; the server log says why.",
        )
    except Exception:  # the error page itself cannot be drawn
        return Response("internal error; see the server log", status_code=500)


def router(app: App) -> Router:
    """Every console route, bound to ``app``, under ``/console``."""
    throttle = auth.LoginThrottle(
        app.settings.console_login_attempts, app.settings.console_login_window
    )

    @get("/{path:path}", include_in_schema=False)
    async def unknown(request: Request[Any, Any, Any], path: FromPath[str]) -> Response[str]:
        await auth.load_session(app.db, request)  # signed in: the page inside the frame
        return frame.page(
            request,
            "error.html",
            status=404,
            title="Page not found",
            message=f"There is no console page at {request.url.path}.",
        )

    static = create_static_files_router(
        path="/static",
        directories=[STATIC],
        include_in_schema=False,
        cache_control=CacheControlHeader(max_age=3600),
    )
    return Router(
        auth.PATH,
        route_handlers=[
            static,
            *signin.handlers(app, throttle),
            *monitor.handlers(app),
            *explorer.handlers(app),
            *manage.handlers(app),
            *designer.handlers(app),
            *editor.handlers(app),
            *blocks.handlers(app),
            *registry.handlers(app),
            *proofing.handlers(app),
            unknown,
        ],
        exception_handlers={
            auth.ConsoleRefusal: refused,
            HTTPException: http_error,
            Unavailable: unavailable,
            Exception: crashed,
        },
    )
