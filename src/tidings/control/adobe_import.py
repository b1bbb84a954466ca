"""Importing Adobe Campaign templates: Adobe's JavaScript personalisation syntax translated
into Tidings templates (sandboxed Jinja2).

What is translated:

=========================================  ===============================================
Adobe                                      Tidings
=========================================  ===============================================
``<%= rtEvent.ctx.firstName %>``           ``{{ ctx.firstName }}``
``<%= rtEvent.email %>``                   ``{{ recipient.email }}`` (also ``mobilePhone``,
                                           ``externalId``; ``registrationToken`` is
                                           ``recipient.pushToken``)
``<%= rtEvent.id %>``, ``.type``,          ``{{ event.id }}``, ``{{ event.type }}``,
``.created``                               ``{{ event.receivedAt }}``
``<%= rtEvent.origin %>`` (other           ``{{ ctx._rtEvent.origin }}`` (where the SOAP
attributes)                                surface keeps them)
``rtEvent.ctx.article.@num``               ``ctx.article["@num"]`` (see :mod:`tidings.soap.ctx`)
``<% if (a == 1 && !b) { %>``              ``{% if a == 1 and not b %}``; ``} else if (…) {``,
                                           ``} else {``, ``}``
``<% for each (var a in X) { %>``          ``{% for a in <X as a list> %}`` (one item or many)
``<% for (var i = 0; i < X.length; i++)``  ``{% for i in range(X|length) %}``
``<% for (var k in X) { %>``               keys of an object, indexes of a list
``<% var x = expr; %>``                    ``{% set x = expr %}``
operators, ``a ? b : c``, literals         ``==``, ``and``, ``or``, ``not``, ``~`` (string +),
                                           ``(b if a else c)``, ``none``, ``true``; compared
                                           with a number, a value is read as one
                                           (``(x)|default(0)|float > 100``)
``.toUpperCase()``, ``.toLowerCase()``,    ``|upper``, ``|lower``, ``|trim``, ``|length``,
``.trim()``, ``.length``, ``String()``,    ``|string``, ``|int``, ``|float``, ``|urlencode``,
``parseInt()``, ``parseFloat()``,          ``|e``
``escapeUrl()``, ``encodeURIComponent()``,
``escapeXmlStr()``
=========================================  ===============================================

Anything else (``<%@ include %>``, Adobe functions such as ``formatDate``, profile data such
as ``recipient.firstName``, ``while`` loops, assignments to existing variables) is never
dropped silently: it is reported as a :class:`Problem` with its line and column, and kept in
the output as a Jinja comment ``{# untranslated (line N): … #}``. Literal text that looks like
Jinja syntax (``{{``, ``{%``, ``{#``) is escaped so it stays text.

Differences to know: Tidings escapes HTML in ``{{ }}`` in the HTML part (Adobe's ``<%= %>``
does not), and ``+`` between two values that are not string literals stays ``+`` (adds
numbers, joins strings).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import jinja2
import jinja2.sandbox
import msgspec

from tidings import clock, model
from tidings.control import adobe_js
from tidings.engine import render
from tidings.store import catalog
from tidings.store.database import Database


class Problem(msgspec.Struct, frozen=True):
    """A part of an Adobe template that was not translated."""

    line: int
    column: int
    source: str
    message: str
    part: str = ""

    def __str__(self) -> str:
        where = f"{self.part}:" if self.part else ""
        return f"{where}{self.line}:{self.column}: {self.message}: {self.source}"


class Translation(msgspec.Struct, frozen=True):
    """A translated template and what could not be translated."""

    text: str
    problems: list[Problem]


# ---------------------------------------------------------------- statements and blocks

_BLOCK = re.compile(r"<%(?P<kind>[=@]?)(?P<code>.*?)%>", re.DOTALL)
_JINJA = re.compile(r"\{([{%#])")


def _as_list(expr: str) -> str:
    return (
        f"({expr} if {expr} is sequence and {expr} is not string and {expr} is not mapping "
        f"else ([{expr}] if {expr} is defined and {expr} is not none else []))"
    )


class _Translator:
    def __init__(self, source: str, part: str):
        self.source = source
        self.part = part
        self.out: list[str] = []
        self.problems: list[Problem] = []
        self.stack: list[tuple[str, int]] = []  # ("if" | "for" | "skip", offset)
        self.scope: set[str] = set()
        self.base = 0  # where the code block being translated starts in the source

    def position(self, offset: int) -> tuple[int, int]:
        line = self.source.count("\n", 0, offset) + 1
        return line, offset - (self.source.rfind("\n", 0, offset) + 1) + 1

    def problem(self, offset: int, source: str, message: str) -> None:
        line, column = self.position(offset)
        text = " ".join(source.split())
        self.problems.append(Problem(line, column, text, message, self.part))
        safe = text.replace("#}", "# }")
        self.out.append(f"{{# untranslated (line {line}): {safe} #}}")

    def run(self) -> Translation:
        position = 0
        for match in _BLOCK.finditer(self.source):
            self.out.append(_JINJA.sub(r"{{ '{\1' }}", self.source[position : match.start()]))
            position = match.end()
            kind, code, start = match.group("kind"), match.group("code"), match.start("code")
            if kind == "@":
                self.problem(match.start(), match.group(), "directives have no translation")
            elif kind == "=":
                try:
                    self.out.append("{{ " + adobe_js.expression(code, self.scope) + " }}")
                except ValueError as exc:
                    self.problem(match.start(), match.group(), str(exc))
            else:
                self.statements(code, start, match.group())
        self.out.append(_JINJA.sub(r"{{ '{\1' }}", self.source[position:]))
        for kind, offset in reversed(self.stack):
            line, column = self.position(offset)
            self.problems.append(
                Problem(line, column, "{", f"this {kind} block is never closed", self.part)
            )
            if kind != "skip":
                self.out.append(f"{{% end{kind} %}}")
        text = "".join(self.out)
        try:
            jinja2.sandbox.SandboxedEnvironment().parse(text)
        except jinja2.TemplateSyntaxError as exc:
            self.problems.append(
                Problem(exc.lineno, 1, "", f"the translation does not compile: {exc}", self.part)
            )
        return Translation(text, self.problems)

    def statements(self, code: str, start: int, whole: str) -> None:
        try:
            tokens = adobe_js.tokens(code)
        except adobe_js.Untranslatable as exc:
            self.problem(start + exc.offset, whole, exc.message)
            return
        self.base = start
        index = 0
        while index < len(tokens):
            end = self._statement_end(tokens, index)
            piece = tokens[index:end]
            index = end
            if not piece or [t.text for t in piece] == [";"]:
                continue
            first = piece[0]
            text = code[first.offset : piece[-1].offset + len(piece[-1].text)]
            try:
                self.statement(piece)
            except adobe_js.Untranslatable as exc:
                self.problem(start + first.offset, text, exc.message)

    @staticmethod
    def _statement_end(tokens: list[adobe_js.Token], index: int) -> int:
        """The end of the statement starting at ``index``: after ``{``, ``}`` or ``;`` at the
        top level of parentheses (``} else … {`` is one statement)."""
        depth = 0
        position = index
        if tokens[index].text == "}":
            if index + 1 < len(tokens) and tokens[index + 1].text == "else":
                position = index + 1
            else:
                return index + 1
        while position < len(tokens):
            text = tokens[position].text
            if text in "([":
                depth += 1
            elif text in ")]":
                depth -= 1
            elif depth == 0 and text in ("{", ";"):
                return position + 1
            elif depth == 0 and text == "}":
                return position if position > index else position + 1
            position += 1
        return position

    def statement(self, piece: list[adobe_js.Token]) -> None:
        texts = [t.text for t in piece]
        if texts == ["}"]:
            if not self.stack:
                raise adobe_js.Untranslatable("'}' closes no block", 0)
            kind, _ = self.stack.pop()
            if kind != "skip":
                self.out.append(f"{{% end{kind} %}}")
            return
        if texts[0] == "}" and texts[1:2] == ["else"]:
            if not self.stack or self.stack[-1][0] != "if":
                raise adobe_js.Untranslatable("'else' follows no if block", 0)
            rest = piece[2:]
            if [t.text for t in rest] == ["{"]:
                self.out.append("{% else %}")
                return
            if rest and rest[0].text == "if" and rest[-1].text == "{":
                condition = self._condition(rest[1:-1])
                self.out.append(f"{{% elif {condition} %}}")
                return
            raise adobe_js.Untranslatable("this else has no translation", 0)
        if texts[0] == "if" and texts[-1] == "{":
            condition = self._condition(piece[1:-1])
            self.stack.append(("if", self.base + piece[0].offset))
            self.out.append(f"{{% if {condition} %}}")
            return
        if texts[0] == "for" and texts[-1] == "{":
            self.out.append(self._for(piece))
            self.stack.append(("for", self.base + piece[0].offset))
            return
        if texts[0] == "var" and len(texts) >= 4 and texts[2] == "=":
            name = texts[1]
            body = piece[3:-1] if texts[-1] == ";" else piece[3:]
            value = self._expr(body)
            self.scope.add(name)
            self.out.append(f"{{% set {name} = {value} %}}")
            return
        if texts[-1] == "{":
            self.stack.append(("skip", self.base + piece[0].offset))
        raise adobe_js.Untranslatable("this statement has no translation", 0)

    def _expr(self, tokens: list[adobe_js.Token]) -> str:
        parser = adobe_js.Parser(tokens, self.scope)
        value = parser.expression()
        if parser.peek() is not None:
            raise adobe_js.Untranslatable(f"unexpected {parser.take().text!r}", 0)
        return value.text

    def _condition(self, tokens: list[adobe_js.Token]) -> str:
        if not tokens or tokens[0].text != "(" or tokens[-1].text != ")":
            raise adobe_js.Untranslatable("a condition must be in parentheses", 0)
        return self._expr(tokens[1:-1])

    def _for(self, piece: list[adobe_js.Token]) -> str:
        texts = [t.text for t in piece]
        if len(texts) < 7:
            raise adobe_js.Untranslatable("this loop has no translation", 0)
        # for each (var x in X) {
        if texts[1:4] == ["each", "(", "var"] and texts[5] == "in" and texts[-2] == ")":
            name = texts[4]
            collection = self._expr(piece[6:-2])
            self.scope.add(name)
            return f"{{% for {name} in {_as_list(collection)} %}}"
        # for (var i = 0; i < X.length; i++) {
        if (
            texts[1:3] == ["(", "var"]
            and texts[4:7] == ["=", "0", ";"]
            and texts[7] == texts[3]
            and texts[8] == "<"
            and texts[-5:] == [";", texts[3], "++", ")", "{"]
        ):
            name = texts[3]
            bound = self._expr(piece[9 : len(piece) - 5])
            self.scope.add(name)
            return f"{{% for {name} in range({bound}) %}}"
        # for (var k in X) {
        if texts[1:3] == ["(", "var"] and texts[4] == "in" and texts[-2] == ")":
            name = texts[3]
            collection = self._expr(piece[5:-2])
            self.scope.add(name)
            return (
                f"{{% for {name} in ({collection}|list if {collection} is mapping "
                f"else range({collection}|length)) %}}"
            )
        raise adobe_js.Untranslatable("this loop has no translation", 0)


def translate(source: str, part: str = "") -> Translation:
    """Translate one Adobe template (HTML, text or a subject line); ``part`` names it in
    problems (``email.html``)."""
    return _Translator(source, part).run()


# ---------------------------------------------------------------- whole templates


class Imported(msgspec.Struct, frozen=True):
    """An Adobe email template, translated."""

    event_type: str
    label: str
    content: model.EmailContent
    problems: list[Problem]


def import_email(
    event_type: str, *, subject: str, html: str = "", text: str = "", label: str = ""
) -> Imported:
    """Translate the parts of an Adobe email template."""
    parts = {
        name: translate(source, name)
        for name, source in (("subject.txt", subject), ("email.html", html), ("email.txt", text))
    }
    problems = [p for t in parts.values() for p in t.problems]
    content = model.EmailContent(
        subject=parts["subject.txt"].text.strip(),
        html=parts["email.html"].text,
        text=parts["email.txt"].text,
    )
    return Imported(event_type, label or event_type, content, problems)


def write_folder(imported: Imported, root: Path) -> Path:
    """Write a translated template as a folder ``tidings publish`` reads; return it."""
    folder = root / imported.event_type
    folder.mkdir(parents=True, exist_ok=True)
    label = imported.label.replace("\\", "\\\\").replace('"', '\\"')
    (folder / "template.toml").write_text(
        f'label = "{label}"\n# Imported from an Adobe Campaign template.\n', "utf-8"
    )
    (folder / "subject.txt").write_text(imported.content.subject + "\n", "utf-8")
    for name, body in (("email.html", imported.content.html), ("email.txt", imported.content.text)):
        if body.strip():
            (folder / name).write_text(body, "utf-8")
    return folder


async def publish(
    db: Database, imported: Imported, *, author: str, renderer: render.Renderer
) -> tuple[int, int]:
    """Publish a translated template as its event type's email; (version, publication id).
    Raises :class:`render.RenderError` if it does not compile."""
    renderer.check_email(imported.content)
    now = clock.now_us()
    name, channel = imported.event_type, model.Channel.EMAIL
    async with db.transaction() as conn:
        await catalog.upsert_event_type(conn, name, imported.label, channel, now)
        latest = await catalog.latest_version(conn, name, channel)
        if latest is not None and latest[2] == imported.content:
            version_id, number = latest[0], latest[1]
        else:
            version_id, number = await catalog.add_template_version(
                conn, name, channel, imported.content, author, now
            )
        publication = await catalog.publish(
            conn, name, channel, version_id, imported.content, author, now
        )
    return number, publication


def problems_text(problems: list[Problem]) -> Iterator[str]:
    """One line per problem, for people."""
    for problem in problems:
        yield str(problem)
