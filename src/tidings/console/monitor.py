"""Watching: the dashboard (with its live queue fragment), the reports (with CSV export)
and this execution instance's health."""

from __future__ import annotations

import importlib.metadata
import platform
from typing import Any

import msgspec
from litestar import Request, Response, get
from litestar.handlers import HTTPRouteHandler
from litestar.params import FromPath

from tidings import clock, model, reports
from tidings.api import ops
from tidings.app import App
from tidings.console import auth, frame
from tidings.control import instances as control_instances
from tidings.control import publishing
from tidings.store import explorer, migrate

_FINAL = [str(s) for s in model.EventStatus if s in model.FINAL_STATUSES]


def period_of(text: str | None) -> reports.Period:
    """The report period a query parameter names (the last day by default)."""
    try:
        return reports.Period(text or "day")
    except ValueError:
        return reports.Period.DAY


def version() -> str:
    """This installation's Tidings version."""
    try:
        return importlib.metadata.version("tidings")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


def handlers(app: App) -> list[HTTPRouteHandler]:
    """The monitoring pages for ``app``."""
    db = app.db
    signed_in = auth.require(db)

    @get("/", guards=[signed_in], include_in_schema=False)
    async def dashboard(request: Request[Any, Any, Any]) -> Response[str]:
        board = await reports.dashboard(db, app.settings)
        chart = {
            "labels": [t[0][11:16] for t in board.day_history],
            "incoming": [t[1] for t in board.day_history],
            "outgoing": [t[2] for t in board.day_history],
            "errors": [t[3] for t in board.day_history],
            "statuses": _FINAL,
            "hour": [board.hour.get(s, 0) for s in _FINAL],
            "day": [board.day.get(s, 0) for s in _FINAL],
        }
        return frame.page(
            request,
            "dashboard.html",
            board=board,
            final=_FINAL,
            chart=msgspec.json.encode(chart).decode(),
        )

    @get("/queue", guards=[signed_in], include_in_schema=False)
    async def queue_fragment(request: Request[Any, Any, Any]) -> Response[str]:
        waiting, due, oldest = await reports.queue_state(db)
        pending = reports.gauge(app.settings, "pending_queue", float(waiting.get("pending", 0)))
        return frame.page(
            request,
            "queue.html",
            waiting=waiting,
            due=due,
            oldest=oldest,
            pending=pending,
            sampled=clock.now_us(),
        )

    @get("/reports", guards=[signed_in], include_in_schema=False)
    async def reports_page(request: Request[Any, Any, Any]) -> Response[str]:
        period = period_of(request.query_params.get("period"))
        w = reports.window(period)
        history = await reports.event_history(db, w)
        service = await reports.service_level(db, w)
        timing = await reports.processing_time(db, w)
        return frame.page(
            request,
            "reports.html",
            period=period,
            periods=list(reports.Period),
            history=history,
            service=service,
            timing=timing,
        )

    @get("/reports/{file:str}", guards=[signed_in], include_in_schema=False)
    async def report_csv(request: Request[Any, Any, Any], file: FromPath[str]) -> Response[Any]:
        name = file.removesuffix(".csv")
        if not file.endswith(".csv") or name not in reports.NAMES:
            return frame.page(
                request,
                "error.html",
                status=404,
                title="No such report",
                message=f"There is no report {file[:60]!r}.",
            )
        period = period_of(request.query_params.get("period"))
        report = await reports.build(db, name, reports.window(period))
        return Response(
            reports.to_csv(report),
            media_type="text/csv; charset=utf-8",
            headers={
                **frame.HEADERS,
                "Content-Disposition": f'attachment; filename="{name}-{period}.csv"',
            },
        )

    @get("/instances", guards=[signed_in], include_in_schema=False)
    async def instances(request: Request[Any, Any, Any]) -> Response[str]:
        return await instances_page(app, request)

    return [dashboard, queue_fragment, reports_page, report_csv, instances]


def _redacted(url: str) -> str:
    """A database URL without its password."""
    head, at, tail = url.rpartition("@")
    if not at or "://" not in head:
        return url
    scheme, _, credentials = head.partition("://")
    user = credentials.split(":", 1)[0]
    return f"{scheme}://{user}@{tail}"


async def instances_page(
    app: App,
    request: Request[Any, Any, Any],
    *,
    status: int = 200,
    notice: str = "",
    error: str = "",
    results: list[publishing.Delivered] | None = None,
) -> Response[str]:
    """This instance's health, and the execution instances it publishes to with their last
    outcome (``results``: what a sync just did)."""
    db = app.db
    checks = await ops.readiness(app, migrate.head())
    async with db.connection() as conn:
        last = await explorer.last_publication(conn)
        active = await explorer.count_active_publications(conn)
    waiting, due, oldest = await reports.queue_state(db)
    s = app.settings
    return frame.page(
        request,
        "instances.html",
        status=status,
        checks=checks,
        ready=all(v == "ok" for v in checks.values()),
        version=version(),
        python=platform.python_version(),
        instance_id=s.instance_id,
        slot=app.slot,
        dialect=db.dialect,
        database=_redacted(s.database_url),
        head=migrate.head(),
        worker=app.worker is not None,
        email="SMTP " + s.smtp_host if s.uses_smtp else "local outbox",
        server_url=s.server_url,
        last=last,
        active=active,
        waiting=waiting,
        due=due,
        oldest=oldest,
        shedding=app.shedding,
        registered=await control_instances.list_all(db),
        notice=notice,
        error=error,
        results=results or [],
    )
