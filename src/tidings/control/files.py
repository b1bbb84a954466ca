"""Templates kept as files: reading one event type's channel files (so teams can keep them
in git). :mod:`tidings.control.folders` imports, exports and publishes whole folders with it.

One folder per event type, named after it, with a file set per channel it has::

    templates/
      cartAbandonment/
        template.toml   label, default_channel, and per channel (all optional):
                        [email] sender, reply_to, [email.headers]
                        [sms] sender
                        [push] title (required for push), sound, badge, collapse_id, [push.data]
                        [webhook] url (required for webhook), [webhook.headers]
        subject.txt     email: the subject line (with email.html and/or email.txt)
        email.html      email: the HTML part
        email.txt       email: the text part
        sms.txt         SMS: the text
        push.txt        push: the body
        webhook.json    webhook: the JSON body

Every text is a template (Jinja2, see :mod:`tidings.engine.render`). The default channel is
``default_channel`` or, without it, email if the folder has one, else the first of SMS,
push, webhook.
"""

from __future__ import annotations

import tomllib
from pathlib import Path

import msgspec

from tidings import model
from tidings.engine import render


class TemplateFolderError(ValueError):
    """A template folder is incomplete or does not compile; the message names the file."""


CHANNEL_FILES = {
    model.Channel.EMAIL: "subject.txt",
    model.Channel.SMS: "sms.txt",
    model.Channel.PUSH: "push.txt",
    model.Channel.WEBHOOK: "webhook.json",
}
"""The file whose presence says a folder has a template for the channel."""


class TemplateFolder(msgspec.Struct, frozen=True):
    """One event type's files, read."""

    name: str
    label: str
    default_channel: model.Channel
    contents: dict[model.Channel, model.Content]


def read_folder(path: Path) -> TemplateFolder:
    """Read and check one event type's folder."""
    meta: dict[str, object] = {}
    toml_path = path / "template.toml"
    if toml_path.is_file():
        try:
            meta = tomllib.loads(toml_path.read_text("utf-8"))
        except tomllib.TOMLDecodeError as exc:
            raise TemplateFolderError(f"{toml_path}: {exc}") from None
    reader = ChannelReader(path, meta)
    contents: dict[model.Channel, model.Content] = {}
    for channel, marker in CHANNEL_FILES.items():
        if (path / marker).is_file():
            contents[channel] = reader.content(channel)
    if not contents:
        raise TemplateFolderError(
            f"{path} has no template: it needs one of {', '.join(CHANNEL_FILES.values())}"
        )
    default = meta.get("default_channel")
    if default is None:
        channel = next(iter(contents))
    else:
        try:
            channel = model.Channel(str(default))
        except ValueError:
            raise TemplateFolderError(
                f"{toml_path}: default_channel {default!r} is not one of "
                f"{', '.join(c.value for c in model.Channel)}"
            ) from None
        if channel not in contents:
            raise TemplateFolderError(
                f"{toml_path}: default_channel is {channel} but the folder has no "
                f"{CHANNEL_FILES[channel]}"
            )
    return TemplateFolder(path.name, str(meta.get("label", path.name)), channel, contents)


class ChannelReader:
    """Reads one channel's files and table of ``template.toml`` (the folder export reads
    language variants with it too)."""

    def __init__(self, path: Path, meta: dict[str, object]):
        self.path = path
        self.meta = meta

    def text(self, file: str) -> str:
        target = self.path / file
        return target.read_text("utf-8") if target.is_file() else ""

    def table(self, name: str) -> dict[str, object]:
        value = self.meta.get(name, {})
        if not isinstance(value, dict):
            raise TemplateFolderError(f"{self.path / 'template.toml'}: [{name}] must be a table")
        return value

    def strings(self, table: dict[str, object], key: str, where: str) -> dict[str, str]:
        value = table.get(key, {})
        if not isinstance(value, dict):
            raise TemplateFolderError(
                f"{self.path / 'template.toml'}: [{where}.{key}] must be a table"
            )
        return {str(k): str(v) for k, v in value.items()}

    def content(self, channel: model.Channel) -> model.Content:
        if channel is model.Channel.EMAIL:
            return self.email()
        table = self.table(channel.value)
        if channel is model.Channel.SMS:
            text = self.text("sms.txt").strip()
            if not text:
                raise TemplateFolderError(f"{self.path / 'sms.txt'} is empty")
            return model.SmsContent(text=text, sender=str(table.get("sender", "")))
        if channel is model.Channel.PUSH:
            title = str(table.get("title", "")).strip()
            if not title:
                raise TemplateFolderError(
                    f"{self.path / 'template.toml'}: a push template needs [push] title"
                )
            return model.PushContent(
                title=title,
                body=self.text("push.txt").strip(),
                data=self.strings(table, "data", "push"),
                sound=str(table.get("sound", "")),
                badge=str(table.get("badge", "")),
                collapse_id=str(table.get("collapse_id", "")),
            )
        url = str(table.get("url", "")).strip()
        if not url:
            raise TemplateFolderError(
                f"{self.path / 'template.toml'}: a webhook template needs [webhook] url"
            )
        return model.WebhookContent(
            url=url,
            body=self.text("webhook.json"),
            headers=self.strings(table, "headers", "webhook"),
        )

    def email(self) -> model.EmailContent:
        email = self.table("email")
        subject = self.text("subject.txt").strip()
        if not subject:
            raise TemplateFolderError(f"{self.path / 'subject.txt'} is empty")
        html, text = self.text("email.html"), self.text("email.txt")
        if not html.strip() and not text.strip():
            raise TemplateFolderError(f"{self.path} needs email.html or email.txt")
        sender = render.parse_address(str(email["sender"])) if email.get("sender") else None
        return model.EmailContent(
            subject=subject,
            html=html,
            text=text,
            sender_name=sender.name if sender else "",
            sender_address=sender.address if sender else "",
            reply_to=str(email.get("reply_to", "")),
            headers=self.strings(email, "headers", "email"),
        )


def read_folders(root: Path) -> list[TemplateFolder]:
    """Every event type folder under ``root``, read."""
    if not root.is_dir():
        raise TemplateFolderError(f"{root} is not a folder")
    return [read_folder(p) for p in find_folders(root)]


def _is_folder(path: Path) -> bool:
    return any((path / marker).is_file() for marker in CHANNEL_FILES.values())


def find_folders(root: Path) -> list[Path]:
    """The event type folders under ``root`` (or ``root`` itself if it is one)."""
    if _is_folder(root):
        return [root]
    return sorted(p for p in root.iterdir() if p.is_dir() and _is_folder(p))
