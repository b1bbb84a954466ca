"""The folder format as an export and import of the control model, on SQLite and PostgreSQL:
export, import into a fresh database, export again gives the same files; importing again
changes nothing; a broken folder is refused naming the file and saves nothing; publishing a
folder goes through the control model's publishing."""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.conftest import empty_postgres
from tidings import model
from tidings.control import blocks, eventtypes, folders, publishing, templates
from tidings.control.files import TemplateFolderError
from tidings.engine import render
from tidings.store import database, design, migrate

RENDERER = render.Renderer(default_sender="Shop <shop@example.com>")
SCHEMA = [
    {"name": "firstName", "type": "string", "required": True, "example": "Jack"},
    {"name": "language", "type": "string", "example": "en"},
]
MJML = (
    "<mjml><mj-body><mj-section><mj-column><mj-text>Hello {{ ctx.firstName }}</mj-text>"
    '{% include "block:footer" %}</mj-column></mj-section></mj-body></mjml>'
)


@pytest.fixture
async def fresh(database_url: str, tmp_path: Path) -> AsyncIterator[str]:
    """Another empty database of the same kind (PostgreSQL: the same one, emptied)."""
    if database_url.startswith("sqlite"):
        url = f"sqlite:///{tmp_path / 'fresh.db'}"
        migrate.upgrade(url)
        yield url
    else:
        yield database_url


async def design_model(db: database.Database) -> None:
    await blocks.save(
        db, "footer", '<mj-text>Shop · <a href="{{ ctx.unsubscribe }}">x</a></mj-text>', "ann"
    )
    await eventtypes.create(
        db,
        eventtypes.Definition(
            name="orderPaid",
            label="Order paid",
            description="Sent when an order is paid",
            defaultChannel=model.Channel.EMAIL,
            channels=(model.Channel.SMS, model.Channel.PUSH, model.Channel.WEBHOOK),
            validation=eventtypes.Validation.STRICT,
            ctxSchema=tuple(
                eventtypes.ctxschema.Field(
                    name=f["name"], required=bool(f.get("required")), example=f["example"]
                )
                for f in SCHEMA
            ),
            languageField="ctx.language",
            fallbackLanguage="en",
            seeds=eventtypes.Seeds(email=("qa@example.com",), sms=("+33612345678",)),
        ),
    )
    email = model.EmailContent(
        subject="Paid, {{ ctx.firstName }}",
        html=MJML,
        text="Hello {{ ctx.firstName }}\n",
        sender_name="Shop",
        sender_address="shop@example.com",
        reply_to="care@example.com",
        headers={"X-Campaign": "orders", "List-Id": "<orders.example.com>"},
    )
    french = model.EmailContent(
        subject="Payé, {{ ctx.firstName }}",
        html="<p>Bonjour</p>",
        sender_address="boutique@example.com",
    )
    await templates.save(
        db, "orderPaid", model.Channel.EMAIL, templates.Draft(email, {"fr": french}), "ann"
    )
    await templates.save(
        db,
        "orderPaid",
        model.Channel.SMS,
        templates.Draft(model.SmsContent("Paid: {{ ctx.firstName }}", sender="Shop")),
        "ann",
    )
    push = model.PushContent(
        title="Paid",
        body="Thanks {{ ctx.firstName }}",
        data={"order": "{{ ctx.firstName }}"},
        sound="default",
        badge="1",
    )
    await templates.save(db, "orderPaid", model.Channel.PUSH, templates.Draft(push), "ann")
    hook = model.WebhookContent(
        url="https://hooks.example.com/paid",
        body='{"name": {{ ctx.firstName | tojson }}}',
        headers={"X-Key": "k"},
    )
    await templates.save(db, "orderPaid", model.Channel.WEBHOOK, templates.Draft(hook), "ann")
    await eventtypes.put_profile(
        db,
        "orderPaid",
        eventtypes.Profile(
            "anna",
            model.Recipient(email="anna@example.com"),
            {"firstName": "Anna", "language": "fr"},
        ),
    )
    await eventtypes.create(
        db, eventtypes.Definition(name="noTemplates", defaultChannel=model.Channel.SMS)
    )


def files_of(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): p.read_text("utf-8")
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


