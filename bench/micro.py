"""Micro-benchmarks of the per-message work: building the MIME message (ours and the stdlib's
``email.message.EmailMessage`` for the same message), rendering the example template, and
validating an event at ingest without and with a compiled ctx schema.

    .venv/bin/python bench/micro.py

Each figure is the median of 7 runs of 2,000 calls, in microseconds per call.
"""

from __future__ import annotations

import email.message
import email.policy
import statistics
import timeit
from collections.abc import Callable
from pathlib import Path

from tidings import ingest, model, server
from tidings.channels.email import mime
from tidings.control import ctxschema, files
from tidings.engine import render


def median_us(fn: Callable[[], object], number: int = 2000, repeat: int = 7) -> float:
    return statistics.median(timeit.repeat(fn, number=number, repeat=repeat)) / number * 1e6


def main() -> None:
    renderer = render.Renderer(default_sender="Tidings Shop <shop@example.com>")
    folder = files.read_folder(Path(server.example_templates()) / "cartAbandonment")
    publication = model.Publication(
        1, folder.name, model.Channel.EMAIL, 1, folder.contents[model.Channel.EMAIL]
    )
    compiled = renderer.compile_email(publication)
    event = model.Event(
        id=1957391197372416,
        type=folder.name,
        channel=None,
        recipient=model.Recipient(email="jack@example.com"),
        ctx={"cartAmount": "$ 125", "lastProduct": "Leather motorbike jacket", "firstName": "Jack"},
        priority=5,
        status=model.EventStatus.PROCESSING,
        source="api",
        received_at=0,
        scheduled_at=None,
        expires_at=None,
        due_at=0,
        attempts=1,
    )
    message = renderer.render_email(compiled, event)

    def stdlib() -> bytes:
        m = email.message.EmailMessage(policy=email.policy.SMTP)
        m["From"] = f"{message.sender.name} <{message.sender.address}>"
        m["To"] = message.to.address
        m["Subject"] = message.subject
        m["Message-ID"] = f"<{message.message_id}>"
        m["Date"] = email.utils.formatdate(usegmt=True)
        m.set_content(message.text)
        m.add_alternative(message.html, subtype="html")
        return m.as_bytes()

    ours = median_us(lambda: mime.build(message))
    theirs = median_us(stdlib, number=200)
    rendered = median_us(lambda: renderer.render_email(compiled, event))
    size = len(mime.build(message))
    print(f"| MIME build, example email ({size:,} bytes) | {ours:.1f} µs |")
    print(f"| same message with the stdlib EmailMessage | {theirs:.1f} µs ({theirs / ours:.0f}×) |")
    print(f"| render the example template (subject, HTML, text) | {rendered:.1f} µs |")
    ctx_check()


ORDER_SCHEMA = (
    ctxschema.Field("firstName", required=True),
    ctxschema.Field("email", ctxschema.FieldType.EMAIL),
    ctxschema.Field("orderDate", ctxschema.FieldType.DATE),
    ctxschema.Field("vip", ctxschema.FieldType.BOOLEAN),
    ctxschema.Field("total", ctxschema.FieldType.NUMBER, required=True),
    ctxschema.Field(
        "items",
        ctxschema.FieldType.COLLECTION,
        required=True,
        fields=(
            ctxschema.Field("name", required=True),
            ctxschema.Field("price", ctxschema.FieldType.NUMBER, required=True),
            ctxschema.Field("url", ctxschema.FieldType.URL),
        ),
    ),
)


def ctx_check() -> None:
    """Ingest's validation of one event: before (no schema) and after (a strict schema of
    six fields with a three-item collection, compiled once)."""
    ctx = {
        "firstName": "Jack",
        "email": "jack@example.com",
        "orderDate": "2026-11-23T10:00:00Z",
        "vip": True,
        "total": 150.5,
        "items": [
            {"name": "Jacket", "price": 125, "url": "https://shop.example.com/jacket"},
            {"name": "Gloves", "price": 20.5, "url": "https://shop.example.com/gloves"},
            {"name": "Hat", "price": 5, "url": "https://shop.example.com/hat"},
        ],
    }
    checker = ctxschema.compile(ORDER_SCHEMA, strict=True)
    assert checker.check(ctx) == []
    submission = ingest.Submission(
        type="orderConfirmation", recipient=model.Recipient(email="jack@example.com"), ctx=ctx
    )
    checkers = {"orderConfirmation": checker}

    def prepare(with_schema: bool) -> object:
        return ingest.prepare(
            submission,
            event_id=1,
            now=0,
            routing=None,
            checkers=checkers if with_schema else None,
        )

    before = median_us(lambda: prepare(False))
    after = median_us(lambda: prepare(True))
    alone = median_us(lambda: checker.check(ctx))
    print(f"| ingest validation of one event, no ctx schema | {before:.1f} µs |")
    print(
        f"| same, strict ctx schema (6 fields, 3 items) | {after:.1f} µs (+{after - before:.1f}) |"
    )
    print(f"| the compiled ctx check alone | {alone:.1f} µs |")


if __name__ == "__main__":
    main()
