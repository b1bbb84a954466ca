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
from tidings.engine import render
from tidings.soap.events import EXTRA_KEY
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


class _Untranslatable(Exception):
    def __init__(self, message: str, offset: int = 0):
        super().__init__(message)
        self.message = message
        self.offset = offset


# ---------------------------------------------------------------- JavaScript expressions

_TOKEN = re.compile(
    r"""
    (?P<space>\s+|//[^\n]*|/\*.*?\*/)
  | (?P<num>\d+(?:\.\d+)?)
  | (?P<str>'(?:[^'\\]|\\.)*'|"(?:[^"\\]|\\.)*")
  | (?P<name>[A-Za-z_$][\w$]*)
  | (?P<op>===|!==|==|!=|<=|>=|&&|\|\||\+\+|--|[-+*/%<>!?:.,;()\[\]{}=@])
    """,
    re.VERBOSE | re.DOTALL,
)

_RECIPIENT = {
    "email": "recipient.email",
    "mobilePhone": "recipient.mobilePhone",
    "externalId": "recipient.externalId",
    "registrationToken": "recipient.pushToken",
}
_EVENT = {"id": "event.id", "type": "event.type", "eventType": "event.type"}
_EVENT.update(created="event.receivedAt")
_METHODS = {"toUpperCase": "upper", "toLowerCase": "lower", "trim": "trim", "toString": "string"}
_FUNCTIONS = {
    "String": "string",
    "Number": "float",
    "parseInt": "int",
    "parseFloat": "float",
    "escapeUrl": "urlencode",
    "encodeURIComponent": "urlencode",
    "escapeXmlStr": "e",
}
_EVENT_ROOTS = ("rtEvent", "batchEvent")
_NUMERIC = frozenset({"<", ">", "<=", ">=", "==", "!="})  # loose: "1" == 1 in JavaScript
_BINARY = [
    ({"||": "or"}),
    ({"&&": "and"}),
    ({"==": "==", "===": "==", "!=": "!=", "!==": "!="}),
    ({"<": "<", ">": ">", "<=": "<=", ">=": ">="}),
    ({"+": "+", "-": "-"}),
    ({"*": "*", "/": "/", "%": "%"}),
]


class _Token(msgspec.Struct, frozen=True):
    kind: str
    text: str
    offset: int


def _tokens(code: str) -> list[_Token]:
    tokens = []
    position = 0
    while position < len(code):
        match = _TOKEN.match(code, position)
        if match is None:
            raise _Untranslatable(f"unexpected character {code[position]!r}", position)
        kind = match.lastgroup or ""
        if kind != "space":
            tokens.append(_Token(kind, match.group(), position))
        position = match.end()
    return tokens


class _Value(msgspec.Struct):
    text: str
    string: bool = False  # a string literal (or a string made from one)
    number: bool = False  # a number literal


class _Parser:
    """A recursive-descent reader of a JavaScript expression, writing Jinja as it goes."""

    def __init__(self, tokens: list[_Token], scope: set[str]):
        self.tokens = tokens
        self.index = 0
        self.scope = scope

    # -- token helpers
    def peek(self, ahead: int = 0) -> _Token | None:
        index = self.index + ahead
        return self.tokens[index] if index < len(self.tokens) else None

    def at(self, *texts: str) -> bool:
        token = self.peek()
        return token is not None and token.kind in ("op", "name") and token.text in texts

    def take(self) -> _Token:
        token = self.peek()
        if token is None:
            end = self.tokens[-1].offset + len(self.tokens[-1].text) if self.tokens else 0
            raise _Untranslatable("the expression ends too early", end)
        self.index += 1
        return token

    def expect(self, text: str) -> _Token:
        token = self.take()
        if token.text != text:
            raise _Untranslatable(f"expected {text!r}, found {token.text!r}", token.offset)
        return token

    def offset(self) -> int:
        token = self.peek()
        return token.offset if token is not None else 0

    # -- grammar
    def expression(self) -> _Value:
        condition = self.binary(0)
        if not self.at("?"):
            return condition
        self.take()
        then = self.expression()
        self.expect(":")
        otherwise = self.expression()
        return _Value(f"({then.text} if {condition.text} else {otherwise.text})")

    def binary(self, level: int) -> _Value:
        if level == len(_BINARY):
            return self.unary()
        operators = _BINARY[level]
        left = self.binary(level + 1)
        while (token := self.peek()) is not None and token.kind == "op" and token.text in operators:
            self.take()
            right = self.binary(level + 1)
            if token.text == "+" and (left.string or right.string):
                left = _Value(f"{left.text} ~ {right.text}", True)
                continue
            if token.text in _NUMERIC and left.number != right.number:
                # JavaScript compares a string (all XML values are) with a number as numbers
                if left.number:
                    right = _Value(f"({right.text})|default(0)|float")
                else:
                    left = _Value(f"({left.text})|default(0)|float")
            left = _Value(f"{left.text} {operators[token.text]} {right.text}")
        return left

    def unary(self) -> _Value:
        if self.at("!"):
            self.take()
            return _Value(f"not {self.unary().text}")
        if self.at("-", "+"):
            sign = self.take().text
            return _Value(f"{sign}{self.unary().text}")
        return self.postfix()

    def postfix(self) -> _Value:
        token = self.take()
        if token.kind == "num":
            return _Value(token.text, number=True)
        if token.kind == "str":
            return _Value(repr(_unquote(token.text)), True)
        if token.text == "(":
            inner = self.expression()
            self.expect(")")
            return self.suffixes(_Value(f"({inner.text})", inner.string), None, token.offset)
        if token.kind == "name":
            literal = {"true": "true", "false": "false", "null": "none", "undefined": "none"}
            if token.text in literal:
                return _Value(literal[token.text])
            return self.suffixes(None, [token.text], token.offset)
        raise _Untranslatable(f"unexpected {token.text!r}", token.offset)

    def suffixes(self, value: _Value | None, path: list[str] | None, start: int) -> _Value:
        """Member access, indexing and calls after a primary expression."""
        while True:
            if self.at(".") and self.peek(1) is not None:
                self.take()
                if self.at("@"):
                    self.take()
                    segment = "@" + self.take().text
                else:
                    segment = self.take().text
                if segment == "length" and not self.at("("):
                    value = _Value(f"({self.finish(value, path, start).text})|length")
                    path = None
                    continue
                if self.at("(") and segment in _METHODS:
                    self.take()
                    self.expect(")")
                    base = self.finish(value, path, start)
                    value, path = _Value(f"({base.text})|{_METHODS[segment]}"), None
                    continue
                if self.at("("):
                    raise _Untranslatable(f"the method {segment}() has no translation", start)
                if path is not None:
                    path.append(segment)
                else:
                    assert value is not None
                    value = _Value(f"{value.text}{_segment(segment)}")
            elif self.at("["):
                self.take()
                index = self.expression()
                self.expect("]")
                segment = f"[{index.text}]"
                if path is not None:
                    path.append(segment)
                else:
                    assert value is not None
                    value = _Value(f"{value.text}{segment}")
            elif self.at("(") and path is not None and len(path) == 1:
                name = path[0]
                if name not in _FUNCTIONS:
                    raise _Untranslatable(f"the function {name}() has no translation", start)
                self.take()
                argument = self.expression()
                if self.at(","):
                    raise _Untranslatable(f"{name}() with several arguments", start)
                self.expect(")")
                value, path = _Value(f"({argument.text})|{_FUNCTIONS[name]}"), None
            elif self.at("("):
                raise _Untranslatable("this call has no translation", start)
            else:
                return self.finish(value, path, start)

    def finish(self, value: _Value | None, path: list[str] | None, start: int) -> _Value:
        if path is None:
            assert value is not None
            return value
        return _Value(self.variable(path, start))

    def variable(self, path: list[str], start: int) -> str:
        root, rest = path[0], path[1:]
        if root in _EVENT_ROOTS:
            if not rest:
                raise _Untranslatable(f"the whole {root} has no translation", start)
            field, rest = rest[0], rest[1:]
            if field == "ctx":
                base = "ctx"
            elif field in _RECIPIENT and not rest:
                base = _RECIPIENT[field]
            elif field in _EVENT and not rest:
                base = _EVENT[field]
            else:
                base, rest = f"ctx.{EXTRA_KEY}", [field, *rest]
        elif root in self.scope:
            base = root
        else:
            raise _Untranslatable(f"unknown variable {root!r}", start)
        return base + "".join(_segment(s) for s in rest)


