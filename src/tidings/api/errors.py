"""Errors as every Tidings HTTP surface answers them.

The body is always JSON::

    {"error": {"status": 422, "code": "invalid_email",
               "message": "'x@' is not a valid email address", "field": "$.recipient.email"}}

``code`` is for programs (stable, documented in the README); ``message`` for people; ``field``
(a JSON path) when one field is at fault. Codes by status:

====  ===========================================================================
400   ``malformed_json`` (the body is not JSON, or not an object)
401   ``unauthorized`` (no key, or a key that is unknown or revoked)
403   ``forbidden`` (the key lacks the scope)
400   ``invalid_ctx`` (Campaign Standard route: the ctx does not fit a strict event type)
404   ``not_found``, ``unknown_event_type``, ``unknown_version``, ``unknown_block``,
      ``unknown_profile``, ``not_published``, ``unknown_instance``, ``unknown_proof``
405   ``method_not_allowed``
409   ``duplicate_event_type``, ``event_type_in_use`` (events of the type are queued),
      ``duplicate_instance``, ``stale_publication`` (an execution instance applied a newer
      change of the event type's channel already)
413   ``body_too_large``, ``batch_too_large``
415   ``unsupported_media_type`` (send ``application/json``)
422   ``invalid_field``, ``missing_field``, ``unknown_field``, ``invalid_email``,
      ``invalid_phone``, ``invalid_date``, ``missing_recipient``,
      ``expiration_before_scheduled``, ``idempotency_key_reused``, ``not_a_bounce``,
      ``invalid_url`` (a callback URL that is not http/https, carries credentials or names
      a refused address)
      ``invalid_ctx`` (the ctx does not fit a strict event type's schema),
      ``invalid_name``, ``invalid_schema``, ``invalid_language``, ``wrong_channel``,
      ``channel_not_allowed`` (a template, or an event, for a channel its type does not
      allow), ``no_seed_addresses`` (a proof for a channel without seed addresses),
      ``invalid_version`` (publishing a version that fails validation; ``issues`` lists the
      findings), ``mjml_error``, ``render_error``,
      ``hash_mismatch`` (a publication whose bundle does not hash to its ``contentHash``),
      ``invalid_bundle``, ``wrong_publication`` (a publication for another event type or
      channel than the URL names)
429   ``rate_limited`` (the API key is over its rate limit; retry after ``Retry-After``)
502   ``instance_unreachable`` (an execution instance did not answer as it should)
503   ``unavailable`` (the database cannot be reached; retry after ``Retry-After``),
      ``overloaded`` (ingest is shedding load: the queue is too far behind)
====  ===========================================================================
"""

from __future__ import annotations

import logging
import re
from typing import Any

import msgspec
from litestar import Request, Response
from litestar.exceptions import HTTPException, ValidationException
from litestar.openapi.datastructures import ResponseSpec

from tidings import ratelimit
from tidings.control import errors as control_errors
from tidings.store.database import Unavailable

log = logging.getLogger("tidings.api")
JSON = "application/json"


class ErrorBody(msgspec.Struct, omit_defaults=True):
    """The inside of an error answer."""

    status: int
    code: str
    message: str
    field: str | None = None
    #: Validation findings, when a template version was refused.
    issues: list[Any] | None = None


class ErrorResponse(msgspec.Struct):
    """An error answer."""

    error: ErrorBody


