"""The folder format as an export and import of the control model, so teams can keep their
templates in git.

One folder per event type, named after it, holding (all but one template file optional)::

    templates/
      _blocks/footer.txt          content blocks, one file each (the newest version)
      orderConfirmation/
        template.toml             the definition: label, description, default_channel,
                                  channels, validation, language_field, fallback_language,
                                  [seeds] email/sms/push; per channel what has no file of its
                                  own (see :mod:`tidings.control.files`)
        schema.json               the ctx schema
        subject.txt, email.html (or email.mjml), email.txt, sms.txt, push.txt, webhook.json
        languages/fr/...          a language variant: the same files (and template.toml
                                  tables) for the channels it translates
        profiles/anna.json        a test profile: {"recipient": {...}, "ctx": {...}}

:func:`export` writes each event type with the newest version of each channel's template;
:func:`import_folder` reads a whole tree and checks it (every file parses, every template
compiles, every definition is valid) before it saves anything, then creates or updates the
event types and saves a new version of each template that changed (an unchanged one gets no
new version). Exporting, importing into an empty database and exporting again gives the same
files. :func:`publish_folder` (``tidings publish DIR``) imports, then publishes through
:mod:`tidings.control.publishing`; it checks every template's validation before saving or
publishing anything.
"""

from __future__ import annotations

import asyncio
import json
import re
import tomllib
from pathlib import Path
from typing import Any

import msgspec

from tidings import model
from tidings.control import blocks, bundle, ctxschema, errors, eventtypes, publishing, templates
from tidings.control import validation as checks
from tidings.control.files import CHANNEL_FILES, ChannelReader, TemplateFolderError
from tidings.engine import render
from tidings.store.database import Database

BLOCKS = "_blocks"
LANGUAGES = "languages"
PROFILES = "profiles"
_BARE_KEY = re.compile(r"^[A-Za-z0-9_-]+$")
_schema_decoder = msgspec.json.Decoder(ctxschema.Schema)
_profile_decoder = msgspec.json.Decoder(eventtypes.Profile)


class TypeFolder(msgspec.Struct, frozen=True):
    """One event type as a folder holds it."""

    definition: eventtypes.Definition
    drafts: dict[model.Channel, templates.Draft]
    profiles: list[eventtypes.Profile]


class Tree(msgspec.Struct, frozen=True):
    """A whole exported tree: event types and content blocks."""

    types: list[TypeFolder]
    blocks: dict[str, str]


class Imported(msgspec.Struct, frozen=True):
    """What importing did to one template: its newest version, and whether it is new."""

    event_type: str
    channel: model.Channel
    version: int
    changed: bool


# -- writing ---------------------------------------------------------------------------------------


def _toml_value(value: Any) -> str:
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    return json.dumps(str(value), ensure_ascii=False)


def _toml_key(key: str) -> str:
    return key if _BARE_KEY.match(key) else json.dumps(key, ensure_ascii=False)


def toml_text(tables: dict[str, Any]) -> str:
    """TOML for plain values and (nested) tables of them; empty values are left out."""
    lines: list[str] = []
    nested: list[tuple[str, dict[str, Any]]] = []
    for key, value in tables.items():
        if isinstance(value, dict):
            nested.append((key, value))
        elif value not in ("", (), [], None):
            lines.append(f"{_toml_key(key)} = {_toml_value(value)}")

    def table(prefix: str, values: dict[str, Any]) -> None:
        plain = {k: v for k, v in values.items() if not isinstance(v, dict) and v not in ("", ())}
        inner = [(k, v) for k, v in values.items() if isinstance(v, dict) and v]
        if plain:
            lines.extend(["", f"[{prefix}]"])
            lines.extend(f"{_toml_key(k)} = {_toml_value(v)}" for k, v in plain.items())
        for k, v in inner:
            table(f"{prefix}.{_toml_key(k)}", v)

    for key, value in nested:
        table(_toml_key(key), value)
    return "\n".join(lines).lstrip("\n") + "\n"


