"""Rendering: a published template version plus an event's data gives a message.

Each channel's content compiles to its own form and renders to its message type: email
(subject, HTML, text, headers), SMS (text; the transport encodes and splits it), push (title,
body, data values, badge, collapse id; the device token's platform picks APNs or FCM, see
:func:`push_platform`) and webhook (URL, headers, a body that must render to JSON: use the
``tojson`` filter for values, ``{"name": {{ ctx.firstName|tojson }}}``).

Templates are Jinja2 run in a ``SandboxedEnvironment`` (a template cannot reach Python
internals, whoever wrote it), compiled once per published version and cached. They see:

- ``ctx``: the event's context (``{{ ctx.firstName }}``),
- ``recipient``: ``email``, ``mobilePhone``, ``pushToken``, ``externalId``,
- ``event``: ``id``, ``type``, ``receivedAt``,
- with reconciliation and enrichment (engine/reconciliation.py, enrichment.py): ``profile``,
  ``language`` and ``enrichment``.

A missing variable renders as an empty string, as in Adobe's personalisation; validation at
publish time is where unknown variables are caught. HTML is autoescaped; subject and text are
not. Errors raised while rendering (a failing filter, a sandbox violation) become
:class:`RenderError`.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Mapping
from typing import Any

import jinja2
import jinja2.sandbox
import jinja2.utils
import markupsafe
import msgspec

from tidings import clock, model


class RenderError(Exception):
    """A template could not be compiled or rendered; the message says where and why."""


class CompiledEmail(msgspec.Struct, frozen=True):
    """One published email version, compiled."""

    version_id: int
    subject: Any
    html: Any | None
    text: Any | None
    sender: model.EmailAddress
    reply_to: model.EmailAddress | None
    headers: tuple[tuple[str, Any], ...]


class CompiledSms(msgspec.Struct, frozen=True):
    """One published SMS version, compiled."""

    version_id: int
    text: Any
    sender: str


class CompiledPush(msgspec.Struct, frozen=True):
    """One published push version, compiled (``badge``/``collapse_id``: None when unset)."""

    version_id: int
    title: Any
    body: Any
    data: tuple[tuple[str, Any], ...]
    sound: str
    badge: Any | None
    collapse_id: Any | None


class CompiledWebhook(msgspec.Struct, frozen=True):
    """One published webhook version, compiled."""

    version_id: int
    url: Any
    body: Any
    headers: tuple[tuple[str, Any], ...]


Compiled = CompiledEmail | CompiledSms | CompiledPush | CompiledWebhook
Message = model.EmailMessage | model.SmsMessage | model.PushMessage | model.WebhookMessage

# Deterministic per event, so a retry carries the same id (APNs wants a UUID in apns-id).
_MESSAGE_NAMESPACE = uuid.UUID("6f1c1d2e-7a55-4d3c-9a64-1b2f0e6c9d10")
# An APNs device token is 32 bytes written as 64 hex digits; FCM registration tokens are
# longer and not hex.
_APNS_TOKEN = re.compile(r"[0-9a-fA-F]{64}")


def message_uuid(event_id: int) -> str:
    """A UUID that stays the same for every attempt at one event's message."""
    return str(uuid.uuid5(_MESSAGE_NAMESPACE, str(event_id)))


def push_platform(token: str) -> model.PushPlatform:
    """Which gateway a device token belongs to: an ``apns:`` or ``fcm:`` prefix says so;
    otherwise 64 hex digits are an APNs token and anything else an FCM registration token."""
    if token.startswith("apns:"):
        return model.PushPlatform.APNS
    if token.startswith("fcm:"):
        return model.PushPlatform.FCM
    return model.PushPlatform.APNS if _APNS_TOKEN.fullmatch(token) else model.PushPlatform.FCM


def push_token(token: str) -> str:
    """The token without its platform prefix."""
    platform, sep, rest = token.partition(":")
    return rest if sep and platform in ("apns", "fcm") else token


