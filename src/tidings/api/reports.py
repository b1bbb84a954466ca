"""Reports over the API: ``GET /api/v1/reports/{event-history|service-level|processing-time}``
with ``period`` (``hour``, ``day``, ``week``, ``month``; default ``day``) and, for the event
history, ``type``. JSON by default; CSV with ``format=csv`` or ``Accept: text/csv``."""

from __future__ import annotations

from typing import Annotated, Any

import msgspec
from litestar import Request, Response, Router, get
from litestar.openapi.datastructures import ResponseSpec
from litestar.params import FromPath, FromQuery, QueryParameter

from tidings import reports
from tidings.api import auth
from tidings.api.errors import JSON, ApiError, ErrorResponse
from tidings.app import App

_encode = msgspec.json.Encoder().encode


class ReportOut(msgspec.Struct):
    """A report: its window and lines (the fields of a line depend on the report; see the
    README)."""

    name: str
    period: str
    start: str
    end: str
    bucketSeconds: int
    lines: list[dict[str, str | int | float | None]]


def router(app: App) -> Router:
    """The report routes, bound to ``app`` (they need an ``admin`` key)."""
    admin_scope = auth.require("admin", app.authenticate)

    @get(
        "/{name:str}",
        summary="A report: event history, service level or processing time",
        guards=[admin_scope],
        operation_id="getReport",
        tags=["reports"],
        responses={
            200: ResponseSpec(ReportOut, description="The report (or CSV)"),
            404: ResponseSpec(ErrorResponse, description="No such report"),
            422: ResponseSpec(ErrorResponse, description="A bad period or format"),
        },
    )
    async def report(
        request: Request[Any, Any, Any],
        name: FromPath[str],
        period: FromQuery[str] = "day",
        type: Annotated[str | None, QueryParameter(max_length=200)] = None,
        format: FromQuery[str | None] = None,
    ) -> Response[bytes]:
        if name not in reports.NAMES:
            raise ApiError(
                404, "not_found", f"no report {name!r}; reports: {', '.join(reports.NAMES)}"
            )
        try:
            span = reports.Period(period)
        except ValueError:
            raise ApiError(
                422,
                "invalid_field",
                "period must be hour, day, week or month",
                field="period",
            ) from None
        if format not in (None, "json", "csv"):
            raise ApiError(422, "invalid_field", "format must be json or csv", field="format")
        built = await reports.build(app.db, name, reports.window(span), type)
        wants_csv = format == "csv" or (
            format is None and "text/csv" in request.headers.get("accept", "")
        )
        if wants_csv:
            return Response(
                reports.to_csv(built).encode(),
                media_type="text/csv; charset=utf-8",
                headers={"Content-Disposition": f'attachment; filename="{name}-{span}.csv"'},
            )
        return Response(_encode(built), media_type=JSON)

    return Router("/api/v1/reports", route_handlers=[report])
