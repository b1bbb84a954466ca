"""Adobe Campaign's JavaScript expressions (``rtEvent.ctx.firstName``, ``a == 1 && !b``,
``x.toUpperCase()``...) translated into Jinja2 expressions, for :mod:`.adobe_import` (which
handles the ``<% %>`` blocks and statements around them). What cannot be translated raises
:class:`Untranslatable` with the offset it is about.
"""

from __future__ import annotations

import re

import msgspec

from tidings.soap.events import EXTRA_KEY


class Untranslatable(Exception):
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


class Token(msgspec.Struct, frozen=True):
    kind: str
    text: str
    offset: int


def tokens(code: str) -> list[Token]:
    tokens = []
    position = 0
    while position < len(code):
        match = _TOKEN.match(code, position)
        if match is None:
            raise Untranslatable(f"unexpected character {code[position]!r}", position)
        kind = match.lastgroup or ""
        if kind != "space":
            tokens.append(Token(kind, match.group(), position))
        position = match.end()
    return tokens


class _Value(msgspec.Struct):
    text: str
    string: bool = False  # a string literal (or a string made from one)
    number: bool = False  # a number literal


class Parser:
    """A recursive-descent reader of a JavaScript expression, writing Jinja as it goes."""

    def __init__(self, tokens: list[Token], scope: set[str]):
        self.tokens = tokens
        self.index = 0
        self.scope = scope

    # -- token helpers
    def peek(self, ahead: int = 0) -> Token | None:
        index = self.index + ahead
        return self.tokens[index] if index < len(self.tokens) else None

    def at(self, *texts: str) -> bool:
        token = self.peek()
        return token is not None and token.kind in ("op", "name") and token.text in texts

    def take(self) -> Token:
        token = self.peek()
        if token is None:
            end = self.tokens[-1].offset + len(self.tokens[-1].text) if self.tokens else 0
            raise Untranslatable("the expression ends too early", end)
        self.index += 1
        return token

    def expect(self, text: str) -> Token:
        token = self.take()
        if token.text != text:
            raise Untranslatable(f"expected {text!r}, found {token.text!r}", token.offset)
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
        raise Untranslatable(f"unexpected {token.text!r}", token.offset)

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
                    raise Untranslatable(f"the method {segment}() has no translation", start)
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
                    raise Untranslatable(f"the function {name}() has no translation", start)
                self.take()
                argument = self.expression()
                if self.at(","):
                    raise Untranslatable(f"{name}() with several arguments", start)
                self.expect(")")
                value, path = _Value(f"({argument.text})|{_FUNCTIONS[name]}"), None
            elif self.at("("):
                raise Untranslatable("this call has no translation", start)
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
                raise Untranslatable(f"the whole {root} has no translation", start)
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
            raise Untranslatable(f"unknown variable {root!r}", start)
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
        parser = Parser(tokens(code), scope or set())
        value = parser.expression()
        extra = parser.peek()
        if extra is not None:
            raise Untranslatable(f"unexpected {extra.text!r}", extra.offset)
    except Untranslatable as exc:
        raise ValueError(exc.message) from None
    return value.text
