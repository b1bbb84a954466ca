"""The template editor: one page per event type and channel, with the channel's fields, a
live preview beside them, the validation findings at their line and column, the version
history (diff, restore) and publishing. A language selector edits one language variant at a
time (``?language=fr``: its fields, its preview; saving keeps the other variants) and removes
one (a new version without it).

The preview is asked for on input (HTMX, after a short pause) with the fields as typed and
a chosen test profile; it saves nothing. Email HTML is shown in an ``<iframe sandbox="">``
that the editor form is posted into (``preview.html``, served with the explorer's sandbox
policy), never inside a console page. Every operator may read the editor and preview;
designers and admins save, restore and publish.
"""

from __future__ import annotations

from typing import Any

import msgspec
from litestar import Request, Response, get, post
from litestar.handlers import HTTPRouteHandler
from litestar.params import FromPath

from tidings import model
from tidings.app import App
from tidings.console import auth, designer, explorer, frame
from tidings.control import distribution, errors, eventtypes, publishing, templates
from tidings.control import validation as checks
from tidings.engine import render

#: The fields the editor shows for each channel; the others are kept as the base version has them.
FIELDS: dict[model.Channel, tuple[tuple[str, str, int], ...]] = {
    model.Channel.EMAIL: (
        ("subject", "Subject", 1),
        ("sender_name", "Sender name", 1),
        ("sender_address", "Sender address", 1),
        ("html", "HTML (or MJML)", 16),
        ("text", "Text part", 6),
    ),
    model.Channel.SMS: (("text", "Text", 6),),
    model.Channel.PUSH: (("title", "Title", 1), ("body", "Body", 4)),
    model.Channel.WEBHOOK: (("url", "URL", 1), ("body", "JSON body", 12)),
}
EMPTY: dict[model.Channel, model.Content] = {
    model.Channel.EMAIL: model.EmailContent(subject="", html=""),
    model.Channel.SMS: model.SmsContent(text=""),
    model.Channel.PUSH: model.PushContent(title="", body=""),
    model.Channel.WEBHOOK: model.WebhookContent(url="", body=""),
}


class Unknown(Exception):
    """The event type, channel or version named in the path does not exist."""


def _number(text: str | None) -> int | None:
    return int(text) if text and text.isdigit() and len(text) < 10 else None


def values_of(content: model.Content) -> dict[str, str]:
    """The editable fields of a content, as text."""
    channel = model.CONTENT_CHANNEL[type(content)]
    return {name: str(getattr(content, name)) for name, _, _ in FIELDS[channel]}


def language_of(form: Any) -> str:
    """The language variant a form or query names ('' for the default content)."""
    return str(form.get("language", "") or "").strip()[:20]


def draft_from(
    base: model.Content, variants: dict[str, model.Content], form: dict[str, Any]
) -> templates.Draft:
    """The draft the editor form holds: ``base`` with the edited fields replaced (line
    endings as the browser sends them, ``\\r\\n``, become ``\\n``); with a ``language``,
    that variant is edited instead (a new one starts from ``base``)."""
    channel = model.CONTENT_CHANNEL[type(base)]
    changes = {
        name: str(form.get(name, "")).replace("\r\n", "\n")
        for name, _, _ in FIELDS[channel]
        if name in form
    }
    language = language_of(form)
    if language:
        edited = msgspec.structs.replace(variants.get(language, base), **changes)
        return templates.Draft(base, {**variants, language: edited})
    return templates.Draft(msgspec.structs.replace(base, **changes), variants)


def shown_draft(draft: templates.Draft, language: str) -> templates.Draft:
    """What the preview renders: the variant being edited, or the default content."""
    if language and language in draft.variants:
        return templates.Draft(draft.variants[language], {})
    return draft


