"""Profile operations (the API and the CLI call these): upsert, look up, delete with
erasure, and bulk import from NDJSON or CSV.

A profile is keyed by the caller's ``externalId`` and holds an email, a mobile phone, push
tokens, a language and free attributes (a JSON object). Input is checked here, once, for
every surface: :class:`InvalidProfile` names the field at fault.

**Erasure**: deleting a profile deletes its row and, in the same transaction, clears the
recipient fields (email, mobile phone, push token, external id) and the ``ctx`` of every
queued event (``pending``, ``paused`` or ``processing``) addressed to any of its identifiers.
Those events then end ``targetingFailed`` with the reason ``recipient erased`` when a worker
takes them. Finished events are history and leave with retention.

**Import** reads a stream in pieces (:class:`Parser`) and writes valid profiles in batches
of :data:`BATCH` per transaction (:class:`Importer`); a bad line is reported by its number
and does not stop the rest.

- NDJSON: one JSON object a line, with the fields of :class:`ProfileIn` (``externalId``
  required); blank lines are skipped.
- CSV (RFC 4180, UTF-8): a header line, then one profile a record. The columns
  ``externalId`` (required), ``email``, ``mobilePhone``, ``pushTokens`` (separated by
  spaces) and ``language`` fill those fields; every other column is an attribute (text;
  an empty cell is left out).
"""

from __future__ import annotations

import csv
import enum
import re
from typing import Any

import msgspec

from tidings import clock, ingest, model
from tidings.store import profiles as store
from tidings.store.database import Database

#: Profiles written per transaction by an import.
BATCH = 1000
#: Errors an import result lists (all are counted).
MAX_ERRORS_LISTED = 100
MAX_PUSH_TOKENS = 20
MAX_LINE_BYTES = 1 << 20
LANGUAGE = re.compile(r"^[A-Za-z]{2,3}([_-][A-Za-z0-9]{1,8}){0,4}$")


class InvalidProfile(ValueError):
    """A profile that cannot be stored; ``field`` is a JSON path like ``$.email``."""

    def __init__(self, field: str, message: str, code: str = "invalid_field"):
        super().__init__(message)
        self.field = field
        self.message = message
        self.code = code


class ProfileIn(msgspec.Struct, forbid_unknown_fields=True):
    """A profile as the API, NDJSON import and CLI take it (``externalId`` comes from the
    URL in ``PUT /api/v1/profiles/{externalId}``)."""

    externalId: str | None = None
    email: str | None = None
    mobilePhone: str | None = None
    pushTokens: list[str] = []
    language: str | None = None
    attributes: dict[str, Any] = {}


class Format(enum.StrEnum):
    """An import file's format."""

    JSON = "json"
    CSV = "csv"


def _text(value: str | None, field: str) -> str | None:
    if value is None:
        return None
    value = value.strip()
    if "\x00" in value:
        raise InvalidProfile(field, f"{field[2:]} must not contain NUL characters")
    return value or None


def prepare(data: ProfileIn, now: int, external_id: str | None = None) -> model.Profile:
    """The profile ``data`` describes, checked; ``external_id`` overrides ``data``'s."""
    key = _text(external_id if external_id is not None else data.externalId, "$.externalId")
    if not key:
        raise InvalidProfile("$.externalId", "externalId is required", "missing_field")
    if len(key) > ingest.MAX_EXTERNAL_ID:
        raise InvalidProfile(
            "$.externalId", f"externalId is longer than {ingest.MAX_EXTERNAL_ID} characters"
        )
    email = _text(data.email, "$.email")
    if email is not None and not ingest.valid_email(email):
        raise InvalidProfile("$.email", f"{email!r} is not a valid email address", "invalid_email")
    phone = _text(data.mobilePhone, "$.mobilePhone")
    if phone is not None and not ingest.PHONE.match(phone):
        raise InvalidProfile(
            "$.mobilePhone", f"{phone!r} is not a valid phone number", "invalid_phone"
        )
    if len(data.pushTokens) > MAX_PUSH_TOKENS:
        raise InvalidProfile("$.pushTokens", f"at most {MAX_PUSH_TOKENS} push tokens")
    tokens: list[str] = []
    for i, token in enumerate(data.pushTokens):
        clean = _text(token, f"$.pushTokens[{i}]")
        if not clean or len(clean) > 4096:
            raise InvalidProfile(f"$.pushTokens[{i}]", "a push token is 1 to 4096 characters")
        if clean not in tokens:
            tokens.append(clean)
    language = _text(data.language, "$.language")
    if language is not None and not LANGUAGE.match(language):
        raise InvalidProfile(
            "$.language", f"{language!r} is not a language tag (en, fr-CA, pt_BR...)"
        )
    return model.Profile(
        external_id=key,
        email=email,
        mobile_phone=phone,
        push_tokens=tuple(tokens),
        language=language,
        attributes=data.attributes,
        created_at=now,
        updated_at=now,
    )


