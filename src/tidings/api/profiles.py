"""Profile and targeting routes (admin scope): upsert, look up, list, delete (with erasure)
and bulk import of profiles; an event type's reconciliation and enrichment settings.

Import (``POST /api/v1/profiles/import``) reads the body as a stream: NDJSON
(``Content-Type: application/x-ndjson``) or CSV (``text/csv``), written in batches of 1,000
profiles per transaction. Bad lines are reported by number (the first 100 listed, all
counted) and do not stop the rest; the answer is ``200`` with ``imported`` and ``failed``.
"""

from __future__ import annotations

from typing import Annotated, Any

import msgspec
from litestar import Request, Response, Router, delete, get, post, put
from litestar.openapi.datastructures import ResponseSpec
from litestar.params import FromPath, FromQuery, QueryParameter

from tidings import clock, model, profiles, targeting
from tidings.api import auth, intake
from tidings.api.errors import ApiError, ErrorResponse, ok
from tidings.app import App

_encode = msgspec.json.Encoder().encode
_profile_in = msgspec.json.Decoder(profiles.ProfileIn)
_targeting_in = msgspec.json.Decoder(targeting.TargetingIn)
_FORMATS = {
    "application/x-ndjson": profiles.Format.JSON,
    "application/ndjson": profiles.Format.JSON,
    "application/jsonl": profiles.Format.JSON,
    "text/csv": profiles.Format.CSV,
}


class ProfileOut(msgspec.Struct):
    """A stored profile."""

    externalId: str
    email: str | None
    mobilePhone: str | None
    pushTokens: list[str]
    language: str | None
    attributes: dict[str, Any]
    createdAt: str
    updatedAt: str


class ProfilePage(msgspec.Struct):
    """Profiles in creation order; ``next`` is the ``cursor`` of the following page."""

    items: list[ProfileOut]
    next: str | None


class ErasureOut(msgspec.Struct):
    """A deleted profile and how many queued events had its data erased."""

    externalId: str
    erasedEvents: int


class TargetingOut(msgspec.Struct):
    """An event type's reconciliation and enrichment settings."""

    eventType: str
    reconcileBy: str
    onMissing: str
    enrichmentUrl: str | None
    enrichmentMethod: str
    enrichmentTimeout: float
    enrichmentTtl: float
    enrichmentHeaders: dict[str, str]
    updatedAt: str | None


def profile_out(p: model.Profile) -> ProfileOut:
    """A profile as the API answers it."""
    return ProfileOut(
        p.external_id,
        p.email,
        p.mobile_phone,
        list(p.push_tokens),
        p.language,
        p.attributes,
        clock.format_iso(p.created_at),
        clock.format_iso(p.updated_at),
    )


def _invalid(exc: profiles.InvalidProfile | targeting.InvalidTargeting) -> ApiError:
    code = exc.code if isinstance(exc, profiles.InvalidProfile) else "invalid_field"
    return ApiError(422, code, exc.message, field=exc.field)


