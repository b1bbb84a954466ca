"""SMS segment counting: GSM-7 and UCS-2."""

from __future__ import annotations

import pytest

from tidings.control import segments


@pytest.mark.parametrize(
    ("text", "encoding", "units", "count"),
    [
        ("", "GSM-7", 0, 1),
        ("a" * 160, "GSM-7", 160, 1),
        ("a" * 161, "GSM-7", 161, 2),
        ("a" * 306, "GSM-7", 306, 2),
        ("a" * 307, "GSM-7", 307, 3),
        ("€" * 80, "GSM-7", 160, 1),  # extension characters count twice
        ("€" * 81, "GSM-7", 162, 2),
        ("Hé à ü ñ Ø", "GSM-7", 10, 1),
        ("✓" * 70, "UCS-2", 70, 1),
        ("a" * 69 + "✓", "UCS-2", 70, 1),
        ("a" * 70 + "✓", "UCS-2", 71, 2),
        ("😀" * 35, "UCS-2", 70, 1),  # a surrogate pair is two UCS-2 units
        ("😀" * 34 + "a" * 67, "UCS-2", 135, 3),
    ],
)
def test_segments(text: str, encoding: str, units: int, count: int) -> None:
    assert segments.count(text) == segments.Segments(encoding, units, count)
