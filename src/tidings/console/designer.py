"""Event types in the console: the list, creating one, editing its definition and ctx schema
(JSON in a textarea), and the example requests that send an event of the type.

Every operator may read these pages; designers and admins may change them. A refused form
answers 422 with the page again, the values as typed and the error at its field path
(``$.ctxSchema[1].type``; for JSON that does not parse, its line and column), having
changed nothing.
"""

from __future__ import annotations

import re
from typing import Any

import msgspec
from litestar import Request, Response, get, post
from litestar.handlers import HTTPRouteHandler
from litestar.params import FromPath

from tidings import model
from tidings.app import App
from tidings.console import auth, frame
from tidings.control import ctxschema, errors, eventtypes, publishing

DESIGNER = model.OperatorRole.DESIGNER
_schema = msgspec.json.Decoder(ctxschema.Schema)
_AT = re.compile(r" - at `\$(.*)`$")
_BYTE = re.compile(r"\(byte (\d+)\)")


class FormError(ValueError):
    """A form value that cannot be used; ``field`` is the JSON path it is about."""

    def __init__(self, message: str, field: str):
        super().__init__(message)
        self.field = field


def may_design(request: Request[Any, Any, Any]) -> bool:
    """Whether the signed-in operator may change event types and templates."""
    return auth.RANK[auth.session_of(request).operator.role] >= auth.RANK[DESIGNER]


def _position(text: str, offset: int) -> tuple[int, int]:
    """The 1-based line and column of byte ``offset`` in ``text``."""
    before = text.encode()[:offset].decode(errors="ignore")
    return before.count("\n") + 1, len(before) - (before.rfind("\n") + 1) + 1


_recipient = msgspec.json.Decoder(model.Recipient)
_object = msgspec.json.Decoder(dict[str, Any])


def _json(text: str, decoder: msgspec.json.Decoder[Any], field: str) -> Any:
    """``text`` decoded; :class:`FormError` at ``field`` (and the line and column for JSON
    that does not parse, the path inside it for a value of the wrong type)."""
    try:
        return decoder.decode(text if text.strip() else "{}")
    except msgspec.ValidationError as exc:
        message = str(exc)
        at = _AT.search(message)
        raise FormError(_AT.sub("", message), field + (at.group(1) if at else "")) from None
    except msgspec.DecodeError as exc:
        message = str(exc)
        byte = _BYTE.search(message)
        if byte:
            line, column = _position(text, int(byte.group(1)))
            message = f"{_BYTE.sub('', message).strip()} at line {line}, column {column}"
        raise FormError(message, field) from None


def parse_schema(text: str) -> ctxschema.Schema:
    """The ctx schema typed into the form; :class:`FormError` naming where it fails."""
    if not text.strip():
        return ()
    schema: ctxschema.Schema = _json(text, _schema, "$.ctxSchema")
    return schema


def definition_from(form: dict[str, Any], channels: list[str], name: str) -> eventtypes.Definition:
    """The definition a create or edit form describes."""
    text: dict[str, str] = {}
    for field in ("label", "description", "languageField", "fallbackLanguage"):
        value = str(form.get(field, "")).strip()
        if "\x00" in value or len(value) > eventtypes.MAX_TEXT:
            raise FormError(
                f"{field} must be at most {eventtypes.MAX_TEXT} characters, without NUL",
                f"$.{field}",
            )
        text[field] = value
    try:
        default = model.Channel(str(form.get("defaultChannel", "email")))
        allowed = tuple(model.Channel(c) for c in channels)
    except ValueError:
        raise FormError("a channel is email, sms, push or webhook", "$.channels") from None
    try:
        validation = eventtypes.Validation(str(form.get("validation", "lenient")))
    except ValueError:
        raise FormError("validation is strict or lenient", "$.validation") from None
    schema_text = str(form.get("ctxSchema", ""))
    if len(schema_text) > 1_000_000:
        raise FormError("the schema is too long", "$.ctxSchema")
    seeds = {
        channel: tuple(line.strip() for line in str(form.get(f"seeds.{channel}", "")).splitlines())
        for channel in ("email", "sms", "push")
    }
    return eventtypes.Definition(
        name=name,
        label=text["label"],
        description=text["description"],
        defaultChannel=default,
        channels=allowed,
        validation=validation,
        ctxSchema=parse_schema(schema_text),
        languageField=text["languageField"],
        fallbackLanguage=text["fallbackLanguage"],
        seeds=eventtypes.Seeds(**{c: tuple(a for a in found if a) for c, found in seeds.items()}),
    )


def profile_from(form: dict[str, Any]) -> eventtypes.Profile:
    """The test profile a profile form describes: its name, recipient and ctx (JSON)."""
    for field in ("recipient", "ctx"):
        if len(str(form.get(field, ""))) > 200_000:
            raise FormError("at most 200,000 characters", f"$.{field}")
    return eventtypes.Profile(
        str(form.get("name", "")).strip(),
        _json(str(form.get("recipient", "")), _recipient, "$.recipient"),
        _json(str(form.get("ctx", "")), _object, "$.ctx"),
    )


def seed_values(seeds: eventtypes.Seeds) -> dict[str, str]:
    """Seed addresses as the form's textareas show them (one a line)."""
    return {f"seeds.{c}": "\n".join(seeds.of(model.Channel(c))) for c in ("email", "sms", "push")}


def schema_text(schema: ctxschema.Schema) -> str:
    """A ctx schema as the form's textarea shows it."""
    return frame.pretty_json(schema) if schema else "[]"


