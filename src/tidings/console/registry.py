"""The execution instances this control instance publishes to, on the Instances page:
admins register and remove them; designers (who publish) sync one that lags behind. Each
form posts back and is answered with the page again, saying what happened."""

from __future__ import annotations

from typing import Any

from litestar import Request, Response, post
from litestar.handlers import HTTPRouteHandler

from tidings import model
from tidings.app import App
from tidings.console import auth, designer, monitor
from tidings.control import distribution, errors, instances


def handlers(app: App) -> list[HTTPRouteHandler]:
    """The instance registry's forms for ``app``."""
    db = app.db
    admin = auth.require(db, model.OperatorRole.ADMIN)
    designer_role = auth.require(db, designer.DESIGNER)

    def field(form: dict[str, Any], name: str) -> str:
        return str(form.get(name, ""))[:2000].strip()

    @post("/instances", guards=[admin], include_in_schema=False, status_code=201)
    async def add(request: Request[Any, Any, Any]) -> Response[str]:
        form = dict((await request.form()).items())
        new = instances.NewInstance(
            field(form, "name"), field(form, "base_url"), field(form, "credential")
        )
        try:
            added = await instances.add(db, new, allow_http=app.settings.instance_allow_http)
        except errors.ControlError as exc:
            return await monitor.instances_page(app, request, status=exc.status, error=exc.message)
        return await monitor.instances_page(
            app,
            request,
            status=201,
            notice=f"{added.name} is registered; sync it to send what is published already.",
        )

    @post("/instances/remove", guards=[admin], include_in_schema=False, status_code=200)
    async def remove(request: Request[Any, Any, Any]) -> Response[str]:
        name = field(dict((await request.form()).items()), "name")
        try:
            await instances.remove(db, name)
        except errors.ControlError as exc:
            return await monitor.instances_page(app, request, status=exc.status, error=exc.message)
        return await monitor.instances_page(app, request, notice=f"{name} is removed.")

    @post("/instances/sync", guards=[designer_role], include_in_schema=False, status_code=200)
    async def sync(request: Request[Any, Any, Any]) -> Response[str]:
        name = field(dict((await request.form()).items()), "name")
        try:
            results = await distribution.sync(db, app.settings, name)
        except errors.ControlError as exc:
            return await monitor.instances_page(app, request, status=exc.status, error=exc.message)
        failed = [r for r in results if r.outcome == "failed"]
        if failed:
            notice, error = "", f"{len(failed)} of {len(results)} deliveries to {name} failed."
        elif results:
            notice, error = f"{name} is up to date: {len(results)} sent.", ""
        else:
            notice, error = f"{name} was up to date already.", ""
        return await monitor.instances_page(
            app, request, notice=notice, error=error, results=results
        )

    return [add, remove, sync]
