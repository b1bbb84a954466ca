"""Phone numbers normalised to E.164, invalid ones refused with a reason."""

from __future__ import annotations

import pytest

from tidings.channels import errors
from tidings.channels.sms import phone


@pytest.mark.parametrize(
    ("number", "region", "e164"),
    [
        ("+33 6 12 34 56 78", "", "+33612345678"),
        ("+33612345678", "DE", "+33612345678"),
        ("06.12.34.56.78", "fr", "+33612345678"),
        ("(020) 7946 0958", "GB", "+442079460958"),
        ("+1 (650) 253-0000", "", "+16502530000"),
    ],
)
def test_normalise(number: str, region: str, e164: str) -> None:
    assert phone.normalise(number, region) == e164


@pytest.mark.parametrize(
    ("number", "region", "reason"),
    [
        ("", "", "empty"),
        ("0612345678", "", "no country code"),
        ("+999 1234 5678", "", "unknown country code"),
        ("call me", "FR", "not a phone number"),
        ("+33 6 12", "", "too short|not an allocated number"),
        ("+1 011 555 0100", "", "not an allocated number"),
        ("1" * 500, "FR", "longer than"),
    ],
)
def test_invalid(number: str, region: str, reason: str) -> None:
    with pytest.raises(phone.InvalidNumber, match=reason) as caught:
        phone.normalise(number, region)
    assert isinstance(caught.value, errors.PermanentFailure)
    assert len(str(caught.value)) < 200