def handlers(app: App) -> list[HTTPRouteHandler]:
    """The event type pages for ``app``."""
    db = app.db
    signed_in = auth.require(db)
    designer = auth.require(db, DESIGNER)

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
            "eventtypes.html",
            status=status,
            types=await eventtypes.list_all(db),
            may_design=may_design(request),
            error=f"Not created: {error} (at {field})" if field else error,
            field=field,
            form=form or {},
        )

    async def type_page(
        request: Request[Any, Any, Any],
        info: eventtypes.EventTypeInfo,
        *,
        status: int = 200,
        notice: str = "",
        error: str = "",
        field: str = "",
        form: dict[str, Any] | None = None,
        profile_form: dict[str, Any] | None = None,
        refused: str = "Not saved",
    ) -> Response[str]:
        published = {}
        for channel in info.channels:
            try:
                found = await publishing.publication(db, info.name, channel)
            except errors.NotFound:
                continue
            published[str(channel)] = found.versionNumber
        return frame.page(
            request,
            "eventtype.html",
            status=status,
            info=info,
            info_values={**msgspec.structs.asdict(info), **seed_values(info.seeds)},
            schema=form["ctxSchema"] if form else schema_text(info.ctxSchema),
            form=form or {},
            examples=eventtypes.examples(info, app.settings),
            published=published,
            profiles=await eventtypes.profiles(db, info.name),
            profile_form=profile_form or {},
            example_ctx=ctxschema.example_ctx(info.ctxSchema),
            may_design=may_design(request),
            notice=notice,
            error=f"{refused}: {error} (at {field})" if field else error,
            field=field,
        )

    @get("/event-types", guards=[signed_in], include_in_schema=False)
    async def list_types(request: Request[Any, Any, Any]) -> Response[str]:
        return await list_page(request)

    @post("/event-types", guards=[designer], include_in_schema=False, status_code=303)
    async def create_type(request: Request[Any, Any, Any]) -> Response[str]:
        submitted = await request.form()
        form: dict[str, Any] = {**submitted, "channels": submitted.getall("channels", [])}
        name = str(form.get("name", "")).strip()[:64]
        try:
            definition = definition_from(form, form["channels"], name)
            created = await eventtypes.create(db, definition)
        except FormError as exc:
            return await list_page(request, status=422, error=str(exc), field=exc.field, form=form)
        except errors.ControlError as exc:
            return await list_page(
                request, status=exc.status, error=exc.message, field=exc.field or "", form=form
            )
        await app.refresh_routing()
        return Response(
            "",
            status_code=303,
            headers={"Location": f"{auth.PATH}/event-types/{created.name}?created=1"},
        )

    @get("/event-types/{name:str}", guards=[signed_in], include_in_schema=False)
    async def show_type(request: Request[Any, Any, Any], name: FromPath[str]) -> Response[str]:
        try:
            info = await eventtypes.get(db, name)
        except errors.NotFound as exc:
            return frame.not_found(request, exc.message)
        query = request.query_params
        notice = f"{name} is created." if query.get("created") == "1" else ""
        if query.get("profile") and query.get("done") in ("saved", "deleted"):
            notice = f"Test profile {query['profile'][:64]} is {query['done']}."
        return await type_page(request, info, notice=notice)

    @post("/event-types/{name:str}", guards=[designer], include_in_schema=False, status_code=200)
    async def update_type(request: Request[Any, Any, Any], name: FromPath[str]) -> Response[str]:
        try:
            info = await eventtypes.get(db, name)
        except errors.NotFound as exc:
            return frame.not_found(request, exc.message)
        submitted = await request.form()
        form: dict[str, Any] = {**submitted, "channels": submitted.getall("channels", [])}
        try:
            definition = definition_from(form, form["channels"], name)
            updated = await eventtypes.update(db, name, definition)
        except FormError as exc:
            return await type_page(
                request, info, status=422, error=str(exc), field=exc.field, form=form
            )
        except errors.ControlError as exc:
            return await type_page(
                request,
                info,
                status=exc.status,
                error=exc.message,
                field=exc.field or "",
                form=form,
            )
        await app.refresh_routing()
        return await type_page(request, updated, notice=f"{name} is saved.")

    @post(
        "/event-types/{name:str}/profiles",
        guards=[designer],
        include_in_schema=False,
        status_code=303,
    )
    async def save_profile(request: Request[Any, Any, Any], name: FromPath[str]) -> Response[str]:
        try:
            info = await eventtypes.get(db, name)
        except errors.NotFound as exc:
            return frame.not_found(request, exc.message)
        form: dict[str, Any] = dict((await request.form()).items())
        try:
            profile = profile_from(form)
            saved = await eventtypes.put_profile(db, name, profile)
        except (FormError, errors.ControlError) as exc:
            message = exc.message if isinstance(exc, errors.ControlError) else str(exc)
            where = exc.field or ""
            return await type_page(
                request,
                info,
                status=exc.status if isinstance(exc, errors.ControlError) else 422,
                error=message,
                field=where,
                profile_form=form,
                refused="Test profile not saved",
            )
        location = f"{auth.PATH}/event-types/{name}?profile={saved.name}&done=saved#profiles"
        return Response("", status_code=303, headers={"Location": location})

    @post(
        "/event-types/{name:str}/profiles/{profile:str}/delete",
        guards=[designer],
        include_in_schema=False,
        status_code=303,
    )
    async def delete_profile(
        request: Request[Any, Any, Any], name: FromPath[str], profile: FromPath[str]
    ) -> Response[str]:
        try:
            await eventtypes.delete_profile(db, name, profile)
        except errors.NotFound as exc:
            return frame.not_found(request, exc.message)
        location = f"{auth.PATH}/event-types/{name}?profile={profile}&done=deleted#profiles"
        return Response("", status_code=303, headers={"Location": location})

    return [list_types, create_type, show_type, update_type, save_profile, delete_profile]
