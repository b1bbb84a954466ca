"""The ``tidings`` command.

Every verb builds :class:`~tidings.settings.Settings` from the environment (and
``tidings.toml``), then calls the same functions the HTTP API calls.
"""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Awaitable, Callable, Coroutine
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.table import Table

from tidings import apikeys, clock, ids, ingest, logs, model, quarantine, server, supervisor
from tidings.app import App
from tidings.control import adobe_import, files
from tidings.control import catalog as control_catalog
from tidings.settings import Settings, SettingsError, describe
from tidings.store import database, migrate
from tidings.store import events as events_store
from tidings.store import outbox as outbox_store

T = TypeVar("T")
out = Console(highlight=False, soft_wrap=True)
err = Console(stderr=True, highlight=False, soft_wrap=True)

cli = typer.Typer(
    name="tidings",
    help="Tidings: transactional messaging. Events in; email, SMS, push and webhooks out.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
keys_cli = typer.Typer(help="API keys.", no_args_is_help=True)
quarantine_cli = typer.Typer(help="Quarantined addresses.", no_args_is_help=True)
types_cli = typer.Typer(help="Event types.", no_args_is_help=True)
cli.add_typer(keys_cli, name="keys")
cli.add_typer(quarantine_cli, name="quarantine")
cli.add_typer(types_cli, name="event-types")
templates_cli = typer.Typer(help="Templates: import from Adobe Campaign.", no_args_is_help=True)
cli.add_typer(templates_cli, name="templates")


def _settings(**overrides: Any) -> Settings:
    try:
        settings = Settings.load()
        changes = {k: v for k, v in overrides.items() if v is not None}
        return settings.replace(**changes) if changes else settings
    except SettingsError as exc:
        err.print(f"[red]settings:[/red] {exc}")
        raise typer.Exit(2) from None


def _run(coro: Coroutine[Any, Any, T]) -> T:
    try:
        import uvloop

        return uvloop.run(coro)
    except ImportError:  # pragma: no cover - uvloop is a dependency of uvicorn[standard]
        return asyncio.run(coro)


def _with_app(action: Callable[[App], Awaitable[T]]) -> T:
    """Run ``action`` with an App that has no worker (a one-off command)."""
    settings = _settings()
    logs.configure("warning", settings.log_format)

    async def main() -> T:
        async with App.running(settings, run_worker=False) as app:
            return await action(app)

    try:
        return _run(main())
    except database.Unavailable as exc:
        err.print(f"[red]database unavailable:[/red] {exc}")
        raise typer.Exit(1) from None
    except server.PortInUse as exc:
        err.print(f"[red]{exc}[/red] (another Tidings? set TIDINGS_PORT or --port)")
        raise typer.Exit(1) from None


# ---------------------------------------------------------------------------- running


def _serve(
    api: bool, worker: bool, host: str | None, port: int | None, processes: int | None = None
) -> None:
    settings = _settings(host=host, port=port, processes=processes)
    logs.configure(settings.log_level, settings.log_format)

    def announce(new_key: str | None) -> None:
        if api:
            err.print(
                f"Tidings is listening on [bold]{settings.server_url}[/bold] "
                f"(database {settings.database_url}, email "
                f"{'SMTP ' + settings.smtp_host if settings.uses_smtp else 'to the outbox'})"
            )
        if new_key:
            err.print(
                "\n[bold]First start.[/bold] Example event type [bold]cartAbandonment[/bold] "
                "is published. Your API key (shown only this once, keep it):\n\n"
                f"    [bold green]{new_key}[/bold green]\n\n"
                "Try:\n"
                f"    curl -X POST {settings.server_url}/{settings.org}/campaign/"
                f"{settings.transactional_api}/EVTcartAbandonment \\\n"
                f"      -H 'Authorization: Bearer {new_key}' "
                "-H 'Content-Type: application/json;charset=utf-8' \\\n"
                '      -d \'{"email":"test@example.com","ctx":{"cartAmount":"$ 125",'
                '"lastProduct":"Leather motorbike jacket","firstName":"Jack"}}\'\n'
                "    tidings outbox\n"
            )

    count = supervisor.process_count(settings)
    try:
        if count > 1:
            status = supervisor.Supervisor(settings, api=api, worker=worker, processes=count).run(
                announce
            )
            if status:
                raise typer.Exit(status)
            return
        _run(server.run(settings, api=api, worker=worker, ready=lambda app, key: announce(key)))
    except database.Unavailable as exc:
        err.print(f"[red]database unavailable:[/red] {exc}")
        raise typer.Exit(1) from None
    except server.PortInUse as exc:
        err.print(f"[red]{exc}[/red] (another Tidings? set TIDINGS_PORT or --port)")
        raise typer.Exit(1) from None


HostOpt = Annotated[str | None, typer.Option(help="Listen address (TIDINGS_HOST).")]
PortOpt = Annotated[int | None, typer.Option(help="Listen port (TIDINGS_PORT).")]
ProcessesOpt = Annotated[
    int | None,
    typer.Option(help="Processes on this node, 0: one per core (TIDINGS_PROCESSES).", min=0),
]


@cli.command()
def serve(host: HostOpt = None, port: PortOpt = None, processes: ProcessesOpt = None) -> None:
    """Run the HTTP API and the worker in this process (migrating the database first)."""
    _serve(True, True, host, port, processes)


@cli.command()
def api(host: HostOpt = None, port: PortOpt = None, processes: ProcessesOpt = None) -> None:
    """Run only the HTTP API (workers run elsewhere on the same database)."""
    _serve(True, False, host, port, processes)


@cli.command()
def worker(processes: ProcessesOpt = None) -> None:
    """Run only a worker (the API runs elsewhere on the same database)."""
    _serve(False, True, None, None, processes)


@cli.command("migrate")
def migrate_cmd() -> None:
    """Bring the database schema up to date."""
    settings = _settings()
    migrate.upgrade(settings.database_url)
    out.print(f"database at revision {migrate.head()}")


@cli.command("settings")
def settings_cmd() -> None:
    """List every setting with its environment variable, default and meaning."""
    table = Table("variable", "default", "meaning", show_lines=False)
    for name, default, help_text in describe():
        table.add_row(name, default, help_text)
    out.print(table)


# ---------------------------------------------------------------------------- events


@cli.command()
def publish(folder: Annotated[Path, typer.Argument(help="Template folder.")]) -> None:
    """Publish templates from a folder (one sub-folder per event type)."""

    async def action(app: App) -> list[files.Published]:
        return await files.publish_folder(app.db, folder, author="cli", renderer=app.renderer)

    try:
        results = _with_app(action)
    except files.TemplateFolderError as exc:
        err.print(f"[red]not published:[/red] {exc}")
        raise typer.Exit(1) from None
    for r in results:
        state = "new version" if r.changed else "unchanged"
        out.print(f"{r.event_type}: {r.channel} version {r.version} published ({state})")


@cli.command()
def send(
    event_type: Annotated[str, typer.Argument(help="Event type name.")],
    email: Annotated[str | None, typer.Option(help="Recipient email.")] = None,
    mobile_phone: Annotated[str | None, typer.Option(help="Recipient mobile phone.")] = None,
    ctx: Annotated[str, typer.Option(help="Context as a JSON object.")] = "{}",
) -> None:
    """Send one event (as the API would take it) and print its id."""
    try:
        context = json.loads(ctx)
    except json.JSONDecodeError as exc:
        err.print(f"[red]--ctx is not JSON:[/red] {exc}")
        raise typer.Exit(2) from None
    if not isinstance(context, dict):
        err.print("[red]--ctx must be a JSON object[/red]")
        raise typer.Exit(2)
    submission = ingest.Submission(
        type=event_type,
        recipient=model.Recipient(email=email, mobilePhone=mobile_phone),
        ctx=context,
        source="cli",
    )

    async def action(app: App) -> int:
        return (await app.ingest.accept(submission)).id

    try:
        out.print(str(_with_app(action)))
    except ingest.InvalidEvent as exc:
        err.print(f"[red]invalid event:[/red] {exc.field}: {exc.message}")
        raise typer.Exit(1) from None


@cli.command()
def status(event_id: Annotated[str, typer.Argument(help="Event id.")]) -> None:
    """Show an event: status, timeline and delivery log."""
    number = ids.parse(event_id)
    if number is None:
        err.print("[red]not an event id[/red]")
        raise typer.Exit(2)

    async def action(app: App) -> tuple[model.Event | None, list[model.Delivery]]:
        async with app.db.connection() as conn:
            event = await events_store.get_event(conn, number)
            return event, await events_store.get_deliveries(conn, number)

    event, deliveries = _with_app(action)
    if event is None:
        err.print(f"no event {event_id}")
        raise typer.Exit(1)
    out.print(
        f"[bold]{event.id}[/bold] {event.type} [bold]{event.status}[/bold]"
        + (f" - {event.reason}" if event.reason else "")
    )
    for label, value in (
        ("received", event.received_at),
        ("claimed", event.claimed_at),
        ("sent", event.sent_at),
        ("finished", event.finished_at),
    ):
        if value is not None:
            out.print(f"  {label:9} {clock.format_iso(value)}")
    for d in deliveries:
        out.print(
            f"  attempt {d.attempt}: {d.outcome} via {d.transport} to {d.address} "
            f"({d.render_us / 1000:.2f} ms render, {d.send_us / 1000:.2f} ms send) "
            f"{d.reply}"
        )


@cli.command()
def outbox(
    limit: Annotated[int, typer.Option(help="How many messages.")] = 10,
    show: Annotated[int | None, typer.Option(help="Print one message's text part.")] = None,
    raw: Annotated[bool, typer.Option(help="With --show: print the MIME source.")] = False,
) -> None:
    """List the messages kept in the local outbox."""

    async def action(app: App) -> list[model.OutboxMessage]:
        async with app.db.connection() as conn:
            if show is not None:
                found = await outbox_store.get_message(conn, show)
                return [found] if found else []
            return await outbox_store.list_messages(
                conn, before_id=None, recipient=None, limit=limit
            )

    messages = _with_app(action)
    if show is not None:
        if not messages:
            err.print(f"no outbox message {show}")
            raise typer.Exit(1)
        m = messages[0]
        if raw:
            sys.stdout.write(m.raw.replace("\r\n", "\n"))
            return
        out.print(f"From: {m.sender}\nTo: {m.recipient}\nSubject: {m.subject}\n")
        out.print(m.text or m.html, markup=False)
        return
    table = Table("id", "time", "to", "subject", "event")
    for m in messages:
        table.add_row(
            str(m.id), clock.format_iso(m.created_at), m.recipient, m.subject, str(m.event_id)
        )
    out.print(table if messages else "the outbox is empty")


# ---------------------------------------------------------------------------- keys


@keys_cli.command("create")
def keys_create(
    name: Annotated[str, typer.Argument(help="What the key is for.")],
    scope: Annotated[list[str] | None, typer.Option(help="events or admin (repeatable).")] = None,
) -> None:
    """Create an API key and print it (only now)."""
    try:
        key, record = _with_app(
            lambda app: apikeys.create(app.db, name, frozenset(scope or ["events"]))
        )
    except ValueError as exc:
        err.print(f"[red]{exc}[/red]")
        raise typer.Exit(2) from None
    err.print(f"key {record.prefix} ({', '.join(sorted(record.scopes))}), shown only once:")
    out.print(key)


@keys_cli.command("list")
def keys_list() -> None:
    """List API keys (their prefixes, never the secrets)."""
    found = _with_app(lambda app: apikeys.list_all(app.db))
    table = Table("prefix", "name", "scopes", "created", "revoked")
    for k in found:
        table.add_row(
            k.prefix,
            k.name,
            " ".join(sorted(k.scopes)),
            clock.format_iso(k.created_at),
            clock.format_iso(k.revoked_at) if k.revoked_at else "",
        )
    out.print(table)


@keys_cli.command("revoke")
def keys_revoke(prefix: Annotated[str, typer.Argument(help="The key's prefix.")]) -> None:
    """Revoke an API key."""
    if not _with_app(lambda app: apikeys.revoke(app.db, prefix)):
        err.print(f"no active key {prefix}")
        raise typer.Exit(1)
    out.print(f"revoked {prefix}")


# ---------------------------------------------------------------------------- quarantine

ChannelOpt = Annotated[model.Channel, typer.Option(help="Channel.")]


@quarantine_cli.command("list")
def quarantine_list(channel: Annotated[model.Channel | None, typer.Option()] = None) -> None:
    """List quarantined addresses."""
    found = _with_app(lambda app: quarantine.entries(app.db, channel))
    table = Table("channel", "address", "reason", "source", "since", "until")
    for q in found:
        table.add_row(
            str(q.channel),
            q.address,
            q.reason,
            q.source,
            clock.format_iso(q.created_at),
            clock.format_iso(q.expires_at) if q.expires_at else "",
        )
    out.print(table)


@quarantine_cli.command("add")
def quarantine_add(
    address: str,
    channel: ChannelOpt = model.Channel.EMAIL,
    reason: Annotated[str, typer.Option()] = "added by an operator",
) -> None:
    """Quarantine an address."""
    _with_app(lambda app: quarantine.add(app.db, channel, address, reason=reason))
    out.print(f"quarantined {address} ({channel})")


@quarantine_cli.command("remove")
def quarantine_remove(address: str, channel: ChannelOpt = model.Channel.EMAIL) -> None:
    """Release a quarantined address."""
    if not _with_app(lambda app: quarantine.remove(app.db, channel, address)):
        err.print(f"{address} is not quarantined")
        raise typer.Exit(1)
    out.print(f"released {address}")


# ---------------------------------------------------------------------------- event types


@types_cli.command("list")
def types_list() -> None:
    """List event types."""
    found = _with_app(lambda app: control_catalog.event_types(app.db))
    table = Table("name", "label", "channel", "paused")
    for t in found:
        table.add_row(t.name, t.label, str(t.default_channel), "yes" if t.paused else "")
    out.print(table)


@types_cli.command("pause")
def types_pause(name: str) -> None:
    """Pause an event type: its events wait, paused."""
    try:
        _with_app(lambda app: control_catalog.pause(app.db, name))
    except control_catalog.UnknownEventType:
        err.print(f"no event type {name}")
        raise typer.Exit(1) from None
    out.print(f"paused {name}")


@types_cli.command("resume")
def types_resume(name: str) -> None:
    """Resume an event type; its paused events go back to the queue."""
    try:
        count = _with_app(lambda app: control_catalog.resume(app.db, name))
    except control_catalog.UnknownEventType:
        err.print(f"no event type {name}")
        raise typer.Exit(1) from None
    out.print(f"resumed {name} ({count} paused events back in the queue)")


# ---------------------------------------------------------------------------- templates


@templates_cli.command("import-adobe")
def templates_import_adobe(
    html: Annotated[Path | None, typer.Argument(help="The Adobe template's HTML part.")] = None,
    event_type: Annotated[str, typer.Option("--type", help="Event type it is for.")] = "",
    text: Annotated[Path | None, typer.Option(help="The text part (a file).")] = None,
    subject: Annotated[str, typer.Option(help="The subject line (Adobe syntax allowed).")] = "",
    label: Annotated[str, typer.Option(help="The event type's label.")] = "",
    out_dir: Annotated[Path, typer.Option("--out", help="Where to write its folder.")] = Path(
        "templates"
    ),
    keep_untranslated: Annotated[
        bool,
        typer.Option(help="Write it even if parts could not be translated (left as comments)."),
    ] = False,
    publish_it: Annotated[bool, typer.Option("--publish", help="Publish it too.")] = False,
) -> None:
    """Translate an Adobe Campaign template (<%= rtEvent.ctx.x %>, <% if (...) { %>, loops)
    into a Tidings template folder; report every part that could not be translated."""
    if not event_type or not ingest.TYPE_NAME.match(event_type):
        err.print("[red]--type must name the event type (letters, digits, _ . -)[/red]")
        raise typer.Exit(2)
    if not subject.strip():
        err.print("[red]--subject is required[/red]")
        raise typer.Exit(2)
    if html is None and text is None:
        err.print("[red]give the HTML part, --text, or both[/red]")
        raise typer.Exit(2)
    try:
        html_source = html.read_text("utf-8") if html else ""
        text_source = text.read_text("utf-8") if text else ""
    except (OSError, UnicodeDecodeError) as exc:
        err.print(f"[red]cannot read the template:[/red] {exc}")
        raise typer.Exit(1) from None
    imported = adobe_import.import_email(
        event_type, subject=subject, html=html_source, text=text_source, label=label
    )
    names = {"email.html": str(html), "email.txt": str(text), "subject.txt": "--subject"}
    for problem in imported.problems:
        where = names.get(problem.part, problem.part)
        err.print(
            f"{where}:{problem.line}:{problem.column}: {problem.message}: {problem.source}",
            markup=False,
        )
    if imported.problems and not keep_untranslated:
        err.print(
            f"[red]not written:[/red] {len(imported.problems)} part(s) could not be translated "
            "(--keep-untranslated writes it with those parts as comments)"
        )
        raise typer.Exit(1)
    folder = adobe_import.write_folder(imported, out_dir)
    out.print(f"{event_type}: written to {folder}")
    if publish_it:
        publish(folder)


def main() -> None:
    """Entry point of the ``tidings`` command."""
    cli()


__all__ = ["cli", "main"]
