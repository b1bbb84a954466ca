"""API keys on requests: ``Authorization: Bearer <key>`` or ``X-Api-Key: <key>``.

Campaign Standard clients send both headers (an Adobe IMS token and an API key); either one
holding a valid Tidings key is enough. Guards put the key on ``request.scope["auth"]``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from litestar.connection import ASGIConnection
from litestar.handlers.base import BaseRouteHandler

from tidings import model
from tidings.api.errors import ApiError

Guard = Callable[[ASGIConnection[Any, Any, Any, Any], BaseRouteHandler], Awaitable[None]]


def presented_keys(connection: ASGIConnection[Any, Any, Any, Any]) -> list[str]:
    """The keys a request carries, in the order to try them."""
    return keys_in(
        connection.headers.get("authorization", ""), connection.headers.get("x-api-key", "")
    )


def keys_in(authorization: str, x_api_key: str) -> list[str]:
    """The keys in an ``Authorization`` and an ``X-Api-Key`` header value, in that order."""
    found = []
    scheme, _, value = authorization.partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        found.append(value.strip())
    if x_api_key.strip():
        found.append(x_api_key.strip())
    return found


async def authorize(
    presented: list[str],
    scope: str,
    authenticate: Callable[[str], Awaitable[model.ApiKey | None]],
) -> model.ApiKey:
    """The first valid key among ``presented``; 401 if none is valid, 403 if it lacks
    ``scope`` (``admin`` holds every scope)."""
    if not presented:
        raise ApiError(
            401,
            "unauthorized",
            "send an API key: Authorization: Bearer <key>",
            headers={"WWW-Authenticate": 'Bearer realm="tidings"'},
        )
    for candidate in presented:
        key = await authenticate(candidate)
        if key is None:
            continue
        if scope not in key.scopes and "admin" not in key.scopes:
            raise ApiError(403, "forbidden", f"this API key lacks the {scope!r} scope")
        return key
    raise ApiError(
        401,
        "unauthorized",
        "the API key is unknown or revoked",
        headers={"WWW-Authenticate": 'Bearer realm="tidings", error="invalid_token"'},
    )


def require(scope: str, authenticate: Callable[[str], Awaitable[model.ApiKey | None]]) -> Guard:
    """A guard letting through requests with a valid key holding ``scope`` (or ``admin``)."""

    async def guard(connection: ASGIConnection[Any, Any, Any, Any], _: BaseRouteHandler) -> None:
        connection.scope["auth"] = await authorize(presented_keys(connection), scope, authenticate)

    return guard


def current_key(connection: ASGIConnection[Any, Any, Any, Any]) -> model.ApiKey:
    """The key a guard accepted for this request."""
    key = connection.scope.get("auth")
    assert isinstance(key, model.ApiKey)
    return key