def _content_files(content: model.Content) -> tuple[dict[str, str], dict[str, Any]]:
    """A content's files (name → text) and its ``template.toml`` table."""
    if isinstance(content, model.EmailContent):
        sender = content.sender_address
        if content.sender_name:
            sender = f"{content.sender_name} <{content.sender_address}>"
        html_file = "email.mjml" if bundle.is_mjml(content.html) else "email.html"
        texts = {"subject.txt": content.subject + "\n", html_file: content.html}
        texts["email.txt"] = content.text
        table = {"sender": sender, "reply_to": content.reply_to, "headers": content.headers}
        return {k: v for k, v in texts.items() if v.strip()}, table
    if isinstance(content, model.SmsContent):
        return {"sms.txt": content.text + "\n"}, {"sender": content.sender}
    if isinstance(content, model.PushContent):
        table = {
            "title": content.title,
            "sound": content.sound,
            "badge": content.badge,
            "collapse_id": content.collapse_id,
            "data": content.data,
        }
        return {"push.txt": content.body + "\n"}, table
    return {"webhook.json": content.body}, {"url": content.url, "headers": content.headers}


def _write_contents(
    path: Path, contents: dict[model.Channel, model.Content], meta: dict[str, Any]
) -> None:
    for channel, content in contents.items():
        texts, table = _content_files(content)
        for name, text in texts.items():
            (path / name).write_text(text, "utf-8")
        meta[str(channel)] = table


def write_tree(root: Path, tree: Tree) -> None:
    """Write ``tree`` under ``root`` (folders are created; files are overwritten)."""
    root.mkdir(parents=True, exist_ok=True)
    if tree.blocks:
        (root / BLOCKS).mkdir(exist_ok=True)
        for name, source in sorted(tree.blocks.items()):
            (root / BLOCKS / f"{name}.txt").write_text(source, "utf-8")
    for folder in tree.types:
        d = folder.definition
        path = root / d.name
        path.mkdir(exist_ok=True)
        meta: dict[str, Any] = {
            "label": d.label,
            "description": d.description,
            "default_channel": str(d.defaultChannel),
            "channels": [str(c) for c in d.channels],
            "validation": str(d.validation),
            "language_field": d.languageField,
            "fallback_language": d.fallbackLanguage,
            "seeds": msgspec.to_builtins(d.seeds),
        }
        _write_contents(path, {c: dr.content for c, dr in folder.drafts.items()}, meta)
        (path / "template.toml").write_text(toml_text(meta), "utf-8")
        if d.ctxSchema:
            schema = msgspec.json.format(msgspec.json.encode(d.ctxSchema)).decode()
            (path / "schema.json").write_text(schema + "\n", "utf-8")
        languages = sorted({lang for dr in folder.drafts.values() for lang in dr.variants})
        for lang in languages:
            where = path / LANGUAGES / lang
            where.mkdir(parents=True, exist_ok=True)
            lang_meta: dict[str, Any] = {}
            found = {c: dr.variants[lang] for c, dr in folder.drafts.items() if lang in dr.variants}
            _write_contents(where, found, lang_meta)
            (where / "template.toml").write_text(toml_text(lang_meta), "utf-8")
        if folder.profiles:
            (path / PROFILES).mkdir(exist_ok=True)
            for p in folder.profiles:
                text = msgspec.json.format(
                    msgspec.json.encode({"recipient": p.recipient, "ctx": p.ctx})
                )
                (path / PROFILES / f"{p.name}.json").write_text(text.decode() + "\n", "utf-8")


async def _newest(
    db: Database, event_type: str, channel: model.Channel
) -> templates.Version | None:
    listed = await templates.versions(db, event_type, channel)
    return await templates.get(db, event_type, channel, listed[0].number) if listed else None


async def export(db: Database, root: Path, event_type: str | None = None) -> Tree:
    """Write every event type (or one) and the content blocks under ``root``."""
    infos = [await eventtypes.get(db, event_type)] if event_type else await eventtypes.list_all(db)
    folders = []
    for info in infos:
        drafts = {}
        for channel in model.Channel:
            newest = await _newest(db, info.name, channel)
            if newest is not None:
                drafts[channel] = templates.Draft(newest.content, newest.variants)
        definition = eventtypes.Definition(
            name=info.name,
            label=info.label,
            description=info.description,
            defaultChannel=info.defaultChannel,
            channels=info.channels,
            validation=info.validation,
            ctxSchema=info.ctxSchema,
            languageField=info.languageField,
            fallbackLanguage=info.fallbackLanguage,
            seeds=info.seeds,
        )
        folders.append(TypeFolder(definition, drafts, await eventtypes.profiles(db, info.name)))
    tree = Tree(folders, {b.name: b.source for b in await blocks.latest(db)})
    await asyncio.to_thread(write_tree, root, tree)
    return tree