def router(app: App) -> Router:
    """The routes, bound to ``app``."""
    admin_scope = auth.require("admin", app.authenticate)
    db = app.db
    not_found = ResponseSpec(ErrorResponse, description="No such profile")

    @put(
        "/profiles/{external_id:str}",
        summary="Create or replace a profile",
        guards=[admin_scope],
        operation_id="putProfile",
        tags=["profiles"],
        status_code=200,
        responses={
            200: ResponseSpec(ProfileOut, description="Replaced"),
            201: ResponseSpec(ProfileOut, description="Created"),
            422: ResponseSpec(ErrorResponse, description="A field is invalid"),
        },
        request_body_doc=profiles.ProfileIn,
    )
    async def put_profile(
        external_id: FromPath[str], request: Request[Any, Any, Any]
    ) -> Response[bytes]:
        data = intake.decode(await intake.read_body(request), _profile_in)
        if data.externalId is not None and data.externalId != external_id:
            raise ApiError(
                422,
                "invalid_field",
                "externalId in the body differs from the one in the URL",
                field="$.externalId",
            )
        try:
            profile = profiles.prepare(data, clock.now_us(), external_id)
        except profiles.InvalidProfile as exc:
            raise _invalid(exc) from None
        stored, created = await profiles.upsert(db, profile)
        return ok(profile_out(stored), 201 if created else 200)

    @get(
        "/profiles/{external_id:str}",
        summary="One profile",
        guards=[admin_scope],
        operation_id="getProfile",
        tags=["profiles"],
        responses={200: ResponseSpec(ProfileOut, description="The profile"), 404: not_found},
    )
    async def get_profile(external_id: FromPath[str]) -> Response[bytes]:
        found = await profiles.get(db, external_id)
        if found is None:
            raise ApiError(404, "not_found", f"no profile {external_id!r}")
        return ok(profile_out(found))

    @delete(
        "/profiles/{external_id:str}",
        summary="Delete a profile and erase its data from queued events",
        guards=[admin_scope],
        operation_id="deleteProfile",
        tags=["profiles"],
        status_code=200,
        responses={200: ResponseSpec(ErasureOut, description="Deleted"), 404: not_found},
    )
    async def delete_profile(external_id: FromPath[str]) -> Response[bytes]:
        erasure = await profiles.delete(db, external_id)
        if erasure is None:
            raise ApiError(404, "not_found", f"no profile {external_id!r}")
        return ok(ErasureOut(erasure.profile.external_id, erasure.events))

    @get(
        "/profiles",
        summary="Profiles, optionally those with an email or mobile phone",
        guards=[admin_scope],
        operation_id="listProfiles",
        tags=["profiles"],
        responses={200: ResponseSpec(ProfilePage, description="A page of profiles")},
    )
    async def list_profiles(
        email: FromQuery[str | None] = None,
        mobile_phone: Annotated[str | None, QueryParameter(name="mobilePhone")] = None,
        limit: Annotated[int, QueryParameter(ge=1, le=1000)] = 100,
        cursor: Annotated[int | None, QueryParameter(ge=0)] = None,
    ) -> Response[bytes]:
        found = await profiles.find(
            db, email=email, mobile_phone=mobile_phone, after_id=cursor or 0, limit=limit + 1
        )
        page = found[:limit]
        following = str(page[-1].id) if len(found) > limit else None
        return ok(ProfilePage([profile_out(p) for p in page], following))

    @post(
        "/profiles/import",
        summary="Import profiles from NDJSON (application/x-ndjson) or CSV (text/csv)",
        guards=[admin_scope],
        operation_id="importProfiles",
        tags=["profiles"],
        status_code=200,
        responses={
            200: ResponseSpec(profiles.ImportResult, description="What was imported"),
            415: ResponseSpec(ErrorResponse, description="Neither NDJSON nor CSV"),
        },
        request_max_body_size=app.settings.profile_import_max_bytes,
    )
    async def import_profiles(request: Request[Any, Any, Any]) -> Response[bytes]:
        media = request.headers.get("content-type", "").partition(";")[0].strip().lower()
        fmt = _FORMATS.get(media)
        if fmt is None:
            raise ApiError(
                415,
                "unsupported_media_type",
                "send NDJSON (Content-Type: application/x-ndjson) or CSV (text/csv)",
            )
        parser = profiles.Parser(fmt)
        importer = profiles.Importer(db)
        async for chunk in request.stream():
            await importer.add(parser.feed(chunk))
        await importer.add(parser.finish())
        return ok(await importer.finish())

    # ------------------------------------------------------------ event type targeting

    no_type = ResponseSpec(ErrorResponse, description="No such event type")

    @get(
        "/event-types/{name:str}/targeting",
        summary="An event type's reconciliation and enrichment settings",
        guards=[admin_scope],
        operation_id="getTargeting",
        tags=["event types"],
        responses={200: ResponseSpec(TargetingOut, description="Its settings"), 404: no_type},
    )
    async def get_targeting(name: FromPath[str]) -> Response[bytes]:
        try:
            found = await targeting.get(db, name)
        except targeting.UnknownEventType:
            raise ApiError(404, "not_found", f"no event type {name!r}") from None
        return ok(targeting.describe(found))

    @put(
        "/event-types/{name:str}/targeting",
        summary="Set an event type's reconciliation and enrichment settings",
        guards=[admin_scope],
        operation_id="putTargeting",
        tags=["event types"],
        status_code=200,
        responses={
            200: ResponseSpec(TargetingOut, description="Set"),
            404: no_type,
            422: ResponseSpec(ErrorResponse, description="A field is invalid"),
        },
        request_body_doc=targeting.TargetingIn,
    )
    async def put_targeting(
        name: FromPath[str], request: Request[Any, Any, Any]
    ) -> Response[bytes]:
        data = intake.decode(await intake.read_body(request), _targeting_in)
        try:
            stored = await targeting.put(db, name, data)
        except targeting.InvalidTargeting as exc:
            raise _invalid(exc) from None
        except targeting.UnknownEventType:
            raise ApiError(404, "not_found", f"no event type {name!r}") from None
        await app.refresh_routing()
        return ok(targeting.describe(stored))

    @delete(
        "/event-types/{name:str}/targeting",
        summary="Remove an event type's reconciliation and enrichment settings",
        guards=[admin_scope],
        operation_id="deleteTargeting",
        tags=["event types"],
        status_code=204,
        responses={404: no_type},
    )
    async def delete_targeting(name: FromPath[str]) -> None:
        try:
            await targeting.delete(db, name)
        except targeting.UnknownEventType:
            raise ApiError(404, "not_found", f"no event type {name!r}") from None
        await app.refresh_routing()

    return Router(
        "/api/v1",
        route_handlers=[
            put_profile,
            get_profile,
            delete_profile,
            list_profiles,
            import_profiles,
            get_targeting,
            put_targeting,
            delete_targeting,
        ],
    )
