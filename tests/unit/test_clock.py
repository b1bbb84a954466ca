"""ISO 8601 dates as Adobe's API accepts them."""

from __future__ import annotations

import pytest

from tidings import clock

DEC_1 = 1512115200768000  # 2017-12-01T08:00:00.768Z in µs


@pytest.mark.parametrize(
    "text",
    [
        "2017-12-01 08:00:00.768Z",
        "2017-12-01T08:00:00.768Z",
        "2017-12-01T08:00:00.768",
        "2017-12-01 08:00:00.768+00:00",
        "2017-12-01T09:00:00.768+01:00",
    ],
)
def test_parse_variants(text: str) -> None:
    assert clock.parse_iso(text) == DEC_1


def test_parse_without_fraction_or_time() -> None:
    assert clock.parse_iso("2017-12-01 08:00:00") == DEC_1 - 768000
    assert clock.parse_iso("2017-12-01") == DEC_1 - (8 * 3600 + 0.768) * 1_000_000


@pytest.mark.parametrize("text", ["", "tomorrow", "2017-13-01", "2017-12-01 25:00", "1" * 50])
def test_parse_rejects(text: str) -> None:
    with pytest.raises(ValueError, match="ISO 8601"):
        clock.parse_iso(text)


def test_format() -> None:
    assert clock.format_iso(DEC_1) == "2017-12-01T08:00:00.768Z"
    assert clock.format_adobe(DEC_1) == "2017-12-01 08:00:00.768Z"
