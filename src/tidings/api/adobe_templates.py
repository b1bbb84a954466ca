"""``POST /api/v1/templates/import-adobe`` (admin): translate an Adobe Campaign template
(``<%= rtEvent.ctx.x %>``, ``<% if (…) { %>``…) into a Tidings template, and optionally
publish it. The same function the ``tidings templates import-adobe`` command calls
(:mod:`tidings.control.adobe_import`).

The answer always lists what could not be translated (``problems``, with lines). Publishing
(``"publish": true``) happens only when there is no problem; otherwise the answer is a 422
``untranslatable_template`` and nothing is published.
"""

from __future__ import annotations

from typing import Any

import msgspec
from litestar import Request, Response, Router, post
from litestar.openapi.datastructures import ResponseSpec

from tidings import ingest
from tidings.api import auth, intake
from tidings.api.errors import JSON, ApiError, ErrorResponse
from tidings.app import App
from tidings.control import adobe_import
from tidings.engine import render


class ImportIn(msgspec.Struct, forbid_unknown_fields=True):
    """An Adobe email template: its event type, subject and HTML and/or text parts."""

    type: str
    subject: str
    html: str = ""
    text: str = ""
    label: str = ""
    publish: bool = False


class ProblemOut(msgspec.Struct):
    """A part of the template that was not translated."""

    part: str
    line: int
    column: int
    source: str
    message: str


class PublishedOut(msgspec.Struct):
    """The publication made."""

    version: int
    publicationId: str


class ImportOut(msgspec.Struct):
    """The translated template (Jinja2), what was not translated, and the publication."""

    type: str
    subject: str
    html: str
    text: str
    problems: list[ProblemOut]
    published: PublishedOut | None = None


_decoder = msgspec.json.Decoder(ImportIn)
_encode = msgspec.json.Encoder().encode


def router(app: App) -> Router:
    """The route, bound to ``app``."""
    admin_scope = auth.require("admin", app.authenticate)

    @post(
        "/templates/import-adobe",
        summary="Import an Adobe Campaign template",
        description="Translates Adobe's personalisation syntax (`<%= rtEvent.ctx.firstName %>`, "
        "`<% if (...) { %>`, `for each` loops) into the template language; lists every part "
        "that could not be translated with its line. With `publish: true` and no problems, "
        "publishes it as the event type's email.",
        guards=[admin_scope],
        status_code=200,
        operation_id="importAdobeTemplate",
        tags=["templates"],
        request_body_doc=ImportIn,
        responses={
            200: ResponseSpec(ImportOut, description="Translated (and published if asked)"),
            400: ResponseSpec(ErrorResponse, description="Malformed JSON"),
            401: ResponseSpec(ErrorResponse, description="Missing, unknown or revoked API key"),
            403: ResponseSpec(ErrorResponse, description="The API key lacks the admin scope"),
            415: ResponseSpec(ErrorResponse, description="Not JSON"),
            422: ResponseSpec(ErrorResponse, description="Invalid field, or untranslatable"),
        },
    )
    async def import_adobe(request: Request[Any, Any, Any]) -> Response[bytes]:
        payload = intake.decode(await intake.read_body(request), _decoder)
        if not ingest.TYPE_NAME.match(payload.type):
            raise ApiError(
                422, "invalid_field", "type is not a valid event type name", field="$.type"
            )
        imported = adobe_import.import_email(
            payload.type,
            subject=payload.subject,
            html=payload.html,
            text=payload.text,
            label=payload.label,
        )
        problems = [
            ProblemOut(p.part, p.line, p.column, p.source, p.message) for p in imported.problems
        ]
        published = None
        if payload.publish:
            if problems:
                first = imported.problems[0]
                raise ApiError(
                    422,
                    "untranslatable_template",
                    f"{len(problems)} part(s) could not be translated, the first: {first}",
                )
            key = auth.current_key(request)
            try:
                version, publication = await adobe_import.publish(
                    app.db, imported, author=f"key:{key.prefix}", renderer=app.renderer
                )
            except render.RenderError as exc:
                raise ApiError(422, "invalid_template", str(exc)) from None
            await app.refresh_routing()
            published = PublishedOut(version, str(publication))
        out = ImportOut(
            type=payload.type,
            subject=imported.content.subject,
            html=imported.content.html,
            text=imported.content.text,
            problems=problems,
            published=published,
        )
        return Response(_encode(out), media_type=JSON)

    return Router("/api/v1", route_handlers=[import_adobe])
