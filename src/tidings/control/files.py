"""Templates kept as files (so teams can keep them in git), published with
``tidings publish <folder>``.

One folder per event type, named after it::

    templates/
      cartAbandonment/
        template.toml   label, and the email's sender, reply_to and [email.headers] (optional)
        subject.txt     the subject line (required)
        email.html      the HTML part (at least one of email.html and email.txt)
        email.txt       the text part

Every file is a template (Jinja2, see :mod:`tidings.engine.render`). Publishing checks that
they compile, saves a new version when the content changed, and routes the type's email
channel to it.
"""

from __future__ import annotations

import asyncio
import tomllib
from pathlib import Path

import msgspec

from tidings import clock, model
from tidings.engine import render
from tidings.store import catalog
from tidings.store.database import Database


class TemplateFolderError(ValueError):
    """A template folder is incomplete or does not compile; the message names the file."""


class Published(msgspec.Struct, frozen=True):
    """What publishing one folder did."""

    event_type: str
    version: int
    publication_id: int
    changed: bool


class TemplateFolder(msgspec.Struct, frozen=True):
    """One event type's files, read."""

    name: str
    label: str
    content: model.EmailContent


def read_folder(path: Path) -> TemplateFolder:
    """Read and check one event type's folder."""
    name = path.name
    meta: dict[str, object] = {}
    if (path / "template.toml").is_file():
        try:
            meta = tomllib.loads((path / "template.toml").read_text("utf-8"))
        except tomllib.TOMLDecodeError as exc:
            raise TemplateFolderError(f"{path / 'template.toml'}: {exc}") from None
    email = meta.get("email", {})
    if not isinstance(email, dict):
        raise TemplateFolderError(f"{path / 'template.toml'}: [email] must be a table")

    def read(file: str) -> str:
        target = path / file
        return target.read_text("utf-8") if target.is_file() else ""

    subject = read("subject.txt").strip()
    if not subject:
        raise TemplateFolderError(f"{path / 'subject.txt'} is missing or empty")
    html, text = read("email.html"), read("email.txt")
    if not html.strip() and not text.strip():
        raise TemplateFolderError(f"{path} needs email.html or email.txt")
    sender = render.parse_address(str(email.get("sender", ""))) if email.get("sender") else None
    headers = email.get("headers", {})
    if not isinstance(headers, dict):
        raise TemplateFolderError(f"{path / 'template.toml'}: [email.headers] must be a table")
    content = model.EmailContent(
        subject=subject,
        html=html,
        text=text,
        sender_name=sender.name if sender else "",
        sender_address=sender.address if sender else "",
        reply_to=str(email.get("reply_to", "")),
        headers={str(k): str(v) for k, v in headers.items()},
    )
    return TemplateFolder(name, str(meta.get("label", name)), content)


def read_folders(root: Path) -> list[TemplateFolder]:
    """Every event type folder under ``root``, read."""
    if not root.is_dir():
        raise TemplateFolderError(f"{root} is not a folder")
    return [read_folder(p) for p in find_folders(root)]


def find_folders(root: Path) -> list[Path]:
    """The event type folders under ``root`` (or ``root`` itself if it is one)."""
    if (root / "subject.txt").is_file():
        return [root]
    return sorted(p for p in root.iterdir() if p.is_dir() and (p / "subject.txt").is_file())


async def publish_folder(
    db: Database, root: Path, *, author: str, renderer: render.Renderer
) -> list[Published]:
    """Publish every event type folder under ``root``; nothing is published unless every
    folder reads and compiles."""
    folders = await asyncio.to_thread(read_folders, root)
    if not folders:
        raise TemplateFolderError(f"no template folders (with a subject.txt) under {root}")
    for folder in folders:
        try:
            renderer.check_email(folder.content)
        except render.RenderError as exc:
            raise TemplateFolderError(f"{root / folder.name}: {exc}") from None
    results = []
    now = clock.now_us()
    async with db.transaction() as conn:
        for folder in folders:
            await catalog.upsert_event_type(
                conn, folder.name, folder.label, model.Channel.EMAIL, now
            )
            latest = await catalog.latest_version(conn, folder.name, model.Channel.EMAIL)
            changed = latest is None or latest[2] != folder.content
            if latest is not None and not changed:
                version_id, number = latest[0], latest[1]
            else:
                version_id, number = await catalog.add_template_version(
                    conn, folder.name, model.Channel.EMAIL, folder.content, author, now
                )
            publication_id = await catalog.publish(
                conn, folder.name, model.Channel.EMAIL, version_id, folder.content, author, now
            )
            results.append(Published(folder.name, number, publication_id, changed))
    return results