async def upsert(db: Database, profile: model.Profile) -> tuple[model.Profile, bool]:
    """Create or replace a profile; return it as stored and whether it is new."""
    async with db.transaction() as conn:
        existed = await store.get_profile(conn, profile.external_id) is not None
        await store.upsert_profiles(conn, [profile])
        stored = await store.get_profile(conn, profile.external_id)
    assert stored is not None
    return stored, not existed


async def get(db: Database, external_id: str) -> model.Profile | None:
    """One profile by external id."""
    async with db.connection() as conn:
        return await store.get_profile(conn, external_id)


async def find(
    db: Database,
    *,
    email: str | None = None,
    mobile_phone: str | None = None,
    after_id: int = 0,
    limit: int = 100,
) -> list[model.Profile]:
    """Profiles in creation order after the cursor ``after_id``, optionally by email or phone."""
    async with db.connection() as conn:
        return await store.list_profiles(
            conn,
            email=None if email is None else email.strip(),
            mobile_phone=None if mobile_phone is None else mobile_phone.strip(),
            after_id=after_id,
            limit=limit,
        )


class Erasure(msgspec.Struct, frozen=True):
    """A deleted profile and how many queued events lost its data."""

    profile: model.Profile
    events: int


async def delete(db: Database, external_id: str) -> Erasure | None:
    """Delete a profile and erase its data from queued events, in one transaction; None if
    there is no such profile."""
    async with db.transaction() as conn:
        profile = await store.delete_profile(conn, external_id)
        if profile is None:
            return None
        erased = await store.erase_queued_events(conn, profile)
    return Erasure(profile, erased)


# ---------------------------------------------------------------------------- import


class LineError(msgspec.Struct, frozen=True):
    """Why one line of an import was not taken."""

    line: int
    message: str
    field: str | None = None


class ImportResult(msgspec.Struct):
    """What an import did: profiles written, lines refused (the first few listed)."""

    imported: int = 0
    failed: int = 0
    errors: list[LineError] = []


Parsed = tuple[int, "model.Profile | LineError"]
_decode_in = msgspec.json.Decoder(ProfileIn)
_CSV_FIELDS = {"externalId", "email", "mobilePhone", "pushTokens", "language"}


