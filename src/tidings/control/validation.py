"""Validating a template version before it can be published.

:func:`validate` answers a list of :class:`Issue` (severity ``error``, ``warning`` or
``info``; a stable ``code``; a message; the ``field`` it is about, like ``subject``,
``variants.fr.html`` or ``block:footer``; and a 1-based ``line`` and ``column`` when they are
known). A version with an ``error`` cannot be published. Codes:

=========================  =========================================================
``template_syntax``        Jinja cannot parse the field
``unknown_variable``       ``ctx.x.y`` that the event type's ctx schema does not define
                           (a loop over a collection binds the item's fields)
``unknown_block``          ``{% include "block:name" %}`` of a block that does not exist
``invalid_include``        an include of anything but a block
``missing_subject``        an email without a subject
``missing_sender``         an email without a sender, and no default sender configured
``missing_body``           an email without HTML and text, an SMS without text, a push
                           without title and body, a webhook without URL or body
``unclosed_tag``           HTML with an element never closed (``<div>`` ... end)
``mismatched_tag``         an end tag that closes nothing open (``</b>`` without ``<b>``)
``mjml_error``             MJML that does not compile
``render_error``           the field fails to render with the schema's example ctx
``webhook_body_not_json``  the webhook body does not render to JSON
``sms_segments``           (info) the SMS's length in segments, and its encoding
``sms_ucs2``               (warning) a character outside GSM-7 makes the SMS UCS-2
=========================  =========================================================
"""

from __future__ import annotations

import html.parser
import json
import re
from collections.abc import Mapping
from typing import Any

import jinja2
import jinja2.nodes
import jinja2.sandbox
import msgspec

from tidings import clock, model
from tidings.control import blocks, bundle, ctxschema, errors, segments
from tidings.engine import render

_VOID = frozenset(
    [
        "area",
        "base",
        "br",
        "col",
        "embed",
        "hr",
        "img",
        "input",
        "link",
        "meta",
        "param",
        "source",
        "track",
        "wbr",
    ]
)
# End tags HTML lets an author leave out: a missing one does not break rendering.
_OPTIONAL_END = frozenset(
    [
        "p",
        "li",
        "dt",
        "dd",
        "tr",
        "td",
        "th",
        "thead",
        "tbody",
        "tfoot",
        "option",
        "optgroup",
        "colgroup",
        "caption",
        "rp",
        "rt",
        "html",
        "head",
        "body",
    ]
)
_OPEN = re.compile(r"\{\{|\{%")


class Issue(msgspec.Struct, frozen=True, omit_defaults=True):
    """One validation finding."""

    severity: str
    code: str
    message: str
    field: str = ""
    line: int | None = None
    column: int | None = None


def has_errors(issues: list[Issue]) -> bool:
    """Whether any issue blocks publishing."""
    return any(i.severity == "error" for i in issues)


_env = jinja2.sandbox.SandboxedEnvironment()

# A schema level for the variable walk: field name -> Field; None means "anything goes".
_Level = dict[str, ctxschema.Field] | None