class _Environment(jinja2.sandbox.SandboxedEnvironment):
    """The sandbox, with ``ctx.items`` meaning the ctx field ``items``: event data is user
    data, so on a dict a key wins over a method of the same name (``items``, ``keys``...)."""

    def getattr(self, obj: Any, attribute: str) -> Any:
        if type(obj) is dict:
            try:
                return obj[attribute]
            except KeyError:
                pass
        return super().getattr(obj, attribute)


def _tojson(value: Any) -> markupsafe.Markup:
    """Jinja2's ``tojson`` (``<``, ``>``, ``&`` and ``'`` escaped, so the output is safe in
    HTML too), with a missing value written as ``null``, as a missing ctx field renders empty
    elsewhere rather than failing the message."""
    if isinstance(value, jinja2.Undefined):
        value = None
    return jinja2.utils.htmlsafe_json_dumps(value)


def _environment(autoescape: bool) -> jinja2.sandbox.SandboxedEnvironment:
    env = _Environment(
        autoescape=autoescape,
        undefined=jinja2.ChainableUndefined,
        keep_trailing_newline=True,
        auto_reload=False,
        cache_size=0,
    )
    env.filters["tojson"] = _tojson
    return env


def parse_address(text: str) -> model.EmailAddress:
    """``Name <addr@example.com>`` or a bare address."""
    text = text.strip()
    if text.endswith(">") and "<" in text:
        name, _, addr = text[:-1].rpartition("<")
        return model.EmailAddress(addr.strip(), name.strip().strip('"').strip())
    return model.EmailAddress(text)


