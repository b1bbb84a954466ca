"""Content blocks in the console: the list, creating one, and a block's page with its text,
its version history and the templates that include it.

Every operator may read these pages; designers and admins save (each save is a new version;
templates pick it up in previews at once and in messages when they are published again). A
refused form answers with the page again, the values as typed and the error at its field.
"""

from __future__ import annotations

from typing import Any

from litestar import Request, Response, get, post
from litestar.handlers import HTTPRouteHandler
from litestar.params import FromPath

from tidings.app import App
from tidings.console import auth, designer, frame
from tidings.control import blocks, errors


def _source(form: dict[str, Any]) -> str:
    return str(form.get("source", "")).replace("\r\n", "\n")


def handlers(app: App) -> list[HTTPRouteHandler]:
    """The content block pages for ``app``."""
    db = app.db
    signed_in = auth.require(db)
    designer_role = auth.require(db, designer.DESIGNER)

    async def list_page(
        request: Request[Any, Any, Any],
        *,
        status: int = 200,
        error: str = "",
        field: str = "",
        form: dict[str, Any] | None = None,
    ) -> Response[str]:
        return frame.page(
            request,
            "blocks.html",
            status=status,
            blocks=await blocks.latest(db),
            may_design=designer.may_design(request),
            error=error,
            field=field,
            form=form or {},
        )

    async def block_page(
        request: Request[Any, Any, Any],
        name: str,
        *,
        number: int | None = None,
        status: int = 200,
        notice: str = "",
        error: str = "",
        source: str | None = None,
    ) -> Response[str]:
        try:
            history = await blocks.versions(db, name)
        except errors.NotFound as exc:
            return frame.not_found(request, exc.message)
        shown = next((b for b in history if b.number == number), history[0])
        return frame.page(
            request,
            "block.html",
            status=status,
            block=shown,
            latest=history[0],
            history=history,
            source=shown.source if source is None else source,
            usages=await blocks.usages(db, name),
            may_design=designer.may_design(request),
            notice=notice,
            error=error,
        )

    @get("/blocks", guards=[signed_in], include_in_schema=False)
    async def list_blocks(request: Request[Any, Any, Any]) -> Response[str]:
        return await list_page(request)

    @post("/blocks", guards=[designer_role], include_in_schema=False, status_code=303)
    async def create_block(request: Request[Any, Any, Any]) -> Response[str]:
        form: dict[str, Any] = dict((await request.form()).items())
        name = str(form.get("name", "")).strip()[:64]
        try:
            await blocks.save(db, name, _source(form), auth.session_of(request).operator.name)
        except errors.ControlError as exc:
            where = exc.field or ""
            return await list_page(
                request,
                status=exc.status,
                error=f"Not created: {exc.message}" + (f" (at {where})" if where else ""),
                field=where,
                form=form,
            )
        return Response(
            "", status_code=303, headers={"Location": f"{auth.PATH}/blocks/{name}?saved=1"}
        )

    @get("/blocks/{name:str}", guards=[signed_in], include_in_schema=False)
    async def show_block(request: Request[Any, Any, Any], name: FromPath[str]) -> Response[str]:
        query = request.query_params
        version = query.get("version", "")
        number = int(version) if version.isdigit() and len(version) < 10 else None
        notice = f"{name} is saved." if query.get("saved") else ""
        return await block_page(request, name, number=number, notice=notice)

    @post("/blocks/{name:str}", guards=[designer_role], include_in_schema=False, status_code=303)
    async def save_block(request: Request[Any, Any, Any], name: FromPath[str]) -> Response[str]:
        form: dict[str, Any] = dict((await request.form()).items())
        try:
            await blocks.versions(db, name)  # only blocks that exist get new versions here
            await blocks.save(db, name, _source(form), auth.session_of(request).operator.name)
        except errors.NotFound as exc:
            return frame.not_found(request, exc.message)
        except errors.ControlError as exc:
            return await block_page(
                request,
                name,
                status=exc.status,
                error=f"Not saved: {exc.message}",
                source=_source(form),
            )
        return Response(
            "", status_code=303, headers={"Location": f"{auth.PATH}/blocks/{name}?saved=1"}
        )

    return [list_blocks, create_block, show_block, save_block]