class _Variables:
    """Walks a template's AST, reporting ``ctx`` paths the schema does not define."""

    def __init__(self, schema: ctxschema.Schema, source: str, field: str):
        self.root: _Level = {f.name: f for f in schema}
        self.lines = source.splitlines()
        self.field = field
        self.issues: list[Issue] = []
        self.seen: set[str] = set()

    def column(self, line: int, text: str) -> int | None:
        if 0 < line <= len(self.lines):
            found = self.lines[line - 1].find(text)
            return found + 1 if found >= 0 else None
        return None

    def chain(self, node: jinja2.nodes.Node) -> tuple[str, list[str | int]] | None:
        """``ctx.a[0].b`` as ("ctx", ["a", 0, "b"]); None if not a plain chain."""
        steps: list[str | int] = []
        while True:
            if isinstance(node, jinja2.nodes.Getattr):
                steps.append(node.attr)
                node = node.node
            elif isinstance(node, jinja2.nodes.Getitem) and isinstance(
                node.arg, jinja2.nodes.Const
            ):
                if not isinstance(node.arg.value, str | int):
                    return None
                steps.append(node.arg.value)
                node = node.node
            elif isinstance(node, jinja2.nodes.Name):
                return node.name, steps[::-1]
            else:
                return None

    def level_of(
        self, name: str, steps: list[str | int], scope: dict[str, _Level], node: jinja2.nodes.Node
    ) -> tuple[_Level, bool]:
        """The schema level a chain reaches (for loops) and whether it names a collection."""
        if name == "ctx":
            level: _Level = self.root
        elif name in scope:
            level = scope[name]
        else:
            return None, False
        path = name
        is_collection = False
        for step in steps:
            if level is None:
                return None, False
            if isinstance(step, int):
                if not is_collection:
                    return None, False
                is_collection = False
                path += f"[{step}]"
                continue
            found = None if is_collection else level.get(step)
            where = path
            path += f".{step}"
            if found is None:
                message = (
                    f"{where} is a collection: loop over it or index it ({where}[0].{step})"
                    if is_collection
                    else f"{path} is not in the event type's ctx schema"
                )
                if path not in self.seen:
                    self.seen.add(path)
                    self.issues.append(
                        Issue(
                            "error",
                            "unknown_variable",
                            message,
                            self.field,
                            node.lineno,
                            self.column(node.lineno, path.split("[")[0]),
                        )
                    )
                return None, False
            if found.type is ctxschema.FieldType.COLLECTION:
                level = {f.name: f for f in found.fields}
                is_collection = True
            else:
                level, is_collection = None, False
        return level, is_collection

    def visit(self, node: jinja2.nodes.Node, scope: dict[str, _Level]) -> None:
        if isinstance(node, jinja2.nodes.For):
            self.visit(node.iter, scope)
            inner = dict(scope)
            chain = self.chain(node.iter)
            item: _Level = None
            if chain is not None:
                level, is_collection = self.level_of(*chain, scope, node.iter)
                item = level if is_collection else None
            if isinstance(node.target, jinja2.nodes.Name):
                inner[node.target.name] = item
            for target in node.target.find_all(jinja2.nodes.Name):  # for k, v in ...
                inner[target.name] = None
            for child in (*node.body, *node.else_):
                self.visit(child, inner)
            if node.test is not None:
                self.visit(node.test, inner)
            return
        if isinstance(node, jinja2.nodes.Getattr | jinja2.nodes.Getitem):
            chain = self.chain(node)
            if chain is not None:
                self.level_of(*chain, scope, node)
                return
        if isinstance(node, jinja2.nodes.Assign | jinja2.nodes.With):
            # ``{% set x = ... %}`` names are the template's own: never check them.
            for target in node.find_all(jinja2.nodes.Name):
                if target.ctx == "store":
                    scope = {**scope, target.name: None}
        for child in node.iter_child_nodes():
            self.visit(child, scope)


def _syntax(source: str, field: str) -> tuple[jinja2.nodes.Template | None, list[Issue]]:
    try:
        return _env.parse(source), []
    except jinja2.TemplateSyntaxError as exc:
        line = exc.lineno or 1
        lines = source.splitlines()
        column = 1
        if 0 < line <= len(lines):
            # Jinja knows the line only: point at the first tag on it.
            match = _OPEN.search(lines[line - 1])
            column = match.start() + 1 if match else 1
        return None, [
            Issue("error", "template_syntax", exc.message or str(exc), field, line, column)
        ]


def _template_issues(
    source: str, field: str, schema: ctxschema.Schema, sources: Mapping[str, str]
) -> list[Issue]:
    tree, issues = _syntax(source, field)
    if tree is None:
        return issues
    if schema:
        walker = _Variables(schema, source, field)
        walker.visit(tree, {})
        issues.extend(walker.issues)
    for include in tree.find_all(jinja2.nodes.Include):
        name = include.template
        text = name.value if isinstance(name, jinja2.nodes.Const) else None
        if not isinstance(text, str) or not text.startswith("block:"):
            issues.append(
                Issue(
                    "error",
                    "invalid_include",
                    'only content blocks can be included: {% include "block:name" %}',
                    field,
                    include.lineno,
                )
            )
        elif text[6:] not in sources:
            issues.append(
                Issue(
                    "error",
                    "unknown_block",
                    f"there is no content block {text[6:]!r}",
                    field,
                    include.lineno,
                    walker_column(source, include.lineno, text),
                )
            )
    return issues