# -- reading ---------------------------------------------------------------------------------------


def _meta(path: Path) -> dict[str, Any]:
    toml_path = path / "template.toml"
    if not toml_path.is_file():
        return {}
    try:
        return tomllib.loads(toml_path.read_text("utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise TemplateFolderError(f"{toml_path}: {exc}") from None


def _contents(path: Path, meta: dict[str, Any]) -> dict[model.Channel, model.Content]:
    reader = ChannelReader(path, meta)
    found: dict[model.Channel, model.Content] = {}
    for channel, marker in CHANNEL_FILES.items():
        if (path / marker).is_file():
            if channel is model.Channel.EMAIL and (path / "email.mjml").is_file():
                if (path / "email.html").is_file():
                    raise TemplateFolderError(f"{path} has both email.html and email.mjml")
                found[channel] = msgspec.structs.replace(
                    reader.email(), html=reader.text("email.mjml")
                )
            else:
                found[channel] = reader.content(channel)
    return found


def _field(meta: dict[str, Any], key: str, where: Path, kind: type = str) -> Any:
    value = meta.get(key, kind())
    if not isinstance(value, kind):
        raise TemplateFolderError(f"{where}: {key} must be a {kind.__name__}")
    return value


def read_type(path: Path) -> TypeFolder:
    """Read one event type's folder; :class:`TemplateFolderError` names the file at fault."""
    meta = _meta(path)
    toml_path = path / "template.toml"
    contents = _contents(path, meta)
    seeds = _field(meta, "seeds", toml_path, dict)
    schema: ctxschema.Schema = ()
    if (path / "schema.json").is_file():
        try:
            schema = _schema_decoder.decode((path / "schema.json").read_bytes())
        except msgspec.DecodeError as exc:
            raise TemplateFolderError(f"{path / 'schema.json'}: {exc}") from None
    try:
        definition = msgspec.convert(
            {
                "name": path.name,
                "label": _field(meta, "label", toml_path) or path.name,
                "description": _field(meta, "description", toml_path),
                "defaultChannel": meta.get("default_channel", next(iter(contents), "email")),
                "channels": [*_field(meta, "channels", toml_path, list), *contents],
                "validation": meta.get("validation", "lenient"),
                "ctxSchema": msgspec.to_builtins(schema),
                "languageField": _field(meta, "language_field", toml_path),
                "fallbackLanguage": _field(meta, "fallback_language", toml_path),
                "seeds": seeds,
            },
            eventtypes.Definition,
        )
        eventtypes.check_definition(definition)
    except msgspec.ValidationError as exc:
        raise TemplateFolderError(f"{toml_path}: {exc}") from None
    except errors.ControlError as exc:
        raise TemplateFolderError(f"{toml_path}: {exc.message} (at {exc.field})") from None
    variants: dict[model.Channel, dict[str, model.Content]] = {}
    if (path / LANGUAGES).is_dir():
        for lang_path in sorted(p for p in (path / LANGUAGES).iterdir() if p.is_dir()):
            for channel, content in _contents(lang_path, _meta(lang_path)).items():
                if channel not in contents:
                    raise TemplateFolderError(
                        f"{lang_path}: a {channel} variant needs {path / CHANNEL_FILES[channel]}"
                    )
                variants.setdefault(channel, {})[lang_path.name] = content
    drafts = {c: templates.Draft(content, variants.get(c, {})) for c, content in contents.items()}
    for channel, draft in drafts.items():
        try:
            templates.check(channel, draft)
        except errors.ControlError as exc:
            raise TemplateFolderError(f"{path} ({channel}): {exc.message}") from None
    profiles = []
    if (path / PROFILES).is_dir():
        for file in sorted((path / PROFILES).glob("*.json")):
            try:
                given = _profile_decoder.decode(file.read_bytes())
            except msgspec.DecodeError as exc:
                raise TemplateFolderError(f"{file}: {exc}") from None
            profiles.append(eventtypes.Profile(file.stem, given.recipient, given.ctx))
    return TypeFolder(definition, drafts, profiles)


def read_tree(root: Path) -> Tree:
    """Read every event type folder (and the blocks) under ``root``."""
    if not root.is_dir():
        raise TemplateFolderError(f"{root} is not a folder")
    if (root / "template.toml").is_file() or any(
        (root / m).is_file() for m in CHANNEL_FILES.values()
    ):
        paths = [root]
    else:
        paths = sorted(
            p
            for p in root.iterdir()
            if p.is_dir()
            and p.name != BLOCKS
            and (
                (p / "template.toml").is_file()
                or any((p / m).is_file() for m in CHANNEL_FILES.values())
            )
        )
    found_blocks = {}
    if (root / BLOCKS).is_dir():
        for file in sorted((root / BLOCKS).glob("*.txt")):
            if not blocks.NAME.match(file.stem):
                raise TemplateFolderError(f"{file}: not a block name")
            found_blocks[file.stem] = file.read_text("utf-8")
    types = [read_type(p) for p in paths]
    if not types:
        raise TemplateFolderError(f"no template folders under {root}")
    return Tree(types, found_blocks)


def _compile(root: Path, tree: Tree, renderer: render.Renderer) -> None:
    for folder in tree.types:
        for channel, draft in folder.drafts.items():
            for language, content in (("", draft.content), *draft.variants.items()):
                try:
                    renderer.check(content)
                except render.RenderError as exc:
                    where = (
                        root
                        / folder.definition.name
                        / (f"{LANGUAGES}/{language}" if language else "")
                    )
                    raise TemplateFolderError(f"{where} ({channel}): {exc}") from None


# -- importing and publishing ----------------------------------------------------------------------


async def _checked_tree(db: Database, root: Path, renderer: render.Renderer) -> Tree:
    tree = await asyncio.to_thread(read_tree, root)
    _compile(root, tree, renderer)
    return tree


async def _save(db: Database, tree: Tree, author: str) -> list[Imported]:
    current = {b.name: b.source for b in await blocks.latest(db)}
    for name, source in tree.blocks.items():
        if current.get(name) != source:
            await blocks.save(db, name, source, author)
    done = []
    for folder in tree.types:
        d = folder.definition
        try:
            info = await eventtypes.get(db, d.name)
        except errors.NotFound:
            await eventtypes.create(db, d)
        else:
            label, spec = eventtypes.check_definition(d)
            if info.spec() != spec or info.label != label:
                await eventtypes.update(db, d.name, d)
        for channel, draft in folder.drafts.items():
            newest = await _newest(db, d.name, channel)
            if newest is not None and (newest.content, newest.variants) == (
                draft.content,
                draft.variants,
            ):
                done.append(Imported(d.name, channel, newest.number, False))
                continue
            saved = await templates.save(db, d.name, channel, draft, author)
            done.append(Imported(d.name, channel, saved.number, True))
        for profile in folder.profiles:
            try:
                if await eventtypes.get_profile(db, d.name, profile.name) == profile:
                    continue
            except errors.NotFound:
                pass
            await eventtypes.put_profile(db, d.name, profile)
    return done


async def import_folder(
    db: Database, root: Path, *, author: str, renderer: render.Renderer
) -> list[Imported]:
    """Import a tree: nothing is saved unless every file reads, every template compiles and
    every definition is valid (:class:`TemplateFolderError` names the file at fault)."""
    tree = await _checked_tree(db, root, renderer)
    return await _save(db, tree, author)


async def publish_folder(
    db: Database, root: Path, *, author: str, renderer: render.Renderer, default_sender: str = ""
) -> list[publishing.Published]:
    """Import a tree, then publish each template it holds; nothing is saved or published
    unless every template also passes validation."""
    tree = await _checked_tree(db, root, renderer)
    current = {b.name: b.source for b in await blocks.latest(db)}
    sources = {**current, **tree.blocks}
    fallback = renderer.default_sender
    sender = default_sender or (
        f"{fallback.name} <{fallback.address}>" if fallback.name else fallback.address
    )
    for folder in tree.types:
        schema = folder.definition.ctxSchema
        for channel, draft in folder.drafts.items():
            issues = checks.validate(
                draft.content, draft.variants, schema=schema, sources=sources, default_sender=sender
            )
            if checks.has_errors(issues):
                first = next(i for i in issues if i.severity == "error")
                where = root / folder.definition.name
                raise TemplateFolderError(f"{where} ({channel}, {first.field}): {first.message}")
    imported = await _save(db, tree, author)
    return [
        await publishing.publish(
            db, i.event_type, i.channel, i.version, actor=author, default_sender=sender
        )
        for i in imported
    ]