class ApiError(Exception):
    """An error to answer with; raise it from any handler."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        *,
        field: str | None = None,
        headers: dict[str, str] | None = None,
        issues: list[Any] | None = None,
    ):
        super().__init__(message)
        self.body = ErrorBody(status, code, message, field, issues)
        self.headers = headers or {}


_encode = msgspec.json.Encoder().encode


def error_body(error: ErrorBody) -> bytes:
    """The JSON of an error answer."""
    return _encode(ErrorResponse(error))


def respond(error: ApiError) -> Response[bytes]:
    """The response for an :class:`ApiError`."""
    return Response(
        error_body(error.body),
        status_code=error.body.status,
        media_type=JSON,
        headers=error.headers,
    )


# msgspec reports "Expected `int`, got `str` - at `$.priority`" or "Object missing required
# field `type`" (optionally "- at `$.recipient`"). We keep its words and lift the path.
_AT = re.compile(r" - at `(\$[^`]*)`$")
_MISSING = re.compile(r"missing required field `([^`]+)`")
_UNKNOWN = re.compile(r"unknown field `([^`]+)`")


def from_validation(exc: msgspec.ValidationError, prefix: str = "$") -> ApiError:
    """A 422 naming the field a msgspec validation error is about."""
    text = str(exc)
    path = prefix
    at = _AT.search(text)
    if at:
        text = text[: at.start()]
        path = prefix + at.group(1)[1:]
    code = "invalid_field"
    if m := _MISSING.search(text):
        code, path = "missing_field", f"{path}.{m.group(1)}"
        text = f"missing required field {m.group(1)!r}"
    elif m := _UNKNOWN.search(text):
        code, path = "unknown_field", f"{path}.{m.group(1)}"
        text = f"unknown field {m.group(1)!r}"
    return ApiError(422, code, text, field=path)


def handle_api_error(_: Request[Any, Any, Any], exc: ApiError) -> Response[bytes]:
    """Litestar exception handler for :class:`ApiError`."""
    return respond(exc)


def unavailable(exc: Unavailable) -> ApiError:
    """The database is down: nothing was acknowledged, the client should retry."""
    log.warning("answering 503: %s", exc)
    return ApiError(
        503, "unavailable", "the database is unavailable; retry later", headers={"Retry-After": "5"}
    )


def rate_limited(exc: ratelimit.Limited) -> ApiError:
    """A key over its rate limit (every surface answers it so): 429 with ``Retry-After``."""
    return ApiError(
        429,
        "rate_limited",
        "this API key is over its rate limit; retry later",
        headers={"Retry-After": exc.retry_after_header},
    )


def handle_rate_limited(_: Request[Any, Any, Any], exc: ratelimit.Limited) -> Response[bytes]:
    """Litestar exception handler for :class:`ratelimit.Limited`."""
    return respond(rate_limited(exc))


def crashed(exc: Exception) -> ApiError:
    """Anything unexpected: logged, answered 500 without internals."""
    log.exception("unhandled error", exc_info=exc)
    return ApiError(500, "internal_error", "internal error; see the server log")


def handle_unavailable(_: Request[Any, Any, Any], exc: Unavailable) -> Response[bytes]:
    """Litestar exception handler for :class:`Unavailable`."""
    return respond(unavailable(exc))


_HTTP_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    413: "body_too_large",
    415: "unsupported_media_type",
    429: "rate_limited",
}


def handle_http(_: Request[Any, Any, Any], exc: HTTPException) -> Response[bytes]:
    """Litestar's own HTTP errors (404 for unknown routes, 405, 413, parameter validation)
    in our format."""
    if isinstance(exc, ValidationException):
        # A query or path parameter that does not fit its declared type.
        extra = exc.extra[0] if isinstance(exc.extra, list) and exc.extra else {}
        field = extra.get("key") if isinstance(extra, dict) else None
        message = extra.get("message") if isinstance(extra, dict) else None
        return respond(
            ApiError(
                422,
                "invalid_field",
                str(message or exc.detail),
                field=str(field) if field else None,
            )
        )
    status = exc.status_code
    message = exc.detail if isinstance(exc.detail, str) and exc.detail else "request failed"
    if status == 413:
        message = "the request body is too large"
    return respond(
        ApiError(status, _HTTP_CODES.get(status, "error"), message, headers=exc.headers or None)
    )


def handle_crash(_: Request[Any, Any, Any], exc: Exception) -> Response[bytes]:
    """Litestar exception handler for anything unexpected."""
    return respond(crashed(exc))


def from_control(exc: control_errors.ControlError) -> ApiError:
    """The answer for a control operation refused (404, 409 or 422, with its code)."""
    issues = exc.issues if isinstance(exc, control_errors.Invalid) and exc.issues else None
    return ApiError(exc.status, exc.code, exc.message, field=exc.field, issues=issues)


def handle_control(_: Request[Any, Any, Any], exc: control_errors.ControlError) -> Response[bytes]:
    """Litestar exception handler for :class:`tidings.control.errors.ControlError`."""
    return respond(from_control(exc))


def documented(texts: dict[int, str], *, scope: str = "") -> dict[int, ResponseSpec]:
    """The OpenAPI entries of a route's error answers, from a description per status (with
    ``scope``, the 401 and 403 of a route guarded by an API key scope too)."""
    if scope:
        texts = {
            401: "Missing, unknown or revoked API key",
            403: f"The API key lacks the {scope} scope",
            **texts,
        }
    return {
        code: ResponseSpec(ErrorResponse, description=text) for code, text in sorted(texts.items())
    }


def ok(value: object, status: int = 200) -> Response[bytes]:
    """A JSON answer (``value`` encoded by msgspec)."""
    return Response(_encode(value), status_code=status, media_type=JSON)
