"""Proofs over the admin API: send a template version to the event type's seed addresses
through the real channel, and read what became of each message.

``POST /api/v1/event-types/{name}/templates/{channel}/versions/{n}/proofs`` (body optional:
``{"profile": "a test profile"}``) answers 202 with the proof, its events ``pending``;
``GET …/proofs/{id}`` shows each seed address's status and the channel's answers. Both need
the ``admin`` scope. Failures: 404 ``unknown_event_type`` / ``unknown_version`` /
``unknown_profile`` / ``unknown_proof``, 422 ``no_seed_addresses`` (none for the channel) or
``invalid_version`` (with the validation ``issues``).
"""

from __future__ import annotations

from typing import Any

import msgspec
from litestar import Request, Response, Router, get, post
from litestar.openapi.datastructures import ResponseSpec
from litestar.params import FromPath

from tidings.api import auth, intake, templates
from tidings.api.errors import ApiError, documented, ok
from tidings.app import App
from tidings.control import proofs


class ProofIn(msgspec.Struct, forbid_unknown_fields=True):
    """What a proof is rendered with: a test profile (the schema's examples without one)."""

    profile: str | None = None


_proof_in = msgspec.json.Decoder(ProofIn)

ERRORS = documented(
    {
        400: "Malformed JSON",
        404: "Unknown event type, channel, version, profile or proof",
        422: "No seed addresses for the channel, or a version that fails validation",
    },
    scope="admin",
)


def router(app: App) -> Router:
    """The routes, bound to ``app``."""
    admin_scope = auth.require("admin", app.authenticate)
    base = "/event-types/{name:str}/templates/{channel:str}/versions/{number:int}/proofs"

    @post(
        base,
        summary="Send a proof of a template version to the seed addresses",
        description="Renders the version (draft or published) with a test profile, marks it "
        "(`[Proof] ` before the subject, SMS text or push title; email header "
        "`X-Tidings-Proof: 1`) and queues one event per seed address of the channel. The "
        "events go through the real channel and never count in reports.",
        guards=[admin_scope],
        operation_id="sendProof",
        tags=["templates"],
        status_code=202,
        request_body_doc=ProofIn,
        responses={202: ResponseSpec(proofs.Proof, description="Queued"), **ERRORS},
    )
    async def send(
        request: Request[Any, Any, Any],
        name: FromPath[str],
        channel: FromPath[str],
        number: FromPath[int],
    ) -> Response[bytes]:
        kind = templates.channel_of(channel)
        # The body is optional: an empty one needs no Content-Type.
        body = await request.body()
        given = ProofIn()
        if body.strip():
            intake.check_media_type(request.headers.get("content-type", ""))
            given = intake.decode(body, _proof_in)
        proof = await proofs.send(
            app.db,
            name,
            kind,
            number,
            profile=given.profile,
            actor=auth.current_key(request).name,
            default_sender=app.settings.default_sender,
            next_id=app.ids.next,
        )
        app.wake()
        return ok(proof, 202)

    @get(
        base + "/{proof_id:int}",
        summary="A proof's result per seed address",
        description="Each seed address's event status and the channel's answers (an SMTP "
        "reply...); `final` once every message is done.",
        guards=[admin_scope],
        operation_id="getProof",
        tags=["templates"],
        responses={200: ResponseSpec(proofs.Proof, description="The proof"), **ERRORS},
    )
    async def read(
        name: FromPath[str], channel: FromPath[str], number: FromPath[int], proof_id: FromPath[int]
    ) -> Response[bytes]:
        found = await proofs.result(app.db, name, proof_id)
        if found.channel is not templates.channel_of(channel) or found.version != number:
            raise ApiError(
                404,
                "unknown_proof",
                f"no proof {proof_id} of version {number} of the {channel} template",
            )
        return ok(found)

    return Router("/api/v1", route_handlers=[send, read])
