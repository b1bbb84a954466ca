"""Signing in and out of the console."""

from __future__ import annotations

import secrets
from typing import Any

from litestar import Request, Response, get, post
from litestar.datastructures import Cookie
from litestar.handlers import HTTPRouteHandler
from litestar.response import Redirect

from tidings import operators
from tidings.app import App
from tidings.console import auth, frame

_LOGIN_COOKIE_AGE = 3600


def safe_next(target: str | None) -> str:
    """Where to go after signing in: a console path, never another site."""
    if (
        target
        and target.startswith(auth.PATH + "/")
        and not target.startswith("//")
        and "\\" not in target
        and not target.startswith(auth.PATH + "/login")
    ):
        return target
    return auth.PATH + "/"


def _client(request: Request[Any, Any, Any]) -> str:
    return request.client.host if request.client else "unknown"


def handlers(app: App, throttle: auth.LoginThrottle) -> list[HTTPRouteHandler]:
    """The sign-in routes for ``app``."""
    db = app.db
    settings = app.settings

    def form(
        request: Request[Any, Any, Any],
        *,
        status: int = 200,
        error: str = "",
        name: str = "",
        headers: dict[str, str] | None = None,
    ) -> Response[str]:
        token = secrets.token_urlsafe(32)
        response = frame.page(
            request,
            "login.html",
            status=status,
            csrf=token,
            error=error,
            name=name,
            next=safe_next(request.query_params.get("next")),
            headers=headers,
        )
        response.set_cookie(
            auth.LOGIN_COOKIE,
            token,
            max_age=_LOGIN_COOKIE_AGE,
            path=auth.PATH,
            httponly=True,
            samesite="strict",
            secure=auth.secure(request, settings.public_url),
        )
        return response

    @get("/login", include_in_schema=False)
    async def login_form(request: Request[Any, Any, Any]) -> Response[Any]:
        if await auth.load_session(db, request) is not None:
            return Redirect(safe_next(request.query_params.get("next")), status_code=303)
        return form(request)

    @post("/login", include_in_schema=False, status_code=303)
    async def login(request: Request[Any, Any, Any]) -> Response[Any]:
        data = dict((await request.form()).items())
        name = str(data.get("name", "")).strip()[:200]
        password = str(data.get("password", ""))
        client = f"ip:{_client(request)}"
        try:
            throttle.check(client, f"name:{name.lower()}")
        except auth.Throttled as exc:
            return form(
                request,
                status=429,
                error=exc.message,
                name=name,
                headers={"Retry-After": str(exc.retry_after)},
            )
        if not auth.same(
            str(data.get(auth.CSRF_FIELD, "")), request.cookies.get(auth.LOGIN_COOKIE, "")
        ):
            return form(
                request,
                status=403,
                error="this sign-in form has expired; please try again",
                name=name,
            )
        operator = await operators.authenticate(db, name, password) if name else None
        if operator is None:
            throttle.fail(client, f"name:{name.lower()}")
            return form(request, status=401, error="wrong name or password", name=name)
        throttle.forget(f"name:{name.lower()}")
        token, _ = await operators.open_session(db, operator, settings.console_session_ttl)
        secure = auth.secure(request, settings.public_url)
        return Redirect(
            safe_next(str(data.get("next", ""))),
            status_code=303,
            cookies=[
                Cookie(
                    key=auth.SESSION_COOKIE,
                    value=token,
                    max_age=int(settings.console_session_ttl),
                    path=auth.PATH,
                    httponly=True,
                    samesite="lax",
                    secure=secure,
                ),
                Cookie(key=auth.LOGIN_COOKIE, value="", max_age=0, path=auth.PATH, httponly=True),
            ],
        )

    @post("/logout", include_in_schema=False, status_code=303, guards=[auth.require(db)])
    async def logout(request: Request[Any, Any, Any]) -> Response[Any]:
        await operators.close_session(db, request.cookies.get(auth.SESSION_COOKIE, ""))
        return Redirect(
            auth.PATH + "/login",
            status_code=303,
            cookies=[
                Cookie(key=auth.SESSION_COOKIE, value="", max_age=0, path=auth.PATH, httponly=True)
            ],
        )

    return [login_form, login, logout]