async def test_export_import_export_gives_the_same_files(
    database_url: str, fresh: str, tmp_path: Path
) -> None:
    db = await database.connect(database_url)
    try:
        await design_model(db)
        first = tmp_path / "first"
        await folders.export(db, first)
    finally:
        await db.close()
    exported = files_of(first)
    assert sorted(exported) == [
        "_blocks/footer.txt",
        "noTemplates/template.toml",
        "orderPaid/email.mjml",
        "orderPaid/email.txt",
        "orderPaid/languages/fr/email.html",
        "orderPaid/languages/fr/subject.txt",
        "orderPaid/languages/fr/template.toml",
        "orderPaid/profiles/anna.json",
        "orderPaid/push.txt",
        "orderPaid/schema.json",
        "orderPaid/sms.txt",
        "orderPaid/subject.txt",
        "orderPaid/template.toml",
        "orderPaid/webhook.json",
    ]
    toml = exported["orderPaid/template.toml"]
    assert 'channels = ["email", "sms", "push", "webhook"]' in toml
    assert 'sender = "Shop <shop@example.com>"' in toml
    assert "[seeds]" in toml
    assert 'List-Id = "<orders.example.com>"' in toml

    if not fresh.startswith("sqlite"):
        await empty_postgres(fresh)
    db = await database.connect(fresh)
    try:
        done = await folders.import_folder(db, first, author="bob", renderer=RENDERER)
        assert sorted((i.event_type, str(i.channel), i.version, i.changed) for i in done) == [
            ("orderPaid", "email", 1, True),
            ("orderPaid", "push", 1, True),
            ("orderPaid", "sms", 1, True),
            ("orderPaid", "webhook", 1, True),
        ]
        second = tmp_path / "second"
        await folders.export(db, second)
        assert files_of(second) == exported

        # Importing the same folder again saves no new version.
        again = await folders.import_folder(db, first, author="bob", renderer=RENDERER)
        assert {i.changed for i in again} == {False}
        # A change gives one new version, of that template only.
        (first / "orderPaid" / "sms.txt").write_text("Paid now: {{ ctx.firstName }}\n")
        changed = await folders.import_folder(db, first, author="bob", renderer=RENDERER)
        assert [(str(i.channel), i.version) for i in changed if i.changed] == [("sms", 2)]
        version = await templates.get(db, "orderPaid", model.Channel.SMS, 2)
        assert version.content == model.SmsContent("Paid now: {{ ctx.firstName }}", sender="Shop")
        assert version.author == "bob"
    finally:
        await db.close()


@pytest.mark.parametrize(
    ("breakage", "named"),
    [
        ({"orderPaid/template.toml": "label = [unclosed\n"}, "orderPaid/template.toml"),
        ({"orderPaid/schema.json": '[{"name": "a", "type": "colour"}]'}, "orderPaid/schema.json"),
        ({"orderPaid/sms.txt": "Paid {{ ctx.firstName \n"}, "orderPaid (sms)"),
        ({"orderPaid/profiles/anna.json": "{"}, "orderPaid/profiles/anna.json"),
        ({"orderPaid/template.toml": 'seeds = {email = ["nope"]}\n'}, "$.seeds.email[0]"),
        (
            {"orderPaid/languages/de/sms.txt": "Bezahlt\n", "orderPaid/sms.txt": None},
            "languages/de",
        ),
        ({"_blocks/bad name.txt": "x"}, "_blocks/bad name.txt"),
    ],
)
async def test_a_broken_folder_is_refused_naming_the_file_and_saves_nothing(
    db: database.Database, tmp_path: Path, breakage: dict[str, str | None], named: str
) -> None:
    root = tmp_path / "templates"
    (root / "orderPaid" / "profiles").mkdir(parents=True)
    (root / "orderPaid" / "template.toml").write_text('label = "Order paid"\n')
    (root / "orderPaid" / "sms.txt").write_text("Paid {{ ctx.firstName }}\n")
    (root / "orderPaid" / "profiles" / "anna.json").write_text(
        json.dumps({"ctx": {"firstName": "A"}})
    )
    (root / "other").mkdir()
    (root / "other" / "subject.txt").write_text("Hello\n")
    (root / "other" / "email.txt").write_text("Hello\n")
    (root / "_blocks").mkdir()
    (root / "_blocks" / "footer.txt").write_text("Bye")
    for name, text in breakage.items():
        path = root / name
        if text is None:
            path.unlink()
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    with pytest.raises(TemplateFolderError, match=re.escape(named)):
        await folders.import_folder(db, root, author="bob", renderer=RENDERER)
    with pytest.raises(TemplateFolderError):
        await folders.publish_folder(db, root, author="bob", renderer=RENDERER)
    async with db.connection() as conn:
        assert await design.list_event_types(conn) == []
        assert await design.latest_blocks(conn) == []


async def test_publishing_a_folder_goes_through_the_control_model(
    db: database.Database, tmp_path: Path
) -> None:
    root = tmp_path / "templates"
    (root / "orderPaid").mkdir(parents=True)
    (root / "orderPaid" / "template.toml").write_text('[email]\nsender = "shop@example.com"\n')
    (root / "orderPaid" / "subject.txt").write_text("Paid\n")
    (root / "orderPaid" / "email.html").write_text("<style>p {color: red}</style><p>Paid</p>")
    done = await folders.publish_folder(db, root, author="bob", renderer=RENDERER)
    assert [(d.eventType, str(d.channel), d.version, d.changed) for d in done] == [
        ("orderPaid", "email", 1, True)
    ]
    published = await publishing.publication(db, "orderPaid", model.Channel.EMAIL)
    assert isinstance(published.content, model.EmailContent)
    assert 'style="color: red;"' in published.content.html  # compiled as publishing compiles
    assert (await publishing.audit(db, "orderPaid"))[0].actor == "bob"
    again = await folders.publish_folder(db, root, author="bob", renderer=RENDERER)
    assert [d.changed for d in again] == [False]

    # A template that fails validation publishes nothing, and saves nothing either.
    (root / "orderPaid" / "email.html").write_text("<p>Paid<div></p>")
    with pytest.raises(TemplateFolderError, match=r"orderPaid \(email, html\)"):
        await folders.publish_folder(db, root, author="bob", renderer=RENDERER)
    assert len(await templates.versions(db, "orderPaid", model.Channel.EMAIL)) == 1
