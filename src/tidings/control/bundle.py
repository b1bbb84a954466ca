"""A publication's frozen bundle, and the compile step that makes its content.

Compiling a template version for publication (and for preview, which shows what would be
published) does, once and never per message:

1. resolve content block includes (:mod:`tidings.control.blocks`), freezing their text;
2. email HTML written in MJML (it starts with ``<mjml``) is compiled to HTML with
   ``mjml-python``;
3. ``<style>`` rules are inlined into ``style`` attributes with ``css-inline`` (remote
   stylesheets are never fetched);
4. an empty text part is generated from the HTML with ``inscriptis``.

Jinja tags survive each step: before MJML and CSS inlining they are swapped for markers an
HTML parser keeps where they stand (``{% ... %}`` as comments, so a loop between table rows
is not moved out of the table; ``{{ ... }}`` as plain words), and swapped back afterwards.

A :class:`Bundle` is everything a publication routes by: the event type's schema and
language settings, the compiled content in the fallback language and each language variant,
and the block versions used; it is immutable and content-hashed, so it can be shipped to an
execution instance as it is.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

import css_inline
import inscriptis
import mjml
import msgspec

from tidings import model
from tidings.control import blocks, ctxschema, errors

_TAG = re.compile(r"\{%.*?%\}|\{#.*?#\}", re.S)
_EXPRESSION = re.compile(r"\{\{.*?\}\}", re.S)
_TABLE_PART = re.compile(r"<(/?)(?:table|tbody|thead|tfoot|tr|td|th)\b[^>]*>", re.I)
_inliner = css_inline.CSSInliner(load_remote_stylesheets=False, keep_style_tags=False)


class Bundle(msgspec.Struct, frozen=True):
    """A frozen publication: what routing and rendering need, and where it came from."""

    eventType: str
    channel: model.Channel
    versionNumber: int
    content: model.Content
    variants: dict[str, model.Content]
    languageField: str
    fallbackLanguage: str
    blocks: dict[str, int]
    ctxSchema: ctxschema.Schema
    validation: str


def is_mjml(html: str) -> bool:
    """Whether an email's HTML is MJML source."""
    return html.lstrip()[:5].lower() == "<mjml"


class _Shield:
    """Swaps Jinja markup for markers an HTML parser leaves in place, and back."""

    def __init__(self) -> None:
        self.saved: list[str] = []

    def hide(self, text: str) -> str:
        def tag(match: re.Match[str]) -> str:
            self.saved.append(match.group(0))
            return f"<!--tidings-jinja-{len(self.saved) - 1}-->"

        def expression(match: re.Match[str]) -> str:
            self.saved.append(match.group(0))
            return f"tidingsjinja{len(self.saved) - 1}x"

        return _EXPRESSION.sub(expression, _TAG.sub(tag, text))

    def show(self, text: str) -> str:
        for index in range(len(self.saved) - 1, -1, -1):
            original = self.saved[index]
            text = text.replace(f"<!--tidings-jinja-{index}-->", original)
            text = text.replace(f"&lt;!--tidings-jinja-{index}--&gt;", original)
            text = text.replace(f"tidingsjinja{index}x", original)
        return text


def compile_mjml(source: str) -> str:
    """MJML to HTML, Jinja markup kept; :class:`~tidings.control.errors.Invalid`
    (``mjml_error``) if MJML refuses it."""
    shield = _Shield()
    try:
        html = mjml.mjml2html(shield.hide(source))
    except ValueError as exc:
        raise errors.Invalid("mjml_error", f"MJML: {exc}", field="html") from None
    return shield.show(html)


def inline_css(html: str) -> str:
    """``<style>`` rules moved into ``style`` attributes (no remote stylesheet fetched)."""
    if "<style" not in html.lower():
        return html
    shield = _Shield()
    try:
        inlined = _inliner.inline(shield.hide(html))
    except ValueError as exc:
        raise errors.Invalid("css_error", f"CSS inlining: {exc}", field="html") from None
    return shield.show(inlined)


def text_of(html: str) -> str:
    """A text part made from HTML (Jinja markup kept as it is, in place: table cells are
    read as blocks, so a loop over rows stays around its rows)."""
    shield = _Shield()
    html = _TABLE_PART.sub(lambda m: f"<{m.group(1)}div>", html)
    hidden = _TAG.sub(lambda m: f" {_remember(shield, m.group(0))} ", html)
    hidden = _EXPRESSION.sub(lambda m: _remember(shield, m.group(0)), hidden)
    return shield.show(inscriptis.get_text(hidden)).strip() + "\n"


def _remember(shield: _Shield, text: str) -> str:
    shield.saved.append(text)
    return f"tidingsjinja{len(shield.saved) - 1}x"


def compile_content(
    content: model.Content, sources: Mapping[str, str], used: dict[str, str] | None = None
) -> model.Content:
    """The content as it is published: blocks resolved, MJML compiled, CSS inlined, text
    part generated. ``used`` collects the blocks resolved."""

    def resolve(text: str) -> str:
        return blocks.resolve(text, sources, used)

    if isinstance(content, model.EmailContent):
        html = resolve(content.html)
        if is_mjml(html):
            html = compile_mjml(html)
        if html:
            html = inline_css(html)
        text = resolve(content.text)
        if not text.strip() and html:
            text = text_of(html)
        return model.EmailContent(
            subject=resolve(content.subject),
            html=html,
            text=text,
            sender_name=content.sender_name,
            sender_address=content.sender_address,
            reply_to=content.reply_to,
            headers={k: resolve(v) for k, v in content.headers.items()},
        )
    if isinstance(content, model.SmsContent):
        return model.SmsContent(text=resolve(content.text), sender=content.sender)
    if isinstance(content, model.PushContent):
        return model.PushContent(
            title=resolve(content.title),
            body=resolve(content.body),
            data={k: resolve(v) for k, v in content.data.items()},
            sound=content.sound,
            badge=content.badge,
            collapse_id=content.collapse_id,
        )
    return model.WebhookContent(
        url=resolve(content.url),
        body=resolve(content.body),
        headers={k: resolve(v) for k, v in content.headers.items()},
    )
