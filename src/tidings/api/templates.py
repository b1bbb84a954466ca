"""Designing templates over the admin API: versions (every save is one), diffs, restore,
validation, preview with a test profile, publishing, unpublishing, the audit log, and
content blocks.

``{type}`` is an event type's name, ``{channel}`` one of ``email``, ``sms``, ``push`` or
``webhook``. Every route needs the ``admin`` scope; the author of a save or a publication is
the API key's name.
"""

from __future__ import annotations

from typing import Annotated, Any

import msgspec
from litestar import Request, Response, Router, delete, get, post, put
from litestar.openapi.datastructures import ResponseSpec
from litestar.params import FromPath, QueryParameter

from tidings import model
from tidings.api import auth, intake
from tidings.api.errors import ApiError, documented, ok
from tidings.app import App
from tidings.control import blocks, distribution, publishing, templates
from tidings.control import validation as checks

_draft = msgspec.json.Decoder(templates.Draft)
_encode = msgspec.json.Encoder().encode


class BlockIn(msgspec.Struct, forbid_unknown_fields=True):
    """A content block's new text."""

    source: str


class ValidationOut(msgspec.Struct):
    """A version's validation: ``valid`` is false when an issue is an ``error``."""

    valid: bool
    issues: list[checks.Issue]


ERRORS = documented(
    {
        400: "Malformed JSON",
        404: "Unknown event type, version, profile or block",
        422: "Invalid content, channel or version (the error names it)",
    },
    scope="admin",
)


def channel_of(text: str) -> model.Channel:
    """The channel a URL names; 404 for one that does not exist."""
    try:
        return model.Channel(text)
    except ValueError:
        raise ApiError(
            404, "not_found", "channel must be email, sms, push or webhook", field="channel"
        ) from None