def walker_column(source: str, line: int, text: str) -> int | None:
    """The 1-based column of ``text`` on ``line`` of ``source``."""
    lines = source.splitlines()
    if 0 < line <= len(lines):
        found = lines[line - 1].find(text)
        return found + 1 if found >= 0 else None
    return None


class _Tags(html.parser.HTMLParser):
    def __init__(self, field: str):
        super().__init__(convert_charrefs=True)
        self.field = field
        self.stack: list[tuple[str, int, int]] = []
        self.issues: list[Issue] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag not in _VOID:
            line, offset = self.getpos()
            self.stack.append((tag, line, offset + 1))

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        pass  # <br/>, <div/>: nothing stays open

    def handle_endtag(self, tag: str) -> None:
        if tag in _VOID:
            return
        if not any(t == tag for t, _, _ in self.stack):
            line, offset = self.getpos()
            self.issues.append(
                Issue(
                    "error",
                    "mismatched_tag",
                    f"</{tag}> closes no open <{tag}>",
                    self.field,
                    line,
                    offset + 1,
                )
            )
            return
        while self.stack:
            open_tag, line, column = self.stack.pop()
            if open_tag == tag:
                return
            if open_tag not in _OPTIONAL_END:
                end_line, end_offset = self.getpos()
                self.issues.append(
                    Issue(
                        "error",
                        "unclosed_tag",
                        f"<{open_tag}> is not closed before </{tag}> "
                        f"(line {end_line}, column {end_offset + 1})",
                        self.field,
                        line,
                        column,
                    )
                )

    def finish(self) -> list[Issue]:
        self.close()
        for tag, line, column in self.stack:
            if tag not in _OPTIONAL_END:
                self.issues.append(
                    Issue(
                        "error",
                        "unclosed_tag",
                        f"<{tag}> is never closed",
                        self.field,
                        line,
                        column,
                    )
                )
        return self.issues


def html_issues(source: str, field: str = "html") -> list[Issue]:
    """Unclosed and mismatched tags in HTML (Jinja markup is read as text)."""
    checker = _Tags(field)
    checker.feed(source)
    return checker.finish()


def _example_event(ctx: dict[str, Any]) -> model.Event:
    now = clock.now_us()
    return model.Event(
        id=1,
        type="example",
        channel=None,
        recipient=model.Recipient(
            email="someone@example.com", mobilePhone="+33612345678", pushToken="fcm:token"
        ),
        ctx=ctx,
        priority=5,
        status=model.EventStatus.PENDING,
        source="api",
        received_at=now,
        scheduled_at=None,
        expires_at=None,
        due_at=now,
        attempts=0,
    )


def _content_issues(
    content: model.Content,
    prefix: str,
    schema: ctxschema.Schema,
    sources: Mapping[str, str],
    default_sender: str,
) -> list[Issue]:
    issues: list[Issue] = []
    for name in content.__struct_fields__:
        value = getattr(content, name)
        if isinstance(value, dict):
            for key, text in value.items():
                issues += _template_issues(text, f"{prefix}{name}.{key}", schema, sources)
        elif isinstance(value, str) and name not in ("sound",):
            issues += _template_issues(value, f"{prefix}{name}", schema, sources)

    def need(ok: bool, code: str, message: str, field: str) -> None:
        if not ok:
            issues.append(Issue("error", code, message, prefix + field))

    if isinstance(content, model.EmailContent):
        need(
            bool(content.subject.strip()), "missing_subject", "the email has no subject", "subject"
        )
        need(
            bool(content.sender_address.strip() or default_sender.strip()),
            "missing_sender",
            "the email has no sender address, and no default sender is configured",
            "sender_address",
        )
        need(
            bool(content.html.strip() or content.text.strip()),
            "missing_body",
            "the email needs HTML or text",
            "html",
        )
        if content.html.strip():
            if bundle.is_mjml(content.html):
                try:
                    bundle.compile_mjml(blocks.resolve(content.html, sources))
                except errors.Invalid as exc:
                    issues.append(Issue("error", exc.code, exc.message, prefix + "html"))
            else:
                issues += html_issues(content.html, prefix + "html")
    elif isinstance(content, model.SmsContent):
        need(bool(content.text.strip()), "missing_body", "the SMS has no text", "text")
    elif isinstance(content, model.PushContent):
        need(
            bool(content.title.strip() or content.body.strip()),
            "missing_body",
            "the push notification needs a title or a body",
            "body",
        )
    else:
        need(bool(content.url.strip()), "missing_body", "the webhook has no URL", "url")
        need(bool(content.body.strip()), "missing_body", "the webhook has no body", "body")
    if not has_errors(issues):
        issues += _rendered_issues(content, prefix, schema, sources, default_sender)
    return issues