def handlers(app: App) -> list[HTTPRouteHandler]:
    """The template editor's routes for ``app``."""
    db = app.db
    sender = app.settings.default_sender
    signed_in = auth.require(db)
    designer_role = auth.require(db, designer.DESIGNER)
    base = "/event-types/{name:str}/{channel:str}"

    async def target(name: str, channel: str) -> tuple[eventtypes.EventTypeInfo, model.Channel]:
        try:
            info = await eventtypes.get(db, name)
            kind = model.Channel(channel)
        except (errors.NotFound, ValueError):
            raise Unknown(f"no {channel[:20]} template of {name[:64]!r}") from None
        if kind not in info.channels:
            raise Unknown(f"{name} does not allow the {kind} channel")
        return info, kind

    async def version_of(
        name: str, channel: model.Channel, number: int | None
    ) -> templates.Version | None:
        """Version ``number``, or the newest (None when there is none yet)."""
        if number is None:
            found = await templates.versions(db, name, channel)
            if not found:
                return None
            number = found[0].number
        try:
            return await templates.get(db, name, channel, number)
        except errors.NotFound:
            raise Unknown(f"no version {number} of the {channel} template of {name!r}") from None

    async def draft_of(name: str, channel: model.Channel, form: dict[str, Any]) -> templates.Draft:
        old = await version_of(name, channel, _number(str(form.get("base", ""))) or None)
        start = old.content if old is not None else EMPTY[channel]
        return draft_from(start, old.variants if old is not None else {}, form)

    def missing(request: Request[Any, Any, Any], exc: Unknown) -> Response[str]:
        return frame.page(request, "error.html", status=404, title="Not found", message=str(exc))

    async def editor_page(
        request: Request[Any, Any, Any],
        name: str,
        channel: str,
        *,
        number: int | None = None,
        status: int = 200,
        notice: str = "",
        error: str = "",
        issues: list[checks.Issue] | None = None,
        published_now: publishing.Published | None = None,
        values: dict[str, str] | None = None,
        language: str = "",
    ) -> Response[str]:
        try:
            info, kind = await target(name, channel)
            version = await version_of(name, kind, number)
        except Unknown as exc:
            return missing(request, exc)
        if language and not templates.LANGUAGE.match(language):
            error = error or f"{language!r} is not a language tag (fr, de-CH...)"
            status, language = 422, ""
        variants = version.variants if version else {}
        try:
            live = await publishing.publication(db, name, kind)
            published: int | None = live.versionNumber
        except errors.NotFound:
            published = None
        content = version.content if version else EMPTY[kind]
        shown = values or values_of(variants.get(language, content) if language else content)
        return frame.page(
            request,
            "editor.html",
            status=status,
            info=info,
            channel=str(kind),
            fields=FIELDS[kind],
            values=shown,
            version=version,
            versions=await templates.versions(db, name, kind),
            profiles=await eventtypes.profiles(db, name),
            seeds=info.seeds.of(kind),
            published=published,
            published_now=published_now,
            issues=issues or [],
            may_design=designer.may_design(request),
            notice=notice,
            error=error,
            language=language,
            languages=sorted(variants),
        )

    @get(base, guards=[signed_in], include_in_schema=False)
    async def edit(
        request: Request[Any, Any, Any], name: FromPath[str], channel: FromPath[str]
    ) -> Response[str]:
        query = request.query_params
        number = _number(query.get("version"))
        notice = ""
        if query.get("saved") and number:
            notice = f"Version {number} is saved."
        elif query.get("restored") and number:
            notice = f"Version {_number(query.get('restored'))} is restored as version {number}."
        elif query.get("unpublished"):
            notice = "Unpublished: events arriving now end routingFailed."
        elif query.get("removed"):
            notice = f"The {query['removed'][:20]} variant is removed in version {number}."
        return await editor_page(
            request, name, channel, number=number, notice=notice, language=language_of(query)
        )

    @post(f"{base}/preview", guards=[signed_in], include_in_schema=False, status_code=200)
    async def preview(
        request: Request[Any, Any, Any], name: FromPath[str], channel: FromPath[str]
    ) -> Response[str]:
        form = dict((await request.form()).items())
        try:
            _, kind = await target(name, channel)
            draft = await draft_of(name, kind, form)
            profile = str(form.get("profile", ""))[:64] or None
            issues = await publishing.check_draft(db, name, kind, draft, default_sender=sender)
            shown: publishing.Preview | None = None
            failed = ""
            try:
                shown = await publishing.preview_draft(
                    db,
                    name,
                    kind,
                    shown_draft(draft, language_of(form)),
                    profile=profile,
                    default_sender=sender,
                )
            except (errors.ControlError, render.RenderError, ValueError) as exc:
                failed = exc.message if isinstance(exc, errors.ControlError) else str(exc)
        except Unknown as exc:
            return Response(
                frame.render("preview.html", failed=str(exc), issues=[], preview=None),
                status_code=404,
                media_type=frame.HTML,
                headers=frame.HEADERS,
            )
        body = frame.render("preview.html", preview=shown, failed=failed, issues=issues)
        return Response(body, media_type=frame.HTML, headers=frame.HEADERS)

    @post(f"{base}/preview.html", guards=[signed_in], include_in_schema=False, status_code=200)
    async def preview_html(
        request: Request[Any, Any, Any], name: FromPath[str], channel: FromPath[str]
    ) -> Response[str]:
        form = dict((await request.form()).items())
        try:
            _, kind = await target(name, channel)
            draft = shown_draft(await draft_of(name, kind, form), language_of(form))
            profile = str(form.get("profile", ""))[:64] or None
            shown = await publishing.preview_draft(
                db, name, kind, draft, profile=profile, default_sender=sender
            )
            html = str(shown.message.get("html", ""))
        except (Unknown, errors.ControlError, render.RenderError, ValueError):
            html = ""
        return explorer.message_response(html or frame.render("preview_blank.html"))

    @post(f"{base}/versions", guards=[designer_role], include_in_schema=False, status_code=303)
    async def save(
        request: Request[Any, Any, Any], name: FromPath[str], channel: FromPath[str]
    ) -> Response[str]:
        form = dict((await request.form()).items())
        try:
            _, kind = await target(name, channel)
            draft = await draft_of(name, kind, form)
        except Unknown as exc:
            return missing(request, exc)
        who = auth.session_of(request).operator.name
        try:
            saved = await templates.save(db, name, kind, draft, who)
        except errors.ControlError as exc:
            where = f" ({exc.field})" if exc.field else ""
            language = language_of(form)
            return await editor_page(
                request,
                name,
                channel,
                status=exc.status,
                error=exc.message + where,
                values=values_of(shown_draft(draft, language).content),
                language=language if templates.LANGUAGE.match(language) else "",
            )
        location = f"{auth.PATH}/event-types/{name}/{kind}?version={saved.number}&saved=1"
        if language_of(form):
            location += f"&language={language_of(form)}"
        return Response("", status_code=303, headers={"Location": location})

    @post(
        f"{base}/languages/{{language:str}}/delete",
        guards=[designer_role],
        include_in_schema=False,
        status_code=303,
    )
    async def remove_language(
        request: Request[Any, Any, Any],
        name: FromPath[str],
        channel: FromPath[str],
        language: FromPath[str],
    ) -> Response[str]:
        try:
            _, kind = await target(name, channel)
            newest = await version_of(name, kind, None)
            if newest is None or language not in newest.variants:
                raise Unknown(
                    f"the {channel} template of {name!r} has no {language[:20]!r} variant"
                )
        except Unknown as exc:
            return missing(request, exc)
        rest = {k: v for k, v in newest.variants.items() if k != language}
        who = auth.session_of(request).operator.name
        saved = await templates.save(db, name, kind, templates.Draft(newest.content, rest), who)
        location = (
            f"{auth.PATH}/event-types/{name}/{kind}?version={saved.number}&removed={language}"
        )
        return Response("", status_code=303, headers={"Location": location})

    @post(
        f"{base}/versions/{{number:int}}/restore",
        guards=[designer_role],
        include_in_schema=False,
        status_code=303,
    )
    async def restore(
        request: Request[Any, Any, Any],
        name: FromPath[str],
        channel: FromPath[str],
        number: FromPath[int],
    ) -> Response[str]:
        try:
            _, kind = await target(name, channel)
            restored = await templates.restore(
                db, name, kind, number, auth.session_of(request).operator.name
            )
        except (Unknown, errors.NotFound) as exc:
            text = exc.message if isinstance(exc, errors.ControlError) else str(exc)
            return missing(request, Unknown(text))
        location = (
            f"{auth.PATH}/event-types/{name}/{kind}?version={restored.number}&restored={number}"
        )
        return Response("", status_code=303, headers={"Location": location})

    @get(f"{base}/diff", guards=[signed_in], include_in_schema=False)
    async def diff(
        request: Request[Any, Any, Any], name: FromPath[str], channel: FromPath[str]
    ) -> Response[str]:
        old = _number(request.query_params.get("from"))
        new = _number(request.query_params.get("to"))
        try:
            info, kind = await target(name, channel)
            if old is None or new is None:
                raise Unknown("choose two versions to compare")
            before = await version_of(name, kind, old)
            after = await version_of(name, kind, new)
        except Unknown as exc:
            return missing(request, exc)
        assert before is not None
        assert after is not None
        return frame.page(
            request,
            "diff.html",
            info=info,
            channel=str(kind),
            before=before,
            after=after,
            changes=templates.diff(before, after),
        )

    @post(f"{base}/publish", guards=[designer_role], include_in_schema=False, status_code=200)
    async def publish(
        request: Request[Any, Any, Any], name: FromPath[str], channel: FromPath[str]
    ) -> Response[str]:
        form = dict((await request.form()).items())
        number = _number(str(form.get("version", "")))
        try:
            _, kind = await target(name, channel)
        except Unknown as exc:
            return missing(request, exc)
        if number is None:
            return await editor_page(
                request, name, channel, status=422, error="save the template before publishing"
            )
        try:
            done = await distribution.publish(
                db, app.settings, name, kind, number, actor=auth.session_of(request).operator.name
            )
        except errors.ControlError as exc:
            return await editor_page(
                request,
                name,
                channel,
                number=number,
                status=exc.status,
                error=exc.message,
                issues=exc.issues if isinstance(exc, errors.Invalid) else [],
            )
        await app.refresh_routing()
        notice = (
            f"Version {number} is published."
            if done.changed
            else f"Version {number} was already published; nothing changed."
        )
        return await editor_page(
            request, name, channel, number=number, notice=notice, published_now=done
        )

    @post(f"{base}/unpublish", guards=[designer_role], include_in_schema=False, status_code=303)
    async def unpublish(
        request: Request[Any, Any, Any], name: FromPath[str], channel: FromPath[str]
    ) -> Response[str]:
        try:
            _, kind = await target(name, channel)
            await distribution.unpublish(
                db, app.settings, name, kind, actor=auth.session_of(request).operator.name
            )
        except Unknown as exc:
            return missing(request, exc)
        except errors.NotFound as exc:
            return await editor_page(request, name, channel, status=404, error=exc.message)
        await app.refresh_routing()
        location = f"{auth.PATH}/event-types/{name}/{kind}?unpublished=1"
        return Response("", status_code=303, headers={"Location": location})

    return [edit, preview, preview_html, save, remove_language, restore, diff, publish, unpublish]
