"""Event types as the control instance designs them: name, label, description, default and
allowed channels, the ctx schema with strict or lenient validation, the language settings,
and test profiles. The admin API and the CLI call these functions.

An event type made by ``tidings publish <folder>`` has no spec yet: it reads as the default
spec (no schema, lenient, its default channel only) until it is updated.
"""

from __future__ import annotations

import enum
import re
from typing import Any

import msgspec

from tidings import clock, ingest, model
from tidings.control import ctxschema, errors
from tidings.settings import Settings
from tidings.store import design
from tidings.store.database import Database

#: Event type names: they appear in URLs (``EVT<name>``) and payloads.
NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]{0,63}$")
PROFILE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
LANGUAGE_FIELD = re.compile(r"^(ctx|recipient)(\.[A-Za-z_][A-Za-z0-9_]{0,63}){1,4}$")
MAX_TEXT = 1000
MAX_SEEDS = 20  # per channel


class Validation(enum.StrEnum):
    """What ingest does with a ctx that does not fit the schema."""

    STRICT = "strict"  # refuse the event, naming the field
    LENIENT = "lenient"  # accept it, recording the mismatches on the event


class Seeds(msgspec.Struct, frozen=True, forbid_unknown_fields=True, omit_defaults=True):
    """Seed addresses per channel: where proofs of the type's templates go (a webhook
    template has none: it calls its own URL)."""

    email: tuple[str, ...] = ()
    sms: tuple[str, ...] = ()
    push: tuple[str, ...] = ()

    def of(self, channel: model.Channel) -> tuple[str, ...]:
        """The seed addresses of ``channel``."""
        if channel is model.Channel.WEBHOOK:
            return ()
        found: tuple[str, ...] = getattr(self, str(channel))
        return found