def router(app: App) -> Router:
    """The routes, bound to ``app``."""
    admin_scope = auth.require("admin", app.authenticate)
    db = app.db
    sender = app.settings.default_sender
    base = "/templates/{event_type:str}/{channel:str}"

    def author(request: Request[Any, Any, Any]) -> str:
        return auth.current_key(request).name

    @post(
        f"{base}/versions",
        summary="Save a template version (the new draft)",
        description='Body: `{"content": {"type": "email", "subject": ..., "html": ...}, '
        '"variants": {"fr": {...}}}`. Email HTML may be MJML (starting with `<mjml`).',
        guards=[admin_scope],
        operation_id="saveTemplateVersion",
        tags=["templates"],
        status_code=201,
        request_body_doc=templates.Draft,
        responses={201: ResponseSpec(templates.Version, description="Saved"), **ERRORS},
    )
    async def save(
        request: Request[Any, Any, Any], event_type: FromPath[str], channel: FromPath[str]
    ) -> Response[bytes]:
        kind = channel_of(channel)
        draft = intake.decode(await intake.read_body(request), _draft)
        return ok(await templates.save(db, event_type, kind, draft, author(request)), 201)

    @get(
        f"{base}/versions",
        summary="A template's versions, newest first",
        guards=[admin_scope],
        operation_id="listTemplateVersions",
        tags=["templates"],
        responses={
            200: ResponseSpec(list[templates.VersionSummary], description="Versions"),
            **ERRORS,
        },
    )
    async def list_versions(event_type: FromPath[str], channel: FromPath[str]) -> Response[bytes]:
        return ok(await templates.versions(db, event_type, channel_of(channel)))

    @get(
        f"{base}/versions/{{number:int}}",
        summary="One template version",
        guards=[admin_scope],
        operation_id="getTemplateVersion",
        tags=["templates"],
        responses={200: ResponseSpec(templates.Version, description="It"), **ERRORS},
    )
    async def read(
        event_type: FromPath[str], channel: FromPath[str], number: FromPath[int]
    ) -> Response[bytes]:
        return ok(await templates.get(db, event_type, channel_of(channel), number))

    @get(
        f"{base}/diff",
        summary="The differences between two versions, field by field (unified diffs)",
        guards=[admin_scope],
        operation_id="diffTemplateVersions",
        tags=["templates"],
        responses={200: ResponseSpec(list[templates.FieldDiff], description="Diffs"), **ERRORS},
    )
    async def diff(
        event_type: FromPath[str],
        channel: FromPath[str],
        old: Annotated[int, QueryParameter(name="from", ge=1)],
        new: Annotated[int, QueryParameter(name="to", ge=1)],
    ) -> Response[bytes]:
        kind = channel_of(channel)
        before = await templates.get(db, event_type, kind, old)
        after = await templates.get(db, event_type, kind, new)
        return ok(templates.diff(before, after))

    @post(
        f"{base}/versions/{{number:int}}/restore",
        summary="Restore an old version as the new draft (saved as the next version)",
        guards=[admin_scope],
        operation_id="restoreTemplateVersion",
        tags=["templates"],
        status_code=201,
        responses={201: ResponseSpec(templates.Version, description="The new draft"), **ERRORS},
    )
    async def restore(
        request: Request[Any, Any, Any],
        event_type: FromPath[str],
        channel: FromPath[str],
        number: FromPath[int],
    ) -> Response[bytes]:
        restored = await templates.restore(
            db, event_type, channel_of(channel), number, author(request)
        )
        return ok(restored, 201)

    @post(
        f"{base}/versions/{{number:int}}/validate",
        summary="Validate a version",
        description="Template syntax (line and column), variables the ctx schema does not "
        "define, missing blocks, subject and sender, HTML tags, SMS segments, webhook JSON.",
        guards=[admin_scope],
        operation_id="validateTemplateVersion",
        tags=["templates"],
        status_code=200,
        responses={200: ResponseSpec(ValidationOut, description="Findings"), **ERRORS},
    )
    async def validate(
        event_type: FromPath[str], channel: FromPath[str], number: FromPath[int]
    ) -> Response[bytes]:
        issues = await publishing.validate(
            db, event_type, channel_of(channel), number, default_sender=sender
        )
        return ok(ValidationOut(not checks.has_errors(issues), issues))

    @post(
        f"{base}/versions/{{number:int}}/preview",
        summary="Render a version with a test profile",
        description="Email as HTML and text, SMS with its segment count, push as JSON, "
        "webhook with its JSON body. Without `profile`, the schema's examples are used.",
        guards=[admin_scope],
        operation_id="previewTemplateVersion",
        tags=["templates"],
        status_code=200,
        responses={200: ResponseSpec(publishing.Preview, description="Rendered"), **ERRORS},
    )
    async def preview(
        event_type: FromPath[str],
        channel: FromPath[str],
        number: FromPath[int],
        profile: Annotated[str | None, QueryParameter(description="a test profile")] = None,
    ) -> Response[bytes]:
        rendered = await publishing.preview(
            db, event_type, channel_of(channel), number, profile=profile, default_sender=sender
        )
        return ok(rendered)

    @post(
        f"{base}/versions/{{number:int}}/publish",
        summary="Publish a version (validation must pass); an older one is a rollback",
        description="Published here, then delivered to every registered execution instance; "
        "`instances` holds the result per instance.",
        guards=[admin_scope],
        operation_id="publishTemplateVersion",
        tags=["templates"],
        status_code=200,
        responses={200: ResponseSpec(publishing.Published, description="Published"), **ERRORS},
    )
    async def publish(
        request: Request[Any, Any, Any],
        event_type: FromPath[str],
        channel: FromPath[str],
        number: FromPath[int],
    ) -> Response[bytes]:
        done = await distribution.publish(
            db, app.settings, event_type, channel_of(channel), number, actor=author(request)
        )
        await app.refresh_routing()
        return ok(done)

    @get(
        f"{base}/publication",
        summary="The published bundle routed to",
        guards=[admin_scope],
        operation_id="getPublication",
        tags=["templates"],
        responses={200: ResponseSpec(dict[str, Any], description="The bundle"), **ERRORS},
    )
    async def read_publication(
        event_type: FromPath[str], channel: FromPath[str]
    ) -> Response[bytes]:
        return ok(await publishing.publication(db, event_type, channel_of(channel)))

    @delete(
        f"{base}/publication",
        summary="Unpublish: events arriving afterwards end routingFailed",
        description="Here and on every registered execution instance (the results are in "
        "each instance's deliveries and the audit log).",
        guards=[admin_scope],
        operation_id="unpublishTemplate",
        tags=["templates"],
        status_code=204,
        responses=ERRORS,
    )
    async def unpublish(
        request: Request[Any, Any, Any], event_type: FromPath[str], channel: FromPath[str]
    ) -> None:
        await distribution.unpublish(
            db, app.settings, event_type, channel_of(channel), actor=author(request)
        )
        await app.refresh_routing()

    @get(
        "/publications/audit",
        summary="Who published or unpublished what, and when (newest first)",
        guards=[admin_scope],
        operation_id="listPublicationAudit",
        tags=["templates"],
        responses={200: ResponseSpec(list[publishing.AuditEntry], description="Log"), **ERRORS},
    )
    async def audit(
        event_type: Annotated[str, QueryParameter(name="type")] = "",
        limit: Annotated[int, QueryParameter(ge=1, le=1000)] = 100,
    ) -> Response[bytes]:
        return ok(await publishing.audit(db, event_type, limit))

    @get(
        "/blocks",
        summary="Content blocks (the newest version of each)",
        guards=[admin_scope],
        operation_id="listBlocks",
        tags=["templates"],
        responses={200: ResponseSpec(list[blocks.Block], description="Blocks"), **ERRORS},
    )
    async def list_blocks() -> Response[bytes]:
        return ok(await blocks.latest(db))

    @get(
        "/blocks/{name:str}",
        summary="A content block's versions, newest first",
        guards=[admin_scope],
        operation_id="getBlock",
        tags=["templates"],
        responses={200: ResponseSpec(list[blocks.Block], description="Versions"), **ERRORS},
    )
    async def read_block(name: FromPath[str]) -> Response[bytes]:
        return ok(await blocks.versions(db, name))

    @put(
        "/blocks/{name:str}",
        summary="Save a content block's new version",
        description='Templates include it with `{% include "block:name" %}`.',
        guards=[admin_scope],
        operation_id="saveBlock",
        tags=["templates"],
        request_body_doc=BlockIn,
        responses={200: ResponseSpec(blocks.Block, description="Saved"), **ERRORS},
    )
    async def save_block(request: Request[Any, Any, Any], name: FromPath[str]) -> Response[bytes]:
        given = intake.decode(await intake.read_body(request), msgspec.json.Decoder(BlockIn))
        return ok(await blocks.save(db, name, given.source, author(request)))

    return Router(
        "/api/v1",
        route_handlers=[
            save,
            list_versions,
            read,
            diff,
            restore,
            validate,
            preview,
            publish,
            read_publication,
            unpublish,
            audit,
            list_blocks,
            read_block,
            save_block,
        ],
    )
