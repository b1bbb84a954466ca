"""Import parsing: NDJSON and CSV fed in pieces of any size, errors by line number."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from tidings import model, profiles

F = profiles.Format
CSV = (
    "\ufeffexternalId,email,pushTokens,note\r\n"
    'a,a@example.com,t1 t2,"multi\r\nline ""quoted"""\r\n'
    "\r\n"
    "b,b@,,\r\n"
    "c,c@example.com\r\n"
    '"d",,,"x,y"\r\n'
).encode()


def parse(fmt: profiles.Format, data: bytes, size: int) -> list[profiles.Parsed]:
    parser = profiles.Parser(fmt, now=1)
    parsed: list[profiles.Parsed] = []
    for i in range(0, len(data), size):
        parsed += parser.feed(data[i : i + size])
    return parsed + parser.finish()


def summary(parsed: list[profiles.Parsed]) -> list[tuple[int, str]]:
    return [
        (line, item.external_id if isinstance(item, model.Profile) else "error: " + item.message)
        for line, item in parsed
    ]


@given(st.integers(min_value=1, max_value=len(CSV)))
def test_csv_in_any_pieces(size: int) -> None:
    parsed = parse(F.CSV, CSV, size)
    assert [line for line, _ in parsed] == [2, 5, 6, 7]
    first = parsed[0][1]
    assert isinstance(first, model.Profile)
    assert first.push_tokens == ("t1", "t2")
    assert first.attributes == {"note": 'multi\nline "quoted"'}
    assert summary(parsed)[1][1].startswith("error: 'b@' is not a valid email")
    assert summary(parsed)[2] == (6, "error: 2 fields where the header has 4")
    last = parsed[3][1]
    assert isinstance(last, model.Profile)
    assert (last.external_id, last.email, last.attributes) == ("d", None, {"note": "x,y"})


def test_csv_without_external_id_column_refuses_every_row() -> None:
    parsed = parse(F.CSV, b"email\na@example.com\nb@example.com\n", 1000)
    assert [line for line, _ in parsed] == [1, 2, 3]
    assert all(isinstance(item, profiles.LineError) for _, item in parsed)


def test_csv_quote_never_closed() -> None:
    parsed = parse(F.CSV, b'externalId,note\na,"open\nstill open\n', 4)
    assert summary(parsed) == [(2, "error: a quoted field is never closed")]


NDJSON = (
    b'{"externalId": "a", "language": "en-GB"}\n'
    b"\n"
    b"[1, 2]\n"
    b'{"externalId": "b", "unknown": 1}\n'
    b"\xff\xfe\n"
    b'{"externalId": "c", "pushTokens": ["x", "x", "y"]}'
)


@given(st.integers(min_value=1, max_value=len(NDJSON)))
def test_ndjson_in_any_pieces(size: int) -> None:
    parsed = parse(F.JSON, NDJSON, size)
    assert [line for line, _ in parsed] == [1, 3, 4, 5, 6]
    kinds = summary(parsed)
    assert kinds[0] == (1, "a")
    assert kinds[2][1].startswith("error: Object contains unknown field")
    assert kinds[3] == (5, "error: the line is not UTF-8")
    last = parsed[4][1]
    assert isinstance(last, model.Profile)
    assert last.push_tokens == ("x", "y")


def test_an_over_long_line_is_one_error_and_the_next_line_counts() -> None:
    parser = profiles.Parser(F.JSON, now=1)
    parsed = parser.feed(b'{"externalId": "a"}\n' + b"x" * (profiles.MAX_LINE_BYTES + 10))
    parsed += parser.feed(b"y" * (profiles.MAX_LINE_BYTES + 10))
    parsed += parser.feed(b'tail\n{"externalId": "b"}\n') + parser.finish()
    assert summary(parsed) == [(1, "a"), (2, "error: the line is longer than 1 MiB"), (3, "b")]
