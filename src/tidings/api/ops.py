"""Operations endpoints and load shedding.

- ``GET /readyz``: 200 when the database answers and its schema is at the newest migration,
  503 (JSON, saying which check failed) otherwise; a balancer sends no traffic to a node
  that is not ready.
- ``GET /metrics``: Prometheus metrics (:mod:`tidings.metrics`), the queue read at scrape.
- :func:`overloaded`: the answer event-ingest POSTs get while the App sheds load.

Neither endpoint needs an API key (probes and scrapers carry none); neither shows anything
of the events themselves.
"""

from __future__ import annotations

import asyncio
import math
import os
from typing import Any

import msgspec
from litestar import Response, Router, get

from tidings import metrics
from tidings.api import errors
from tidings.app import App
from tidings.store import database, migrate

_CHECK_TIMEOUT = 5.0
_encode = msgspec.json.Encoder().encode


def overloaded(app: App) -> errors.ApiError:
    """503 ``overloaded``: the oldest due event waited longer than ``shed_queue_age``, so
    new events are refused (nothing is stored) until the queue catches up."""
    app.metrics.rejected["overloaded"] += 1
    retry = min(60, max(1, math.ceil(app.settings.shed_queue_age)))
    return errors.ApiError(
        503,
        "overloaded",
        "the queue is too far behind; retry later",
        headers={"Retry-After": str(retry)},
    )


async def readiness(app: App, head: str) -> dict[str, str]:
    """``{"database": ..., "migrations": ...}``, each ``ok`` or what is wrong."""
    url = app.settings.database_url
    if url.startswith("sqlite:"):
        path = database.sqlite_path(url)
        if path != ":memory:" and not await asyncio.to_thread(os.path.isfile, path):
            # Checked first: opening a missing file would create an empty database.
            return {"database": f"no database file at {path}", "migrations": "unknown"}
    try:
        revision = await asyncio.wait_for(migrate.current(url), _CHECK_TIMEOUT)
    except TimeoutError:
        return {"database": f"no answer within {_CHECK_TIMEOUT:g} s", "migrations": "unknown"}
    except Exception as exc:  # whatever the driver raises for a server that is not there
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        return {"database": f"unreachable: {reason[:200]}", "migrations": "unknown"}
    if revision is None:
        migrations = f"not migrated (head is {head}); run `tidings migrate`"
    elif revision != head:
        migrations = f"at {revision}, head is {head}; run `tidings migrate`"
    else:
        migrations = "ok"
    return {"database": "ok", "migrations": migrations}


def router(app: App) -> Router:
    """``/readyz`` and ``/metrics`` for ``app``."""
    head = migrate.head()
    registry = app.metrics.registry(lambda: [(str(c), t) for c, t in app.transports.items()])

    @get("/readyz", summary="The database answers and its schema is current", tags=["operations"])
    async def readyz() -> Response[bytes]:
        checks = await readiness(app, head)
        if all(value == "ok" for value in checks.values()):
            return Response(_encode({"status": "ready", "checks": checks}), media_type=errors.JSON)
        failed = next(f"{name}: {value}" for name, value in checks.items() if value != "ok")
        body: dict[str, Any] = {
            "error": {"status": 503, "code": "not_ready", "message": failed},
            "checks": checks,
        }
        return Response(
            _encode(body), status_code=503, media_type=errors.JSON, headers={"Retry-After": "5"}
        )

    @get("/metrics", summary="Prometheus metrics", tags=["operations"])
    async def scrape() -> Response[bytes]:
        # The queue is read now (one indexed query); a database that does not answer in
        # time leaves the last values and tidings_database_up 0.
        try:
            await asyncio.wait_for(app.sample_queue(), _CHECK_TIMEOUT)
        except TimeoutError:
            app.metrics.database_up = False
        return Response(metrics.exposition(registry), media_type=metrics.CONTENT_TYPE)

    return Router("/", route_handlers=[readyz, scrape])