def _segment(segment: str) -> str:
    if segment.startswith("["):
        return segment
    if re.fullmatch(r"[A-Za-z_]\w*", segment):
        return f".{segment}"
    return f"[{segment!r}]"


def _unquote(literal: str) -> str:
    body = literal[1:-1]
    return re.sub(r"\\(.)", lambda m: {"n": "\n", "t": "\t"}.get(m.group(1), m.group(1)), body)


def expression(code: str, scope: set[str] | None = None) -> str:
    """The Jinja expression for a JavaScript expression; ``ValueError`` if it has none."""
    try:
        parser = _Parser(_tokens(code), scope or set())
        value = parser.expression()
        extra = parser.peek()
        if extra is not None:
            raise _Untranslatable(f"unexpected {extra.text!r}", extra.offset)
    except _Untranslatable as exc:
        raise ValueError(exc.message) from None
    return value.text


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
                    self.out.append("{{ " + expression(code, self.scope) + " }}")
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
            tokens = _tokens(code)
        except _Untranslatable as exc:
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
            except _Untranslatable as exc:
                self.problem(start + first.offset, text, exc.message)

    @staticmethod
    def _statement_end(tokens: list[_Token], index: int) -> int:
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

    def statement(self, piece: list[_Token]) -> None:
        texts = [t.text for t in piece]
        if texts == ["}"]:
            if not self.stack:
                raise _Untranslatable("'}' closes no block", 0)
            kind, _ = self.stack.pop()
            if kind != "skip":
                self.out.append(f"{{% end{kind} %}}")
            return
        if texts[0] == "}" and texts[1:2] == ["else"]:
            if not self.stack or self.stack[-1][0] != "if":
                raise _Untranslatable("'else' follows no if block", 0)
            rest = piece[2:]
            if [t.text for t in rest] == ["{"]:
                self.out.append("{% else %}")
                return
            if rest and rest[0].text == "if" and rest[-1].text == "{":
                condition = self._condition(rest[1:-1])
                self.out.append(f"{{% elif {condition} %}}")
                return
            raise _Untranslatable("this else has no translation", 0)
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
        raise _Untranslatable("this statement has no translation", 0)

    def _expr(self, tokens: list[_Token]) -> str:
        parser = _Parser(tokens, self.scope)
        value = parser.expression()
        if parser.peek() is not None:
            raise _Untranslatable(f"unexpected {parser.take().text!r}", 0)
        return value.text

    def _condition(self, tokens: list[_Token]) -> str:
        if not tokens or tokens[0].text != "(" or tokens[-1].text != ")":
            raise _Untranslatable("a condition must be in parentheses", 0)
        return self._expr(tokens[1:-1])

    def _for(self, piece: list[_Token]) -> str:
        texts = [t.text for t in piece]
        if len(texts) < 7:
            raise _Untranslatable("this loop has no translation", 0)
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
        raise _Untranslatable("this loop has no translation", 0)


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
