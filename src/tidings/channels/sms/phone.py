"""Phone numbers: validated and normalised to E.164 (``+33612345678``) with ``phonenumbers``.

A number written in international form (``+44 20 7946 0958``, ``0044...`` is not) is read as
it is; a national one (``06 12 34 56 78``) needs ``default_region`` (ISO 3166 alpha-2, ``FR``).
A number that cannot be parsed, or that no numbering plan allocates, raises
:class:`InvalidNumber`, a :class:`~tidings.channels.errors.PermanentFailure`: the message
fails before anything is sent, with the reason in the delivery log.
"""

from __future__ import annotations

import phonenumbers

from tidings.channels import errors

MAX_LENGTH = 64


class InvalidNumber(errors.PermanentFailure):
    """A phone number that cannot be delivered to as written."""


def normalise(number: str, default_region: str = "") -> str:
    """``number`` in E.164 form; raises :class:`InvalidNumber` with the reason."""
    shown = number if len(number) <= MAX_LENGTH else number[:MAX_LENGTH] + "…"
    if not number.strip():
        raise InvalidNumber("invalid phone number: empty")
    if len(number) > MAX_LENGTH:
        raise InvalidNumber(f"invalid phone number {shown!r}: longer than {MAX_LENGTH} characters")
    region = default_region.upper() or None
    try:
        parsed = phonenumbers.parse(number, region)
    except phonenumbers.NumberParseException as exc:
        reason = _REASONS.get(exc.error_type, "not a phone number")
        missing = exc.error_type == phonenumbers.NumberParseException.INVALID_COUNTRY_CODE
        if missing and not region and not number.lstrip().startswith("+"):
            reason = "no country code (write it as +<country code>...)"
        raise InvalidNumber(f"invalid phone number {shown!r}: {reason}") from None
    if not phonenumbers.is_valid_number(parsed):
        raise InvalidNumber(f"invalid phone number {shown!r}: not an allocated number")
    return phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)


_REASONS = {
    phonenumbers.NumberParseException.INVALID_COUNTRY_CODE: "unknown country code",
    phonenumbers.NumberParseException.NOT_A_NUMBER: "not a phone number",
    phonenumbers.NumberParseException.TOO_SHORT_AFTER_IDD: "too short",
    phonenumbers.NumberParseException.TOO_SHORT_NSN: "too short",
    phonenumbers.NumberParseException.TOO_LONG: "too long",
}