class Parser:
    """Turns an import stream, fed in pieces of any size, into profiles and line errors."""

    def __init__(self, fmt: Format, now: int | None = None):
        self.format = fmt
        self.now = clock.now_us() if now is None else now
        self._buffer = b""
        self._line = 0  # lines consumed so far
        self._header: list[str] | None = None
        self._record: list[str] = []  # CSV: lines of a record whose quotes are still open
        self._record_line = 0
        self._skip_rest = False

    def feed(self, chunk: bytes) -> list[Parsed]:
        """Profiles and errors of every line completed by ``chunk``."""
        self._buffer += chunk
        *lines, self._buffer = self._buffer.split(b"\n")
        parsed: list[Parsed] = []
        for raw in lines:
            self._take(raw, parsed)
        if len(self._buffer) > MAX_LINE_BYTES:
            # Dropped without waiting for its end; the rest of it is skipped when it comes.
            if not self._skip_rest:
                line = self._line + 1
                parsed.append((line, LineError(line, "the line is longer than 1 MiB")))
            self._buffer = b""
            self._skip_rest = True
        return parsed

    def finish(self) -> list[Parsed]:
        """The last line (one without a newline) and any CSV record left open."""
        parsed: list[Parsed] = []
        if self._buffer and not self._skip_rest:
            self._take(self._buffer, parsed)
        self._buffer = b""
        if self._record:
            parsed.append(
                (self._record_line, LineError(self._record_line, "a quoted field is never closed"))
            )
            self._record = []
        return parsed

    def _take(self, raw: bytes, parsed: list[Parsed]) -> None:
        self._line += 1
        if self._skip_rest:  # the remainder of an over-long line
            self._skip_rest = False
            return
        try:
            text = raw.decode("utf-8").rstrip("\r")
        except UnicodeDecodeError:
            parsed.append((self._line, LineError(self._line, "the line is not UTF-8")))
            return
        if self._line == 1:
            text = text.removeprefix("\ufeff")
        if self.format is Format.JSON:
            if text.strip():
                parsed.append((self._line, self._json(text)))
            return
        if not self._record:
            if not text.strip():
                return
            self._record_line = self._line
        self._record.append(text)
        joined = "\n".join(self._record)
        if joined.count('"') % 2:
            return  # a quoted field goes on on the next line
        self._record = []
        row = next(csv.reader([joined]))
        if self._header is None:
            self._header = self._check_header(row, parsed)
            return
        parsed.append((self._record_line, self._csv(row)))

    def _json(self, text: str) -> model.Profile | LineError:
        try:
            data = _decode_in.decode(text)
        except msgspec.ValidationError as exc:
            return LineError(self._line, str(exc))
        except msgspec.DecodeError as exc:
            return LineError(self._line, f"not a JSON object: {exc}")
        return self._prepared(data, self._line)

    def _check_header(self, row: list[str], parsed: list[Parsed]) -> list[str]:
        header = [name.strip() for name in row]
        if "externalId" not in header:
            parsed.append(
                (self._record_line, LineError(self._record_line, "the header has no externalId"))
            )
        return header

    def _csv(self, row: list[str]) -> model.Profile | LineError:
        header = self._header
        assert header is not None
        if "externalId" not in header:
            return LineError(self._record_line, "the header has no externalId")
        if len(row) != len(header):
            return LineError(
                self._record_line, f"{len(row)} fields where the header has {len(header)}"
            )
        fields: dict[str, str] = {}
        attributes: dict[str, Any] = {}
        for name, value in zip(header, row, strict=True):
            if name in _CSV_FIELDS:
                fields[name] = value
            elif value != "" and name:
                attributes[name] = value
        data = ProfileIn(
            externalId=fields.get("externalId"),
            email=fields.get("email") or None,
            mobilePhone=fields.get("mobilePhone") or None,
            pushTokens=fields.get("pushTokens", "").split(),
            language=fields.get("language") or None,
            attributes=attributes,
        )
        return self._prepared(data, self._record_line)

    def _prepared(self, data: ProfileIn, line: int) -> model.Profile | LineError:
        try:
            return prepare(data, self.now)
        except InvalidProfile as exc:
            return LineError(line, exc.message, exc.field)


class Importer:
    """Collects parsed lines and writes valid profiles :data:`BATCH` at a time, each batch
    one transaction."""

    def __init__(self, db: Database, *, batch: int = BATCH):
        self.db = db
        self.batch = batch
        self.result = ImportResult()
        self._pending: list[model.Profile] = []

    async def add(self, parsed: list[Parsed]) -> None:
        """Take parsed lines; write a batch whenever one is full."""
        for _, item in parsed:
            if isinstance(item, LineError):
                self.result.failed += 1
                if len(self.result.errors) < MAX_ERRORS_LISTED:
                    self.result.errors.append(item)
                continue
            self._pending.append(item)
            if len(self._pending) >= self.batch:
                await self._write()

    async def finish(self) -> ImportResult:
        """Write what is left; the result."""
        await self._write()
        return self.result

    async def _write(self) -> None:
        if not self._pending:
            return
        batch, self._pending = self._pending, []
        await self.db.write_many([store.upsert_step(batch)])
        self.result.imported += len(batch)
