"""What every event-submitting route shares: reading the body, and committing with an
optional ``Idempotency-Key``.

A request carrying ``Idempotency-Key: <text>`` (per API key, remembered ``idempotency_ttl``
seconds) that repeats an earlier one with the same body gets the earlier answer, byte for
byte, and stores nothing; with a different body it gets a 422 ``idempotency_key_reused``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import msgspec
from litestar import Request, Response
from litestar.openapi.datastructures import ResponseSpec

from tidings import ingest
from tidings.api import auth
from tidings.api.errors import JSON, ApiError, ErrorResponse, from_validation
from tidings.app import App
from tidings.store import events as events_store

T = TypeVar("T")

#: What the OpenAPI document says every event-submitting route can answer besides success.
INTAKE_ERRORS = {
    code: ResponseSpec(ErrorResponse, description=text)
    for code, text in {
        400: "Malformed JSON",
        401: "Missing, unknown or revoked API key",
        403: "The API key lacks the scope",
        413: "Body (or batch) too large",
        415: "Not JSON",
        422: "Invalid field (the error names it)",
        503: "Database unavailable; retry after Retry-After",
    }.items()
}
_JSON_TYPES = ("application/json", "text/json")


async def read_body(request: Request[Any, Any, Any]) -> bytes:
    """The request body, after checking its media type (415) and size (413)."""
    check_media_type(request.headers.get("content-type", ""))
    return await request.body()


def check_media_type(content_type: str) -> None:
    """415 unless ``content_type`` is JSON."""
    media_type = content_type.partition(";")[0].strip().lower()
    if media_type not in _JSON_TYPES and not media_type.endswith("+json"):
        raise ApiError(
            415,
            "unsupported_media_type",
            "send JSON with Content-Type: application/json;charset=utf-8",
        )


_any_json = msgspec.json.Decoder()


def decode(body: bytes, decoder: msgspec.json.Decoder[T]) -> T:
    """Decode a JSON body: 400 if it is not JSON (or not an object), 422 naming the field if
    it does not fit."""
    try:
        return decode_item(body, decoder)
    except msgspec.ValidationError as exc:
        # msgspec validates while it parses: make sure the body is a JSON object at all
        # before blaming a field (``{"x": 1} trailing`` is malformed, ``[]`` not an object).
        try:
            is_object = isinstance(decode_item(body, _any_json), dict)
        except msgspec.ValidationError:  # JSON, with a number no type holds (1e400)
            is_object = body.lstrip()[:1] == b"{"
        if not is_object:
            raise ApiError(400, "malformed_json", "the body must be a JSON object") from None
        raise from_validation(exc) from None


def decode_item(raw: bytes | msgspec.Raw, decoder: msgspec.json.Decoder[T]) -> T:
    """Decode JSON text, answering 400 for text that is not JSON; a value that does not fit
    raises :class:`msgspec.ValidationError` for the caller to report."""
    try:
        return decoder.decode(raw)
    except msgspec.ValidationError:
        raise
    except msgspec.DecodeError as exc:
        raise ApiError(400, "malformed_json", f"the body is not valid JSON: {exc}") from None
    except UnicodeDecodeError:
        # msgspec raises this (not DecodeError) for a string that is not UTF-8.
        raise ApiError(400, "malformed_json", "the body is not valid UTF-8") from None
    except RecursionError:
        raise ApiError(400, "malformed_json", "the body is nested too deeply") from None


def invalid(exc: ingest.InvalidEvent, status: int = 422) -> ApiError:
    """The API error for an event ingest refused."""
    return ApiError(status, exc.code, exc.message, field=exc.field)


class Prepared(msgspec.Struct, frozen=True):
    """Validated events to write, and the answer to give once they are committed."""

    events: Sequence[events_store.NewEvent]
    status: int
    body: bytes
    headers: dict[str, str] = {}

    def response(self) -> Response[bytes]:
        """The answer."""
        return Response(
            self.body, status_code=self.status, media_type=JSON, headers=self.headers or None
        )


async def commit(
    request: Request[Any, Any, Any],
    app: App,
    body: bytes,
    build: Callable[[], Prepared],
) -> Response[bytes]:
    """Run ``build`` (validate; say what to write and what to answer), commit the events,
    and answer; honouring ``Idempotency-Key``."""
    idem = request.headers.get("idempotency-key")
    if idem is None:
        prepared = build()
        await app.ingest.commit(prepared.events)
        return prepared.response()
    if not 0 < len(idem) <= 255:
        raise ApiError(
            422,
            "invalid_field",
            "Idempotency-Key must be 1-255 characters",
            field="Idempotency-Key",
        )
    key = auth.current_key(request)
    ttl = int(app.settings.idempotency_ttl * 1_000_000)
    digest = hashlib.sha256(request.url.path.encode() + b"\n" + body).hexdigest()
    stored = await app.ingest.find_keyed(key.id, idem, ttl)
    if stored is None:
        prepared = build()
        stored = await app.ingest.commit_keyed(
            prepared.events,
            api_key_id=key.id,
            key=idem,
            request_hash=digest,
            status_code=prepared.status,
            body=prepared.body.decode(),
            ttl_us=ttl,
        )
        if stored is None:
            return prepared.response()
    stored_hash, stored_status, stored_body = stored
    if stored_hash != digest:
        raise ApiError(
            422,
            "idempotency_key_reused",
            "this Idempotency-Key was used for a different request body",
            field="Idempotency-Key",
        )
    return Response(
        stored_body.encode(),
        status_code=stored_status,
        media_type=JSON,
        headers={"Idempotent-Replayed": "true"},
    )