class Renderer:
    """Compiles published versions (cached by version id) and renders events with them."""

    def __init__(
        self,
        *,
        default_sender: str,
        message_id_domain: str = "",
        bounce_address: str = "",
        cache_size: int = 512,
    ):
        self._html = _environment(autoescape=True)
        self._text = _environment(autoescape=False)
        self.default_sender = parse_address(default_sender)
        self.message_id_domain = message_id_domain  # empty: each message's sender's domain
        local, _, domain = bounce_address.rpartition("@")
        self._verp = (local, domain) if local else None
        self._compiled: dict[tuple[int, int, str], Compiled] = {}
        self._cache_size = cache_size

    def _template(self, env: jinja2.Environment, source: str, part: str) -> Any:
        try:
            return env.from_string(source)
        except jinja2.TemplateSyntaxError as exc:
            raise RenderError(f"{part}: line {exc.lineno}: {exc.message}") from exc

    def compile_email(self, publication: model.Publication) -> CompiledEmail:
        """The compiled form of a published email version (compiled once, then cached)."""
        compiled = self.compile(publication)
        if not isinstance(compiled, CompiledEmail):
            raise RenderError(f"version {publication.version_id} is not an email template")
        return compiled

    def compile(self, publication: model.Publication, language: str = "") -> Compiled:
        """The compiled form of a published version of any channel, in ``language`` (one of
        its variants) or else its fallback content; cached by (version, proof, language)."""
        key = (publication.version_id, publication.proof_id or 0, language)
        compiled = self._compiled.get(key)
        if compiled is None:
            content = publication.variants[language] if language else publication.content
            compiled = self._compile_any(content, publication.version_id)
            if len(self._compiled) >= self._cache_size:
                self._compiled.pop(next(iter(self._compiled)))
            self._compiled[key] = compiled
        return compiled

    def check_email(self, content: model.EmailContent) -> None:
        """Raise :class:`RenderError` if ``content`` does not compile (nothing is cached)."""
        self._compile(content, -1)

    def check(self, content: model.Content) -> None:
        """Raise :class:`RenderError` if ``content`` (any channel) does not compile."""
        self._compile_any(content, -1)

    def _compile_any(self, content: model.Content, version_id: int) -> Compiled:
        if isinstance(content, model.EmailContent):
            return self._compile(content, version_id)
        text = self._text
        if isinstance(content, model.SmsContent):
            return CompiledSms(
                version_id, self._template(text, content.text, "text"), content.sender
            )
        if isinstance(content, model.PushContent):
            return CompiledPush(
                version_id=version_id,
                title=self._template(text, content.title, "title"),
                body=self._template(text, content.body, "body"),
                data=tuple(
                    (k, self._template(text, v, f"data {k}")) for k, v in content.data.items()
                ),
                sound=content.sound,
                badge=self._template(text, content.badge, "badge") if content.badge else None,
                collapse_id=(
                    self._template(text, content.collapse_id, "collapse_id")
                    if content.collapse_id
                    else None
                ),
            )
        return CompiledWebhook(
            version_id=version_id,
            url=self._template(text, content.url, "url"),
            body=self._template(text, content.body, "body"),
            headers=tuple(
                (k, self._template(text, v, f"header {k}")) for k, v in content.headers.items()
            ),
        )

    def _compile(self, content: model.EmailContent, version_id: int) -> CompiledEmail:
        sender = (
            model.EmailAddress(content.sender_address, content.sender_name)
            if content.sender_address
            else model.EmailAddress(
                self.default_sender.address, content.sender_name or self.default_sender.name
            )
        )
        return CompiledEmail(
            version_id=version_id,
            subject=self._template(self._text, content.subject, "subject"),
            html=self._template(self._html, content.html, "html") if content.html else None,
            text=self._template(self._text, content.text, "text") if content.text else None,
            sender=sender,
            reply_to=parse_address(content.reply_to) if content.reply_to else None,
            headers=tuple(
                (name, self._template(self._text, value, f"header {name}"))
                for name, value in content.headers.items()
            ),
        )

    def message_id(self, event_id: int, sender: model.EmailAddress | None = None) -> str:
        """The Message-ID of an event's email (stable across retries), without brackets: in
        the ``message_id_domain`` setting, or else the sender's domain (as receivers and DKIM
        alignment expect)."""
        domain = (
            self.message_id_domain or (sender or self.default_sender).address.rpartition("@")[2]
        )
        return f"{event_id}.tidings@{domain or 'localhost'}"

    def render(
        self, compiled: Compiled, event: model.Event, extra: Mapping[str, Any] | None = None
    ) -> Message:
        """The message ``event`` gets from ``compiled``, whatever its channel; ``extra``
        variables (``profile``, ``language``, ``enrichment``) join the event's."""
        if isinstance(compiled, CompiledEmail):
            return self.render_email(compiled, event, extra)
        variables = {**self._text.globals, **template_variables(event)}
        if extra:
            variables.update(extra)
        try:
            if isinstance(compiled, CompiledSms):
                return model.SmsMessage(
                    event_id=event.id,
                    reference=str(event.id),
                    to=event.recipient.mobilePhone or "",
                    text=_render(compiled.text, variables).strip(),
                    sender=compiled.sender,
                    expires_at=event.expires_at,
                )
            if isinstance(compiled, CompiledPush):
                return self._render_push(compiled, event, variables)
            return self._render_webhook(compiled, event, variables)
        except jinja2.TemplateError as exc:
            raise RenderError(f"template error: {exc}") from exc
        except (TypeError, ValueError, ArithmeticError, LookupError) as exc:
            raise RenderError(f"template error: {type(exc).__name__}: {exc}") from exc

    @staticmethod
    def _render_push(
        compiled: CompiledPush, event: model.Event, variables: dict[str, Any]
    ) -> model.PushMessage:
        token = event.recipient.pushToken or ""
        badge = None
        if compiled.badge is not None:
            text = _render(compiled.badge, variables).strip()
            if text:
                try:
                    badge = int(text)
                except ValueError:
                    raise RenderError(f"badge: {text!r} is not a whole number") from None
        collapse = "" if compiled.collapse_id is None else _render(compiled.collapse_id, variables)
        return model.PushMessage(
            event_id=event.id,
            message_id=message_uuid(event.id),
            platform=push_platform(token),
            token=push_token(token),
            title=" ".join(_render(compiled.title, variables).split()),
            body=_render(compiled.body, variables).strip(),
            data={k: _render(t, variables) for k, t in compiled.data},
            sound=compiled.sound,
            badge=badge,
            collapse_id=collapse.strip(),
            expires_at=event.expires_at,
        )

    @staticmethod
    def _render_webhook(
        compiled: CompiledWebhook, event: model.Event, variables: dict[str, Any]
    ) -> model.WebhookMessage:
        body = _render(compiled.body, variables)
        try:
            json.loads(body)
        except ValueError as exc:
            raise RenderError(f"body: the rendered body is not JSON: {exc}") from None
        return model.WebhookMessage(
            event_id=event.id,
            message_id=message_uuid(event.id),
            url=_render(compiled.url, variables).strip(),
            body=body,
            headers=tuple(
                (name, " ".join(_render(t, variables).split())) for name, t in compiled.headers
            ),
        )

    def render_email(
        self, compiled: CompiledEmail, event: model.Event, extra: Mapping[str, Any] | None = None
    ) -> model.EmailMessage:
        """The email ``event`` gets from ``compiled``."""
        # One context dict for every part, built once (``Template.render`` would copy the
        # variables and the environment's globals again for each part).
        variables = {**self._text.globals, **template_variables(event)}
        if extra:
            variables.update(extra)
        try:
            subject = " ".join(_render(compiled.subject, variables).split())
            html = _render(compiled.html, variables) if compiled.html is not None else ""
            text = _render(compiled.text, variables) if compiled.text is not None else ""
            headers = tuple(
                (name, " ".join(_render(t, variables).split())) for name, t in compiled.headers
            )
        except jinja2.TemplateError as exc:
            raise RenderError(f"template error: {exc}") from exc
        except (TypeError, ValueError, ArithmeticError, LookupError) as exc:
            raise RenderError(f"template error: {type(exc).__name__}: {exc}") from exc
        return model.EmailMessage(
            event_id=event.id,
            message_id=self.message_id(event.id, compiled.sender),
            sender=compiled.sender,
            to=model.EmailAddress(event.recipient.email or ""),
            subject=subject,
            html=html,
            text=text,
            reply_to=compiled.reply_to,
            headers=headers,
            return_path=self.return_path(event.id),
        )

    def return_path(self, event_id: int) -> str:
        """The envelope sender of an event's email: ``local+<event id>@domain`` of the
        ``bounce_address`` setting (VERP), or empty (the sender's address) without one."""
        if self._verp is None:
            return ""
        return f"{self._verp[0]}+{event_id}@{self._verp[1]}"


def _render(template: Any, variables: dict[str, Any]) -> str:
    """``template.render(variables)`` without copying ``variables`` (Jinja2's low-level API:
    a shared context reads the dict as it is and never writes to it). The context is made as
    ``template.new_context(variables, shared=True)`` makes it, with the environment's globals
    dict where that passes ``template.globals``, a ``ChainMap`` over the same dict (our
    templates have no globals of their own) that costs a Python-level walk per part."""
    env = template.environment
    context = env.context_class(env, variables, template.name, template.blocks, env.globals)
    return str(env.concat(template.root_render_func(context)))


def template_variables(event: model.Event) -> dict[str, Any]:
    """What a template sees of an event."""
    r = event.recipient
    return {
        "ctx": event.ctx,
        "recipient": {
            "email": r.email,
            "mobilePhone": r.mobilePhone,
            "pushToken": r.pushToken,
            "externalId": r.externalId,
        },
        "event": {
            "id": str(event.id),
            "type": event.type,
            "receivedAt": clock.format_iso(event.received_at),
        },
    }
