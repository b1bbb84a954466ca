"""Status-callback routes (admin scope): subscriptions and the callback log.

- ``POST /api/v1/callbacks/subscriptions``: subscribe a URL (201; the secret is shown once),
- ``GET /api/v1/callbacks/subscriptions``: the active subscriptions (no secrets),
- ``DELETE /api/v1/callbacks/subscriptions/{id}``: remove one (204, or 404),
- ``GET /api/v1/callbacks/log``: callbacks with their attempts, newest first, filtered by
  ``subscription``, ``event`` and ``state``, paged with ``cursor``.
"""

from __future__ import annotations

from typing import Annotated, Any

import msgspec
from litestar import Request, Response, Router, delete, get, post
from litestar.openapi.datastructures import ResponseSpec
from litestar.params import FromPath, QueryParameter

from tidings import clock, ids, model, subscriptions
from tidings.api import auth, intake
from tidings.api.errors import ApiError, ErrorResponse, ok
from tidings.app import App

_encode = msgspec.json.Encoder().encode


class SubscriptionIn(msgspec.Struct, forbid_unknown_fields=True):
    """A subscription to create. Without ``secret``, one is generated. ``kinds``: ``status``
    (each event's final status), ``receipt`` (each delivery receipt) or both (the default);
    empty filters match every event type, every final status and every receipt state
    (``delivered``, ``undeliverable``, ``expired``, ``rejected``, ``deleted``, ``accepted``,
    ``enroute``, ``unknown``)."""

    url: str
    secret: str | None = None
    eventTypes: list[str] = msgspec.field(default_factory=list)
    statuses: list[str] = msgspec.field(default_factory=list)
    kinds: list[str] = msgspec.field(default_factory=lambda: ["receipt", "status"])
    receipts: list[str] = msgspec.field(default_factory=list)


class SubscriptionOut(msgspec.Struct, omit_defaults=True):
    """A subscription; ``secret`` appears only in the answer that created it."""

    id: int
    url: str
    eventTypes: list[str]
    statuses: list[str]
    kinds: list[str]
    receipts: list[str]
    active: bool
    createdAt: str
    secret: str | None = None


class AttemptOut(msgspec.Struct):
    """One attempt to send a callback."""

    attempt: int
    outcome: str
    reply: str
    durationMs: float
    at: str


class CallbackOut(msgspec.Struct):
    """A callback in the log: what was (or will be) POSTed, where it stands, its attempts."""

    id: int
    subscriptionId: int
    eventId: str
    kind: str
    state: str
    attempts: int
    nextAt: str | None
    lastReply: str
    createdAt: str
    deliveredAt: str | None
    payload: dict[str, Any]
    log: list[AttemptOut]


class CallbackPage(msgspec.Struct):
    """Callbacks, newest first; ``next`` is the ``cursor`` of the following page."""

    items: list[CallbackOut]
    next: str | None


def _subscription_out(s: model.CallbackSubscription, *, secret: bool = False) -> SubscriptionOut:
    return SubscriptionOut(
        id=s.id,
        url=s.url,
        eventTypes=list(s.event_types),
        statuses=list(s.statuses),
        kinds=list(s.kinds),
        receipts=list(s.receipt_states),
        active=s.active,
        createdAt=clock.format_iso(s.created_at),
        secret=s.secret if secret else None,
    )


def _callback_out(c: model.Callback, tries: list[model.CallbackAttempt]) -> CallbackOut:
    return CallbackOut(
        id=c.id,
        subscriptionId=c.subscription_id,
        eventId=str(c.event_id),
        kind=c.kind,
        state=str(c.state),
        attempts=c.attempts,
        nextAt=clock.format_iso(c.next_at) if c.state is model.CallbackState.PENDING else None,
        lastReply=c.last_reply,
        createdAt=clock.format_iso(c.created_at),
        deliveredAt=None if c.delivered_at is None else clock.format_iso(c.delivered_at),
        payload=msgspec.json.decode(c.payload),
        log=[
            AttemptOut(
                a.attempt,
                str(a.outcome),
                a.reply,
                a.duration_us / 1000,
                clock.format_iso(a.created_at),
            )
            for a in tries
        ],
    )


def _no_nul(payload: SubscriptionIn) -> None:
    texts = [
        payload.url,
        payload.secret or "",
        *payload.eventTypes,
        *payload.statuses,
        *payload.kinds,
        *payload.receipts,
    ]
    if any("\x00" in t for t in texts):
        raise ApiError(422, "invalid_field", "fields must not contain NUL characters")