class Spec(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """What an event type's row keeps besides its name, label and default channel."""

    description: str = ""
    channels: tuple[model.Channel, ...] = ()
    validation: Validation = Validation.LENIENT
    ctxSchema: ctxschema.Schema = ()
    languageField: str = ""
    fallbackLanguage: str = ""
    seeds: Seeds = Seeds()


class Definition(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """An event type as it is created or updated. ``channels`` lists the allowed channels
    (the default channel is always allowed); ``languageField`` (``ctx.language``,
    ``recipient.language``...) picks a template's language variant, ``fallbackLanguage``
    is used when the event names none or one without a variant; ``seeds`` are the
    addresses proofs go to, per channel."""

    name: str
    label: str = ""
    description: str = ""
    defaultChannel: model.Channel = model.Channel.EMAIL
    channels: tuple[model.Channel, ...] = ()
    validation: Validation = Validation.LENIENT
    ctxSchema: ctxschema.Schema = ()
    languageField: str = ""
    fallbackLanguage: str = ""
    seeds: Seeds = Seeds()


class EventTypeInfo(msgspec.Struct, frozen=True):
    """An event type as the admin API shows it."""

    name: str
    label: str
    description: str
    defaultChannel: model.Channel
    channels: tuple[model.Channel, ...]
    validation: Validation
    ctxSchema: ctxschema.Schema
    languageField: str
    fallbackLanguage: str
    paused: bool
    createdAt: str
    updatedAt: str
    seeds: Seeds = Seeds()

    def spec(self) -> Spec:
        """The spec part."""
        return Spec(
            self.description,
            self.channels,
            self.validation,
            self.ctxSchema,
            self.languageField,
            self.fallbackLanguage,
            self.seeds,
        )


class Profile(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """A test profile: a sample event's recipient and ctx, to preview templates with."""

    name: str = ""
    recipient: model.Recipient = model.Recipient(email="test@example.com")
    ctx: dict[str, Any] = {}


_spec_decoder = msgspec.json.Decoder(Spec)
_encode = msgspec.json.Encoder().encode
_recipient_decoder = msgspec.json.Decoder(model.Recipient)
_ctx_decoder = msgspec.json.Decoder(dict[str, Any])


def parse_spec(text: str | None) -> Spec:
    """A stored spec (the default one for a type that has none)."""
    return Spec() if text is None else _spec_decoder.decode(text)


def checker_for(spec: Spec) -> ctxschema.Checker | None:
    """The compiled ctx check for an event type (None without a schema)."""
    if not spec.ctxSchema:
        return None
    return ctxschema.compile(spec.ctxSchema, strict=spec.validation is Validation.STRICT)


def _info(row: design.EventTypeRow) -> EventTypeInfo:
    spec = parse_spec(row.spec)
    return EventTypeInfo(
        name=row.name,
        label=row.label,
        description=spec.description,
        defaultChannel=row.default_channel,
        channels=spec.channels or (row.default_channel,),
        validation=spec.validation,
        ctxSchema=spec.ctxSchema,
        languageField=spec.languageField,
        fallbackLanguage=spec.fallbackLanguage,
        paused=row.paused,
        createdAt=clock.format_iso(row.created_at),
        updatedAt=clock.format_iso(row.updated_at),
        seeds=spec.seeds,
    )


def check_name(name: str) -> None:
    """:class:`~tidings.control.errors.Invalid` unless ``name`` is a usable type name."""
    if not NAME.match(name):
        raise errors.Invalid(
            "invalid_name",
            "an event type name starts with a letter and holds only letters, digits and '_' "
            "(at most 64)",
            field="$.name",
        )


def check_definition(definition: Definition) -> tuple[str, Spec]:
    """Validate a definition (:class:`~tidings.control.errors.Invalid` naming the field);
    its label and spec."""
    check_name(definition.name)
    for name, value in (
        ("label", definition.label),
        ("description", definition.description),
        ("fallbackLanguage", definition.fallbackLanguage),
    ):
        if "\x00" in value or len(value) > MAX_TEXT:
            raise errors.Invalid(
                "invalid_field",
                f"{name} must be at most {MAX_TEXT} characters, without NUL",
                field=f"$.{name}",
            )
    if definition.languageField and not LANGUAGE_FIELD.match(definition.languageField):
        raise errors.Invalid(
            "invalid_field",
            "languageField is a path like ctx.language or recipient.language",
            field="$.languageField",
        )
    ctxschema.check_schema(definition.ctxSchema)
    _check_seeds(definition.seeds)
    channels = tuple(dict.fromkeys((definition.defaultChannel, *definition.channels)))
    spec = Spec(
        description=definition.description,
        channels=channels,
        validation=definition.validation,
        ctxSchema=definition.ctxSchema,
        languageField=definition.languageField,
        fallbackLanguage=definition.fallbackLanguage,
        seeds=definition.seeds,
    )
    return definition.label or definition.name, spec


def _check_seeds(seeds: Seeds) -> None:
    """:class:`~tidings.control.errors.Invalid` (naming the address) unless every seed
    address is one its channel can send to."""
    checks = {
        "email": (ingest.valid_email, "an email address"),
        "sms": (lambda a: bool(ingest.PHONE.match(a)), "a phone number"),
        "push": (lambda a: 0 < len(a) <= 4096 and "\x00" not in a, "a push token"),
    }
    for channel, (valid, what) in checks.items():
        addresses: tuple[str, ...] = getattr(seeds, channel)
        if len(addresses) > MAX_SEEDS:
            raise errors.Invalid(
                "invalid_field",
                f"at most {MAX_SEEDS} seed addresses a channel",
                field=f"$.seeds.{channel}",
            )
        for index, address in enumerate(addresses):
            if not valid(address):
                raise errors.Invalid(
                    "invalid_field",
                    f"seed {address!r} is not {what}",
                    field=f"$.seeds.{channel}[{index}]",
                )


async def create(db: Database, definition: Definition) -> EventTypeInfo:
    """Create an event type; :class:`~tidings.control.errors.Conflict` if the name is taken
    (names differing only in case are the same name)."""
    label, spec = check_definition(definition)
    now = clock.now_us()
    async with db.transaction() as conn:
        taken = {t.name.lower() for t in await design.list_event_types(conn)}
        if definition.name.lower() in taken or not await design.insert_event_type(
            conn, definition.name, label, definition.defaultChannel, _encode(spec).decode(), now
        ):
            raise errors.Conflict(
                "duplicate_event_type",
                f"an event type named {definition.name!r} exists",
                field="$.name",
            )
        row = await design.get_event_type(conn, definition.name)
    assert row is not None
    return _info(row)


async def update(db: Database, name: str, definition: Definition) -> EventTypeInfo:
    """Replace an event type's definition (its name stays)."""
    if definition.name != name:
        raise errors.Invalid(
            "invalid_field", "an event type cannot be renamed; name must match", field="$.name"
        )
    label, spec = check_definition(definition)
    async with db.transaction() as conn:
        if not await design.update_event_type(
            conn, name, label, definition.defaultChannel, _encode(spec).decode(), clock.now_us()
        ):
            raise unknown(name)
        row = await design.get_event_type(conn, name)
    assert row is not None
    return _info(row)


def unknown(name: str) -> errors.NotFound:
    """The error for a name no event type has."""
    return errors.NotFound("unknown_event_type", f"no event type {name!r}")


async def get(db: Database, name: str) -> EventTypeInfo:
    """One event type; :class:`~tidings.control.errors.NotFound` if there is none."""
    async with db.connection() as conn:
        row = await design.get_event_type(conn, name)
    if row is None:
        raise unknown(name)
    return _info(row)


async def list_all(db: Database) -> list[EventTypeInfo]:
    """Every event type, by name."""
    async with db.connection() as conn:
        return [_info(r) for r in await design.list_event_types(conn)]


class CompiledSpec(msgspec.Struct, frozen=True):
    """A stored spec's text and its compiled ctx check (None without a schema)."""

    text: str
    checker: ctxschema.Checker | None


def compile_specs(
    specs: list[tuple[str, str]], previous: dict[str, CompiledSpec]
) -> dict[str, CompiledSpec]:
    """Compile stored specs (name, text), reusing ``previous`` for those unchanged: each
    schema is compiled once, not on every reload."""
    compiled = {}
    for name, text in specs:
        known = previous.get(name)
        if known is not None and known.text == text:
            compiled[name] = known
            continue
        try:
            compiled[name] = CompiledSpec(text, checker_for(parse_spec(text)))
        except (msgspec.DecodeError, ValueError):
            compiled[name] = CompiledSpec(text, None)  # a spec no longer readable: no check
    return compiled


# -- the API preview ------------------------------------------------------------------------------


class ExampleRequest(msgspec.Struct, frozen=True):
    """One HTTP request that sends an event of the type."""

    method: str
    url: str
    headers: dict[str, str]
    body: dict[str, Any]
    curl: str


class Examples(msgspec.Struct, frozen=True):
    """Example requests for the native and the Campaign Standard routes."""

    native: ExampleRequest
    campaignStandard: ExampleRequest


_SAMPLE_ADDRESS = {
    model.Channel.EMAIL: ("email", "someone@example.com"),
    model.Channel.SMS: ("mobilePhone", "+33612345678"),
    model.Channel.PUSH: ("pushToken", "fcm:device-token"),
    model.Channel.WEBHOOK: ("externalId", "customer-42"),
}


def _request(url: str, body: dict[str, Any]) -> ExampleRequest:
    headers = {"Authorization": "Bearer <API key>", "Content-Type": "application/json"}
    text = _encode(body).decode().replace("'", "'\\''")
    curl = (
        f"curl -X POST '{url}' -H 'Authorization: Bearer <API key>' "
        f"-H 'Content-Type: application/json' -d '{text}'"
    )
    return ExampleRequest("POST", url, headers, body, curl)


def examples(info: EventTypeInfo, settings: Settings) -> Examples:
    """The requests that send an event of this type, built from the schema's examples
    (Adobe's "API preview")."""
    ctx = ctxschema.example_ctx(info.ctxSchema)
    field, address = _SAMPLE_ADDRESS[info.defaultChannel]
    base = settings.server_url.rstrip("/")
    native = {"type": info.name, "recipient": {field: address}, "ctx": ctx}
    adobe_field = field if field in ("email", "mobilePhone") else "email"
    adobe_address = address if adobe_field == field else "someone@example.com"
    adobe = {adobe_field: adobe_address, "ctx": ctx}
    adobe_url = f"{base}/{settings.org}/campaign/{settings.transactional_api}/EVT{info.name}"
    return Examples(_request(f"{base}/api/v1/events", native), _request(adobe_url, adobe))


# -- test profiles --------------------------------------------------------------------------------


def _profile(row: design.ProfileRow) -> Profile:
    return Profile(row.name, _recipient_decoder.decode(row.recipient), _ctx_decoder.decode(row.ctx))


async def put_profile(db: Database, event_type: str, profile: Profile) -> Profile:
    """Create or replace a test profile of an event type; its ctx must fit the type's ctx
    schema (:func:`check_profile`)."""
    if not PROFILE_NAME.match(profile.name):
        raise errors.Invalid(
            "invalid_name",
            "a profile name starts with a letter or digit and holds only letters, digits, "
            "'_', '.' and '-' (at most 64)",
            field="$.name",
        )
    async with db.transaction() as conn:
        found = await design.get_event_type(conn, event_type)
        if found is None:
            raise unknown(event_type)
        check_profile(parse_spec(found.spec), profile)
        row = await design.put_profile(
            conn,
            event_type,
            profile.name,
            _encode(profile.recipient).decode(),
            _encode(profile.ctx).decode(),
            clock.now_us(),
        )
    return _profile(row)


def check_profile(spec: Spec, profile: Profile) -> None:
    """Raise :class:`~tidings.control.errors.Invalid` (``invalid_ctx``, at the field's path,
    ``$.ctx.cartAmount``) unless the profile's ctx fits the event type's ctx schema (all of
    it: a test profile is the example a designer previews with, strict or lenient type)."""
    checker = checker_for(spec)
    if checker is None:
        return
    found = checker.check(profile.ctx)
    if found:
        where, _, message = found[0].partition(": ")
        raise errors.Invalid("invalid_ctx", message, field=f"$.{where}")


async def get_profile(db: Database, event_type: str, name: str) -> Profile:
    """One test profile; :class:`~tidings.control.errors.NotFound` if there is none."""
    async with db.connection() as conn:
        row = await design.get_profile(conn, event_type, name)
    if row is None:
        raise errors.NotFound("unknown_profile", f"no test profile {name!r} for {event_type!r}")
    return _profile(row)


async def profiles(db: Database, event_type: str) -> list[Profile]:
    """An event type's test profiles."""
    async with db.connection() as conn:
        return [_profile(r) for r in await design.list_profiles(conn, event_type)]


async def delete_profile(db: Database, event_type: str, name: str) -> None:
    """Delete a test profile."""
    async with db.transaction() as conn:
        if not await design.delete_profile(conn, event_type, name):
            raise errors.NotFound("unknown_profile", f"no test profile {name!r} for {event_type!r}")
