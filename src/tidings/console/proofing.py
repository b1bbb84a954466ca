"""Proofs in the template editor: "Send proof" sends the version shown to the event type's
seed addresses (through :mod:`tidings.control.proofs`, as the admin API does) and answers an
HTMX fragment with the result per address, which reloads itself until every message is done.

Designers and admins send proofs; every operator may watch one's result.
"""

from __future__ import annotations

from typing import Any

from litestar import Request, Response, get, post
from litestar.handlers import HTTPRouteHandler
from litestar.params import FromPath

from tidings import model
from tidings.app import App
from tidings.console import auth, designer, frame
from tidings.control import errors, proofs

_BASE = "/event-types/{name:str}/{channel:str}/proofs"


def _fragment(status: int = 200, **context: Any) -> Response[str]:
    body = frame.render("proof.html", **context)
    return Response(body, status_code=status, media_type=frame.HTML, headers=frame.HEADERS)


def handlers(app: App) -> list[HTTPRouteHandler]:
    """The proof routes for ``app``."""
    db = app.db
    signed_in = auth.require(db)
    designer_role = auth.require(db, designer.DESIGNER)

    @post(_BASE, guards=[designer_role], include_in_schema=False, status_code=200)
    async def send(
        request: Request[Any, Any, Any], name: FromPath[str], channel: FromPath[str]
    ) -> Response[str]:
        form = dict((await request.form()).items())
        number = str(form.get("version", ""))
        try:
            kind = model.Channel(channel)
            proof = await proofs.send(
                db,
                name,
                kind,
                int(number) if number.isdigit() else 0,
                profile=str(form.get("profile", ""))[:64] or None,
                actor=auth.session_of(request).operator.name,
                default_sender=app.settings.default_sender,
                next_id=app.ids.next,
            )
        except ValueError:
            return _fragment(404, failed=f"no {channel[:20]} channel", proof=None, issues=[])
        except errors.ControlError as exc:
            issues = exc.issues if isinstance(exc, errors.Invalid) else []
            return _fragment(exc.status, failed=exc.message, proof=None, issues=issues)
        app.wake()
        return _fragment(proof=proof, failed="", issues=[])

    @get(f"{_BASE}/{{proof_id:int}}", guards=[signed_in], include_in_schema=False)
    async def show(
        name: FromPath[str], channel: FromPath[str], proof_id: FromPath[int]
    ) -> Response[str]:
        try:
            proof = await proofs.result(db, name, proof_id)
        except errors.NotFound as exc:
            return _fragment(404, failed=exc.message, proof=None, issues=[])
        return _fragment(proof=proof, failed="", issues=[])

    return [send, show]