def router(app: App) -> Router:
    """The routes, bound to ``app``."""
    admin_scope = auth.require("admin", app.authenticate)
    db = app.db
    decoder = msgspec.json.Decoder(SubscriptionIn)
    tags = ["status callbacks"]

    @post(
        "/subscriptions",
        summary="Subscribe a URL to status callbacks (the secret is shown once)",
        guards=[admin_scope],
        operation_id="createCallbackSubscription",
        tags=tags,
        status_code=201,
        request_body_doc=SubscriptionIn,
        responses={
            201: ResponseSpec(SubscriptionOut, description="Subscribed"),
            400: ResponseSpec(ErrorResponse, description="The body is not a JSON object"),
            415: ResponseSpec(ErrorResponse, description="Not application/json"),
            422: ResponseSpec(
                ErrorResponse,
                description="`invalid_url` (not http/https, credentials, a refused address), "
                "`invalid_field`, `missing_field` or `unknown_field`",
            ),
        },
    )
    async def create(request: Request[Any, Any, Any]) -> Response[bytes]:
        payload = intake.decode(await intake.read_body(request), decoder)
        _no_nul(payload)
        try:
            created = await subscriptions.subscribe(
                db,
                payload.url,
                policy=app.webhook.policy,
                secret=payload.secret,
                event_types=payload.eventTypes,
                statuses=payload.statuses,
                kinds=payload.kinds,
                receipts=payload.receipts,
            )
        except subscriptions.InvalidSubscription as exc:
            code = "invalid_url" if exc.field == "url" else "invalid_field"
            raise ApiError(422, code, str(exc), field=f"$.{exc.field}") from None
        return ok(_subscription_out(created, secret=True), 201)

    @get(
        "/subscriptions",
        summary="Active status-callback subscriptions",
        guards=[admin_scope],
        operation_id="listCallbackSubscriptions",
        tags=tags,
        responses={200: ResponseSpec(list[SubscriptionOut], description="Subscriptions")},
    )
    async def list_all() -> Response[bytes]:
        return ok([_subscription_out(s) for s in await subscriptions.active(db)])

    @delete(
        "/subscriptions/{sub_id:int}",
        summary="Remove a subscription (its pending callbacks are given up)",
        guards=[admin_scope],
        operation_id="removeCallbackSubscription",
        tags=tags,
        status_code=204,
        responses={404: ResponseSpec(ErrorResponse, description="No such active subscription")},
    )
    async def remove(sub_id: FromPath[int]) -> None:
        if not await subscriptions.unsubscribe(db, sub_id):
            raise ApiError(404, "not_found", f"no active subscription {sub_id}")

    @get(
        "/log",
        summary="Status callbacks and their attempts, newest first",
        guards=[admin_scope],
        operation_id="listCallbackLog",
        tags=tags,
        responses={
            200: ResponseSpec(CallbackPage, description="A page of callbacks"),
            422: ResponseSpec(ErrorResponse, description="A filter has no valid value"),
        },
    )
    async def callback_log(
        subscription: Annotated[int | None, QueryParameter(ge=1)] = None,
        event: Annotated[str | None, QueryParameter(description="An event id")] = None,
        wanted: Annotated[
            str | None, QueryParameter(name="state", description="pending, delivered or failed")
        ] = None,
        limit: Annotated[int, QueryParameter(ge=1, le=500)] = 50,
        cursor: Annotated[int | None, QueryParameter(ge=1)] = None,
    ) -> Response[bytes]:
        event_id = None
        if event is not None:
            event_id = ids.parse(event)
            if event_id is None:
                raise ApiError(422, "invalid_field", f"{event!r} is not an event id", field="event")
        kind = None
        if wanted is not None:
            try:
                kind = model.CallbackState(wanted)
            except ValueError:
                raise ApiError(
                    422,
                    "invalid_field",
                    "state must be pending, delivered or failed",
                    field="state",
                ) from None
        page, tries, following = await subscriptions.log(
            db,
            subscription_id=subscription,
            event_id=event_id,
            state=kind,
            before_id=cursor,
            limit=limit,
        )
        return ok(
            CallbackPage(
                [_callback_out(c, tries.get(c.id, [])) for c in page],
                None if following is None else str(following),
            )
        )

    return Router("/api/v1/callbacks", route_handlers=[create, list_all, remove, callback_log])