def _rendered_issues(
    content: model.Content,
    prefix: str,
    schema: ctxschema.Schema,
    sources: Mapping[str, str],
    default_sender: str,
) -> list[Issue]:
    """Render with the schema's example ctx: SMS length, webhook JSON, render failures."""
    renderer = render.Renderer(default_sender=default_sender or "nobody@localhost")
    try:
        compiled = bundle.compile_content(content, sources)
        published = model.Publication(
            0, "example", model.CONTENT_CHANNEL[type(content)], 0, compiled
        )
        message = renderer.render(
            renderer.compile(published), _example_event(ctxschema.example_ctx(schema))
        )
    except errors.Invalid as exc:
        return [Issue("error", exc.code, exc.message, prefix + (exc.field or ""))]
    except render.RenderError as exc:
        # Without a schema the example ctx is empty, which says nothing of the data the
        # template will get: a failure to render it is only a warning then.
        severity = "error" if schema else "warning"
        text = str(exc)
        if isinstance(content, model.WebhookContent) and "not JSON" in text:
            return [Issue(severity, "webhook_body_not_json", text, prefix + "body")]
        return [Issue(severity, "render_error", text, prefix)]
    issues: list[Issue] = []
    if isinstance(message, model.SmsMessage):
        count = segments.count(message.text)
        issues.append(
            Issue(
                "info",
                "sms_segments",
                f"{count.segments} segment(s), {count.encoding}, {count.units} characters "
                "with the schema's examples",
                prefix + "text",
            )
        )
        if count.encoding == "UCS-2":
            issues.append(
                Issue(
                    "warning",
                    "sms_ucs2",
                    "a character outside GSM-7 makes this SMS UCS-2: 70 characters a segment",
                    prefix + "text",
                )
            )
    if isinstance(message, model.WebhookMessage):
        try:
            json.loads(message.body)
        except ValueError as exc:  # pragma: no cover - the renderer already checks it
            issues.append(Issue("error", "webhook_body_not_json", str(exc), prefix + "body"))
    return issues


def validate(
    content: model.Content,
    variants: Mapping[str, model.Content],
    *,
    schema: ctxschema.Schema,
    sources: Mapping[str, str],
    default_sender: str,
) -> list[Issue]:
    """Every finding about a version (its content, its variants and the blocks they use)."""
    issues = _content_issues(content, "", schema, sources, default_sender)
    for language, variant in variants.items():
        issues += _content_issues(variant, f"variants.{language}.", schema, sources, default_sender)
    checked: set[str] = set()
    pending = [
        name for c in (content, *variants.values()) for name in _included(c) if name in sources
    ]
    while pending:
        name = pending.pop()
        if name in checked:
            continue
        checked.add(name)
        issues += _template_issues(sources[name], f"block:{name}", schema, sources)
        pending += [n for n, _ in blocks.included(sources[name]) if n in sources]
    return issues


def _included(content: model.Content) -> list[str]:
    names = []
    for name in content.__struct_fields__:
        value = getattr(content, name)
        texts = value.values() if isinstance(value, dict) else [value]
        for text in texts:
            if isinstance(text, str):
                names += [n for n, _ in blocks.included(text)]
    return names
