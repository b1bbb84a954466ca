"""Managing: quarantine (every operator), API keys and operators (admins).

Each form posts back to its page, which answers with the page again: the list as it is now
and what happened (or, with 422, what was wrong, having changed nothing). A new API key is
shown in that answer only, never again.
"""

from __future__ import annotations

from typing import Any

from litestar import Request, Response, get, post
from litestar.handlers import HTTPRouteHandler

from tidings import apikeys, clock, model, operators, quarantine
from tidings.app import App
from tidings.console import auth, frame

ADMIN = model.OperatorRole.ADMIN


def _text(form: dict[str, Any], name: str, limit: int = 320) -> str:
    value = str(form.get(name, "")).strip()
    if "\x00" in value or len(value) > limit:
        raise ValueError(f"{name} is too long or holds a NUL character")
    return value


def handlers(app: App) -> list[HTTPRouteHandler]:
    """The management pages for ``app``."""
    db = app.db
    signed_in = auth.require(db)
    admin = auth.require(db, ADMIN)

    async def quarantine_page(
        request: Request[Any, Any, Any], *, status: int = 200, notice: str = "", error: str = ""
    ) -> Response[str]:
        return frame.page(
            request,
            "quarantine.html",
            status=status,
            entries=await quarantine.entries(db),
            notice=notice,
            error=error,
        )

    @get("/quarantine", guards=[signed_in], include_in_schema=False)
    async def list_quarantine(request: Request[Any, Any, Any]) -> Response[str]:
        return await quarantine_page(request)

    @post("/quarantine", guards=[signed_in], include_in_schema=False, status_code=200)
    async def add_quarantine(request: Request[Any, Any, Any]) -> Response[str]:
        form = dict((await request.form()).items())
        try:
            address = _text(form, "address")
            reason = _text(form, "reason", 500) or "added by an operator"
            channel = model.Channel(_text(form, "channel") or "email")
            if not address:
                raise ValueError("give the address to quarantine")
            expires_text = _text(form, "expires")
            expires = clock.parse_iso(expires_text) if expires_text else None
        except ValueError as exc:
            return await quarantine_page(request, status=422, error=str(exc))
        who = auth.session_of(request).operator.name
        await quarantine.add(
            db, channel, address, reason=reason, source=f"console:{who}", expires_at=expires
        )
        return await quarantine_page(request, notice=f"{address} is quarantined on {channel}.")

    @post("/quarantine/release", guards=[signed_in], include_in_schema=False, status_code=200)
    async def release_quarantine(request: Request[Any, Any, Any]) -> Response[str]:
        form = dict((await request.form()).items())
        try:
            address = _text(form, "address")
            channel = model.Channel(_text(form, "channel"))
        except ValueError as exc:
            return await quarantine_page(request, status=422, error=str(exc))
        if not await quarantine.remove(db, channel, address):
            return await quarantine_page(
                request, status=404, error=f"{address} is not quarantined on {channel}"
            )
        return await quarantine_page(request, notice=f"{address} is released.")

    async def keys_page(
        request: Request[Any, Any, Any],
        *,
        status: int = 200,
        notice: str = "",
        error: str = "",
        new_key: str = "",
    ) -> Response[str]:
        return frame.page(
            request,
            "keys.html",
            status=status,
            keys=await apikeys.list_all(db),
            scopes=sorted(apikeys.SCOPES),
            notice=notice,
            error=error,
            new_key=new_key,
        )

    @get("/keys", guards=[admin], include_in_schema=False)
    async def list_keys(request: Request[Any, Any, Any]) -> Response[str]:
        return await keys_page(request)

    @post("/keys", guards=[admin], include_in_schema=False, status_code=201)
    async def create_key(request: Request[Any, Any, Any]) -> Response[str]:
        form = await request.form()
        try:
            name = _text(dict(form.items()), "name", 200)
            if not name:
                raise ValueError("give the key a name")
            key, record = await apikeys.create(db, name, frozenset(form.getall("scope", [])))
        except ValueError as exc:
            return await keys_page(request, status=422, error=str(exc))
        return await keys_page(
            request,
            status=201,
            notice=f"Key {record.prefix} created. Copy it now: it is not shown again.",
            new_key=key,
        )

    @post("/keys/revoke", guards=[admin], include_in_schema=False, status_code=200)
    async def revoke_key(request: Request[Any, Any, Any]) -> Response[str]:
        form = dict((await request.form()).items())
        prefix = str(form.get("prefix", ""))[:64]
        if not await apikeys.revoke(db, prefix):
            return await keys_page(request, status=404, error=f"no active key {prefix!r}")
        app.forget_key(prefix)
        return await keys_page(request, notice=f"Key {prefix} is revoked.")

    async def operators_page(
        request: Request[Any, Any, Any], *, status: int = 200, notice: str = "", error: str = ""
    ) -> Response[str]:
        return frame.page(
            request,
            "operators.html",
            status=status,
            operators=await operators.list_all(db),
            roles=[str(r) for r in model.OperatorRole],
            notice=notice,
            error=error,
        )

    @get("/operators", guards=[admin], include_in_schema=False)
    async def list_operators(request: Request[Any, Any, Any]) -> Response[str]:
        return await operators_page(request)

    @post("/operators", guards=[admin], include_in_schema=False, status_code=201)
    async def add_operator(request: Request[Any, Any, Any]) -> Response[str]:
        form = dict((await request.form()).items())
        try:
            role = model.OperatorRole(_text(form, "role") or "operator")
            name = _text(form, "name", 64)
            await operators.create(db, name, str(form.get("password", "")), role)
        except ValueError as exc:
            return await operators_page(request, status=422, error=str(exc))
        return await operators_page(request, status=201, notice=f"{name} can sign in now.")

    @post("/operators/disable", guards=[admin], include_in_schema=False, status_code=200)
    async def disable_operator(request: Request[Any, Any, Any]) -> Response[str]:
        form = dict((await request.form()).items())
        name = str(form.get("name", ""))[:64]
        enable = form.get("enable") == "1"
        if not enable and name == auth.session_of(request).operator.name:
            return await operators_page(request, status=422, error="you cannot disable yourself")
        if not await operators.set_disabled(db, name, not enable):
            return await operators_page(request, status=404, error=f"no operator {name!r}")
        done = "enabled again" if enable else "disabled; their sessions have ended"
        return await operators_page(request, notice=f"{name} is {done}.")

    return [
        list_quarantine,
        add_quarantine,
        release_quarantine,
        list_keys,
        create_key,
        revoke_key,
        list_operators,
        add_operator,
        disable_operator,
    ]
