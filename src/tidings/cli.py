"""The ``tidings`` command.

Every verb builds :class:`~tidings.settings.Settings` from the environment (and
``tidings.toml``), then calls the same functions the HTTP API calls.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from collections.abc import Awaitable, Callable, Coroutine
from pathlib import Path
from typing import Annotated, Any, TypeVar

import msgspec
import typer
from rich.console import Console
from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from tidings import (
    apikeys,
    clock,
    ids,
    ingest,
    logs,
    model,
    operators,
    profiles,
    quarantine,
    server,
    subscriptions,
    supervisor,
)
from tidings import targeting as targeting_ops
from tidings.app import App
from tidings.control import (
    adobe_import,
    blocks,
    distribution,
    eventtypes,
    files,
    folders,
    instances,
    proofs,
    publishing,
    templates,
    validation,
)
from tidings.control import catalog as control_catalog
from tidings.control import errors as control_errors
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
AuthorOpt = Annotated[
    str, typer.Option(help="Who saves, publishes or deletes (the audit log's actor).")
]
_AUTHOR = os.environ.get("USER", "cli")
cli.add_typer(keys_cli, name="keys")
cli.add_typer(quarantine_cli, name="quarantine")
cli.add_typer(types_cli, name="event-types")
templates_cli = typer.Typer(
    help="Templates: versions, validation, preview, publishing, blocks; import from Adobe.",
    no_args_is_help=True,
)
cli.add_typer(templates_cli, name="templates")
callbacks_cli = typer.Typer(
    help="Status callbacks: subscriptions and the log.", no_args_is_help=True
)
cli.add_typer(callbacks_cli, name="callbacks")
operators_cli = typer.Typer(help="Console operators.", no_args_is_help=True)
cli.add_typer(operators_cli, name="operators")
profiles_cli = typer.Typer(help="Recipient profiles.", no_args_is_help=True)
cli.add_typer(profiles_cli, name="profiles")
instances_cli = typer.Typer(
    help="Execution instances this control instance publishes to.", no_args_is_help=True
)
cli.add_typer(instances_cli, name="instances")
targeting_cli = typer.Typer(
    help="An event type's reconciliation with profiles and enrichment source.",
    no_args_is_help=True,
)
types_cli.add_typer(targeting_cli, name="targeting")


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

    def first_admin(name: str, password: str) -> None:
        err.print(
            f"[bold]Console:[/bold] {settings.server_url}/console - sign in as "
            f"[bold]{name}[/bold] with the password (shown only this once, change it with "
            f"`tidings operators passwd {name}`):\n\n"
            f"    [bold green]{password}[/bold green]\n"
        )

    count = supervisor.process_count(settings)
    try:
        if count > 1:
            status = supervisor.Supervisor(settings, api=api, worker=worker, processes=count).run(
                announce, first_admin
            )
            if status:
                raise typer.Exit(status)
            return
        _run(
            server.run(
                settings,
                api=api,
                worker=worker,
                ready=lambda app, key: announce(key),
                first_admin=first_admin,
            )
        )
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
    """Import a template folder (one sub-folder per event type) and publish its templates,
    here and on every registered execution instance (exit status 3 if one failed)."""

    async def action(app: App) -> list[publishing.Published]:
        published = await folders.publish_folder(
            app.db, folder, author="cli", renderer=app.renderer
        )
        await app.refresh_routing()
        return [
            msgspec.structs.replace(
                p,
                instances=await distribution.deliver(app.db, app.settings, p.eventType, p.channel),
            )
            for p in published
        ]

    results = _from_folder(action, "not published")
    for r in results:
        state = "new publication" if r.changed else "unchanged"
        out.print(f"{r.eventType}: {r.channel} version {r.version} published ({state})")
    _print_deliveries([d for r in results for d in r.instances])


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
    scope: Annotated[
        list[str] | None, typer.Option(help="events, publish or admin (repeatable).")
    ] = None,
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


# ---------------------------------------------------------------------------- status callbacks


@callbacks_cli.command("add")
def callbacks_add(
    url: Annotated[str, typer.Argument(help="Where to POST each event's final status.")],
    secret: Annotated[
        str | None, typer.Option(help="Signing secret; default a generated one.")
    ] = None,
    event_type: Annotated[
        list[str] | None, typer.Option(help="Only events of this type (repeatable).")
    ] = None,
    status: Annotated[
        list[str] | None, typer.Option(help="Only this final status (repeatable).")
    ] = None,
    kind: Annotated[
        list[str] | None,
        typer.Option(help="status or receipt (repeatable); default both."),
    ] = None,
    receipt: Annotated[
        list[str] | None,
        typer.Option(help="Only receipts in this state, e.g. undeliverable (repeatable)."),
    ] = None,
) -> None:
    """Subscribe a URL to status callbacks (final statuses and delivery receipts); prints
    the id and the signing secret."""
    try:
        created = _with_app(
            lambda app: subscriptions.subscribe(
                app.db,
                url,
                policy=app.webhook.policy,
                secret=secret,
                event_types=event_type or (),
                statuses=status or (),
                kinds=kind or sorted(subscriptions.KINDS),
                receipts=receipt or (),
            )
        )
    except subscriptions.InvalidSubscription as exc:
        err.print(f"[red]{exc.field}: {exc}[/red]")
        raise typer.Exit(2) from None
    err.print(f"subscription {created.id} to {created.url}; signing secret, shown only once:")
    out.print(created.secret)


@callbacks_cli.command("list")
def callbacks_list() -> None:
    """List the active subscriptions."""
    found = _with_app(lambda app: subscriptions.active(app.db))
    table = Table("id", "url", "kinds", "event types", "statuses", "receipts", "created")
    for s in found:
        table.add_row(
            str(s.id),
            s.url,
            ", ".join(s.kinds),
            ", ".join(s.event_types) or "all",
            ", ".join(s.statuses) or "all",
            ", ".join(s.receipt_states) or "all",
            clock.format_iso(s.created_at),
        )
    out.print(table if found else "no subscriptions")


@callbacks_cli.command("remove")
def callbacks_remove(
    subscription_id: Annotated[int, typer.Argument(help="The subscription's id.")],
) -> None:
    """Remove a subscription; its pending callbacks are given up."""
    if not _with_app(lambda app: subscriptions.unsubscribe(app.db, subscription_id)):
        err.print(f"no active subscription {subscription_id}")
        raise typer.Exit(1)
    out.print(f"removed subscription {subscription_id}")


@callbacks_cli.command("log")
def callbacks_log(
    subscription: Annotated[int | None, typer.Option(help="Only this subscription.")] = None,
    event: Annotated[str | None, typer.Option(help="Only this event id.")] = None,
    state: Annotated[
        model.CallbackState | None, typer.Option(help="pending, delivered or failed.")
    ] = None,
    limit: Annotated[int, typer.Option(min=1, max=500)] = 50,
) -> None:
    """Show status callbacks and their attempts, newest first."""
    event_id = None
    if event is not None:
        event_id = ids.parse(event)
        if event_id is None:
            err.print(f"{event} is not an event id")
            raise typer.Exit(2)
    page, tries, _ = _with_app(
        lambda app: subscriptions.log(
            app.db, subscription_id=subscription, event_id=event_id, state=state, limit=limit
        )
    )
    table = Table("id", "subscription", "event", "kind", "state", "attempts", "last reply")
    for c in page:
        replies = " | ".join(f"{a.attempt}: {a.reply}" for a in tries.get(c.id, []))
        table.add_row(
            str(c.id),
            str(c.subscription_id),
            str(c.event_id),
            c.kind,
            str(c.state),
            str(c.attempts),
            replies or c.last_reply,
        )
    out.print(table if page else "no callbacks")


@types_cli.command("create")
def types_create(
    file: Annotated[Path, typer.Argument(help="The definition, JSON (as the admin API takes).")],
) -> None:
    """Create an event type with its ctx schema."""
    definition = _read_json(file, eventtypes.Definition)
    created = _control(lambda app: _refreshed(app, eventtypes.create(app.db, definition)))
    out.print(f"created {created.name}")


@types_cli.command("update")
def types_update(
    name: str,
    file: Annotated[Path, typer.Argument(help="The definition, JSON (as the admin API takes).")],
) -> None:
    """Replace an event type's definition."""
    definition = _read_json(file, eventtypes.Definition)
    _control(lambda app: _refreshed(app, eventtypes.update(app.db, name, definition)))
    out.print(f"updated {name}")


@types_cli.command("show")
def types_show(name: str) -> None:
    """Show an event type with its ctx schema, as JSON."""
    _print_json(_control(lambda app: eventtypes.get(app.db, name)))


@types_cli.command("delete")
def types_delete(name: str, author: AuthorOpt = _AUTHOR) -> None:
    """Delete an event type (refused while its events are queued); each channel it routed is
    unpublished here and on every registered execution instance (exit status 3 if one of
    them failed)."""
    results = _control(
        lambda app: distribution.delete_event_type(app.db, app.settings, name, actor=author)
    )
    out.print(f"deleted {name}")
    _print_deliveries(results)


@types_cli.command("example")
def types_example(name: str) -> None:
    """Example requests sending an event of the type (native and Campaign Standard)."""

    async def action(app: App) -> eventtypes.Examples:
        return eventtypes.examples(await eventtypes.get(app.db, name), app.settings)

    found = _control(action)
    out.print(found.native.curl, markup=False)
    out.print(found.campaignStandard.curl, markup=False)


@types_cli.command("profile")
def types_profile(
    name: str,
    profile: str,
    file: Annotated[Path, typer.Argument(help='JSON: {"recipient": {...}, "ctx": {...}}.')],
) -> None:
    """Create or replace a test profile of an event type."""
    given = _read_json(file, eventtypes.Profile)
    sample = eventtypes.Profile(profile, given.recipient, given.ctx)
    _control(lambda app: eventtypes.put_profile(app.db, name, sample))
    out.print(f"saved profile {profile} of {name}")


# ---------------------------------------------------------------------------- templates

ChannelArg = Annotated[model.Channel, typer.Argument(help="email, sms, push or webhook.")]


def _control(action: Callable[[App], Awaitable[T]]) -> T:
    """Run a control operation; its refusal (code and message) exits with status 1."""
    try:
        return _with_app(action)
    except control_errors.ControlError as exc:
        err.print(f"[red]{exc.code}:[/red] {exc.message}", markup=True)
        issues = exc.issues if isinstance(exc, control_errors.Invalid) else []
        for issue in issues:
            _print_issue(issue)
        raise typer.Exit(1) from None


def _from_folder(action: Callable[[App], Awaitable[T]], refused: str) -> T:
    """Run a control operation on a template folder; a broken folder exits with status 1,
    naming the file."""
    try:
        return _control(action)
    except files.TemplateFolderError as exc:
        err.print(f"[red]{refused}:[/red] {exc}", markup=True)
        raise typer.Exit(1) from None


async def _refreshed(app: App, done: Awaitable[T]) -> T:
    result = await done
    await app.refresh_routing()
    return result


def _read_json(file: Path, kind: type[T]) -> T:
    try:
        return msgspec.json.decode(file.read_bytes(), type=kind)
    except OSError as exc:
        err.print(f"[red]cannot read {file}:[/red] {exc}")
        raise typer.Exit(2) from None
    except msgspec.DecodeError as exc:  # ValidationError included: it names the field
        err.print(f"[red]{file}:[/red] {exc}", markup=False)
        raise typer.Exit(2) from None


def _print_json(value: object) -> None:
    out.print(msgspec.json.format(msgspec.json.encode(value)).decode(), markup=False)


def _print_issue(issue: validation.Issue) -> None:
    where = ":".join(str(p) for p in (issue.field, issue.line, issue.column) if p)
    err.print(f"{where}: {issue.severity}: {issue.code}: {issue.message}", markup=False)


@templates_cli.command("save")
def templates_save(
    event_type: str,
    channel: ChannelArg,
    file: Annotated[Path, typer.Argument(help='JSON: {"content": {...}, "variants": {...}}.')],
    author: AuthorOpt = _AUTHOR,
) -> None:
    """Save a template version (the new draft)."""
    draft = _read_json(file, templates.Draft)
    saved = _control(lambda app: templates.save(app.db, event_type, channel, draft, author))
    out.print(f"saved version {saved.number} of the {channel} template of {event_type}")


@templates_cli.command("versions")
def templates_versions(event_type: str, channel: ChannelArg) -> None:
    """List a template's versions, newest first."""
    found = _control(lambda app: templates.versions(app.db, event_type, channel))
    table = Table("version", "author", "saved")
    for v in found:
        table.add_row(str(v.number), v.author, v.createdAt)
    out.print(table)


@templates_cli.command("show")
def templates_show(event_type: str, channel: ChannelArg, number: int) -> None:
    """Show a version as JSON."""
    _print_json(_control(lambda app: templates.get(app.db, event_type, channel, number)))


@templates_cli.command("diff")
def templates_diff(event_type: str, channel: ChannelArg, old: int, new: int) -> None:
    """Unified diffs, field by field, between two versions."""

    async def action(app: App) -> list[templates.FieldDiff]:
        before = await templates.get(app.db, event_type, channel, old)
        return templates.diff(before, await templates.get(app.db, event_type, channel, new))

    for change in _control(action):
        out.print(change.diff, markup=False, end="")


@templates_cli.command("restore")
def templates_restore(
    event_type: str, channel: ChannelArg, number: int, author: AuthorOpt = _AUTHOR
) -> None:
    """Restore an old version as the new draft."""
    saved = _control(lambda app: templates.restore(app.db, event_type, channel, number, author))
    out.print(f"version {number} restored as version {saved.number}")


@templates_cli.command("validate")
def templates_validate(event_type: str, channel: ChannelArg, number: int) -> None:
    """Validate a version; exit status 1 if it has errors."""
    issues = _control(
        lambda app: publishing.validate(
            app.db, event_type, channel, number, default_sender=app.settings.default_sender
        )
    )
    for issue in issues:
        _print_issue(issue)
    if validation.has_errors(issues):
        raise typer.Exit(1)
    out.print(f"version {number} is valid")


@templates_cli.command("preview")
def templates_preview(
    event_type: str,
    channel: ChannelArg,
    number: int,
    profile: Annotated[str | None, typer.Option(help="A test profile.")] = None,
) -> None:
    """Render a version with a test profile (the schema's examples without one), as JSON."""
    _print_json(
        _control(
            lambda app: publishing.preview(
                app.db,
                event_type,
                channel,
                number,
                profile=profile,
                default_sender=app.settings.default_sender,
            )
        )
    )


@templates_cli.command("publish")
def templates_publish(
    event_type: str, channel: ChannelArg, number: int, author: AuthorOpt = _AUTHOR
) -> None:
    """Publish a version (it must validate); publishing an older one rolls back. It goes to
    every registered execution instance too; exit status 3 if one of them failed."""
    done = _control(
        lambda app: _refreshed(
            app,
            distribution.publish(app.db, app.settings, event_type, channel, number, actor=author),
        )
    )
    state = "published" if done.changed else "already published"
    out.print(f"{event_type} {channel} version {number} {state} ({done.contentHash[:12]})")
    _print_deliveries(done.instances)


def _print_deliveries(results: list[publishing.Delivered]) -> None:
    """One line per execution instance; exit status 3 if one failed."""
    for r in results:
        if r.outcome in ("ok", "superseded"):
            out.print(
                f"  {r.instance}: {r.outcome} ({r.action}, HTTP {r.httpStatus})", markup=False
            )
        else:
            status = "no answer" if r.httpStatus is None else f"HTTP {r.httpStatus}"
            out.print(
                f"  {r.instance}: failed ({r.action}, {status}, {r.attempts} attempt(s)): "
                f"{r.error}",
                markup=False,
            )
    if any(r.outcome == "failed" for r in results):
        err.print("some instances failed; retry with: tidings instances sync NAME")
        raise typer.Exit(3)


@templates_cli.command("unpublish")
def templates_unpublish(event_type: str, channel: ChannelArg, author: AuthorOpt = _AUTHOR) -> None:
    """Stop routing a template: events arriving afterwards end routingFailed (here and on
    every registered execution instance)."""
    results = _control(
        lambda app: _refreshed(
            app, distribution.unpublish(app.db, app.settings, event_type, channel, actor=author)
        )
    )
    out.print(f"unpublished the {channel} template of {event_type}")
    _print_deliveries(results)


@templates_cli.command("audit")
def templates_audit(
    event_type: Annotated[str, typer.Option("--type", help="One event type's.")] = "",
) -> None:
    """Who published or unpublished what, when, and which instances got it."""
    table = Table("at", "actor", "action", "event type", "channel", "version", "hash", "instances")
    for a in _control(lambda app: publishing.audit(app.db, event_type)):
        version = "" if a.version is None else str(a.version)
        table.add_row(
            a.at,
            a.actor,
            a.action,
            a.eventType,
            str(a.channel),
            version,
            a.contentHash[:12],
            ", ".join(a.instances),
        )
    out.print(table)


# ---------------------------------------------------------------------------- instances


@instances_cli.command("add")
def instances_add(
    name: Annotated[str, typer.Argument(help="A name for the instance.")],
    base_url: Annotated[str, typer.Argument(help="Its base URL, like https://exec.example.com.")],
    credential: Annotated[
        str,
        typer.Option(
            envvar="TIDINGS_INSTANCE_CREDENTIAL",
            help="An API key of that instance with the publish scope.",
        ),
    ],
) -> None:
    """Register an execution instance to publish to (then `sync` sends it what is
    published already)."""
    added = _control(
        lambda app: instances.add(
            app.db,
            instances.NewInstance(name, base_url, credential),
            allow_http=app.settings.instance_allow_http,
        )
    )
    out.print(f"registered {added.name} at {added.baseUrl}")


@instances_cli.command("list")
def instances_list() -> None:
    """Registered execution instances with their last outcome."""
    table = Table("name", "base URL", "registered", "last contact", "last outcome", "error")
    for i in _control(lambda app: instances.list_all(app.db)):
        table.add_row(
            i.name, i.baseUrl, i.createdAt, i.contactedAt or "", i.lastOutcome, i.lastError
        )
    out.print(table)


@instances_cli.command("remove")
def instances_remove(name: Annotated[str, typer.Argument(help="The instance's name.")]) -> None:
    """Stop publishing to an execution instance (it keeps what it holds)."""
    _control(lambda app: instances.remove(app.db, name))
    out.print(f"removed {name}")


@instances_cli.command("sync")
def instances_sync(name: Annotated[str, typer.Argument(help="The instance's name.")]) -> None:
    """Send an execution instance every publication (and unpublication) it lacks; exit
    status 3 if one failed."""
    results = _control(lambda app: distribution.sync(app.db, app.settings, name))
    out.print(f"{name}: {len(results)} publication(s) sent" if results else f"{name}: up to date")
    _print_deliveries(results)


@templates_cli.command("proof")
def templates_proof(
    event_type: str,
    channel: ChannelArg,
    number: int,
    profile: Annotated[str | None, typer.Option(help="A test profile.")] = None,
    wait: Annotated[
        bool, typer.Option(help="Wait until every message is done (a worker must run).")
    ] = False,
    timeout: Annotated[float, typer.Option(help="Seconds --wait waits at most.")] = 60.0,
    author: AuthorOpt = _AUTHOR,
) -> None:
    """Send a proof of a version to the event type's seed addresses, marked [Proof]."""

    async def action(app: App) -> proofs.Proof:
        sent = await proofs.send(
            app.db,
            event_type,
            channel,
            number,
            profile=profile,
            actor=author,
            default_sender=app.settings.default_sender,
            next_id=app.ids.next,
        )
        app.wake()
        deadline = asyncio.get_running_loop().time() + timeout
        while wait and not sent.final and asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(0.2)
            sent = await proofs.result(app.db, event_type, sent.id)
        return sent

    proof = _control(action)
    table = Table("address", "status", "answer")
    for r in proof.recipients:
        answer = r.deliveries[-1].reply if r.deliveries else (r.reason or "")
        table.add_row(r.address, str(r.status), answer)
    out.print(f"proof {proof.id} of {event_type} {channel} version {number}")
    out.print(table)
    if wait and not proof.final:
        err.print(f"[red]not done after {timeout:g} s[/red] (is a worker running?)")
        raise typer.Exit(1)


@templates_cli.command("block")
def templates_block(
    name: str,
    file: Annotated[Path, typer.Argument(help="The block's text (a template part).")],
    author: AuthorOpt = _AUTHOR,
) -> None:
    """Save a content block's new version (included with {% include "block:name" %})."""
    try:
        source = file.read_text("utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        err.print(f"[red]cannot read {file}:[/red] {exc}")
        raise typer.Exit(2) from None
    saved = _control(lambda app: blocks.save(app.db, name, source, author))
    out.print(f"saved block {name} version {saved.number}")


# ---------------------------------------------------------------------------- templates


@templates_cli.command("export")
def templates_export(
    folder: Annotated[Path, typer.Argument(help="Where to write the folders.")],
    event_type: Annotated[str | None, typer.Option("--type", help="One event type only.")] = None,
) -> None:
    """Write event types, their newest template versions, test profiles and content blocks
    as a template folder (for git)."""
    tree = _control(lambda app: folders.export(app.db, folder, event_type))
    names = ", ".join(t.definition.name for t in tree.types) or "no event type"
    out.print(f"exported {names} and {len(tree.blocks)} block(s) to {folder}")


@templates_cli.command("import")
def templates_import(
    folder: Annotated[Path, typer.Argument(help="A template folder.")],
    author: AuthorOpt = _AUTHOR,
) -> None:
    """Save a template folder as new versions (an unchanged template gets none); nothing is
    saved if a file is broken."""
    done = _from_folder(
        lambda app: folders.import_folder(app.db, folder, author=author, renderer=app.renderer),
        "not imported",
    )
    for i in done:
        state = "new version" if i.changed else "unchanged"
        out.print(f"{i.event_type}: {i.channel} version {i.version} ({state})")


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


# ---------------------------------------------------------------------------- operators

PasswordStdin = Annotated[
    bool,
    typer.Option(
        "--password-stdin", help="Read the password from standard input (default: a random one)."
    ),
]


def _password(from_stdin: bool) -> tuple[str, bool]:
    """(the password, whether it was generated here and so must be printed)."""
    if not from_stdin:
        return operators.new_password(), True
    password = sys.stdin.readline().rstrip("\r\n")
    try:
        operators.check_password(password)
    except operators.OperatorError as exc:
        err.print(f"[red]{exc}[/red]")
        raise typer.Exit(2) from None
    return password, False


@operators_cli.command("add")
def operators_add(
    name: Annotated[str, typer.Argument(help="The name to sign in with.")],
    role: Annotated[model.OperatorRole, typer.Option(help="What they may do.")] = (
        model.OperatorRole.OPERATOR
    ),
    password_stdin: PasswordStdin = False,
) -> None:
    """Add a console operator (prints a random password unless --password-stdin)."""
    password, generated = _password(password_stdin)
    try:
        _with_app(lambda app: operators.create(app.db, name, password, role))
    except operators.OperatorError as exc:
        err.print(f"[red]{exc}[/red]")
        raise typer.Exit(1) from None
    out.print(f"added {name} ({role})")
    if generated:
        err.print("password (shown only this once):")
        out.print(password)


@operators_cli.command("list")
def operators_list() -> None:
    """List console operators."""
    found = _with_app(lambda app: operators.list_all(app.db))
    table = Table("name", "role", "created", "state")
    for o in found:
        table.add_row(
            o.name, str(o.role), clock.format_iso(o.created_at), "disabled" if o.disabled else ""
        )
    out.print(table)


@operators_cli.command("passwd")
def operators_passwd(
    name: Annotated[str, typer.Argument(help="The operator.")],
    password_stdin: PasswordStdin = False,
) -> None:
    """Give an operator a new password (random unless --password-stdin); ends their
    sessions."""
    password, generated = _password(password_stdin)
    if not _with_app(lambda app: operators.set_password(app.db, name, password)):
        err.print(f"no operator {name}")
        raise typer.Exit(1)
    out.print(f"new password for {name}")
    if generated:
        err.print("password (shown only this once):")
        out.print(password)


@operators_cli.command("disable")
def operators_disable(
    name: Annotated[str, typer.Argument(help="The operator.")],
    enable: Annotated[bool, typer.Option("--enable", help="Enable them again instead.")] = False,
) -> None:
    """Disable an operator (ending their sessions), or enable them again."""
    if not _with_app(lambda app: operators.set_disabled(app.db, name, not enable)):
        err.print(f"no operator {name}")
        raise typer.Exit(1)
    out.print(f"{'enabled' if enable else 'disabled'} {name}")


# ---------------------------------------------------------------------------- profiles


def _profile_json(p: model.Profile) -> dict[str, Any]:
    return {
        "externalId": p.external_id,
        "email": p.email,
        "mobilePhone": p.mobile_phone,
        "pushTokens": list(p.push_tokens),
        "language": p.language,
        "attributes": p.attributes,
        "createdAt": clock.format_iso(p.created_at),
        "updatedAt": clock.format_iso(p.updated_at),
    }


@profiles_cli.command("upsert")
def profiles_upsert(
    external_id: Annotated[str, typer.Argument(help="The profile's external id.")],
    email: Annotated[str | None, typer.Option(help="Email address.")] = None,
    mobile_phone: Annotated[str | None, typer.Option(help="Mobile phone.")] = None,
    push_token: Annotated[list[str] | None, typer.Option(help="Push token (repeatable).")] = None,
    language: Annotated[str | None, typer.Option(help="Language tag (en, fr-CA).")] = None,
    attr: Annotated[
        list[str] | None, typer.Option(help="An attribute, NAME=VALUE (repeatable).")
    ] = None,
    attributes: Annotated[str | None, typer.Option(help="All attributes as a JSON object.")] = None,
) -> None:
    """Create or replace a profile."""
    values: dict[str, Any] = {}
    if attributes is not None:
        try:
            values = json.loads(attributes)
        except json.JSONDecodeError as exc:
            err.print(f"[red]--attributes is not JSON:[/red] {exc}")
            raise typer.Exit(2) from None
        if not isinstance(values, dict):
            err.print("[red]--attributes must be a JSON object[/red]")
            raise typer.Exit(2)
    for item in attr or []:
        name, sep, value = item.partition("=")
        if not sep or not name:
            err.print(f"[red]--attr {item!r}: write NAME=VALUE[/red]")
            raise typer.Exit(2)
        values[name] = value
    data = profiles.ProfileIn(
        email=email,
        mobilePhone=mobile_phone,
        pushTokens=push_token or [],
        language=language,
        attributes=values,
    )
    try:
        profile = profiles.prepare(data, clock.now_us(), external_id)
    except profiles.InvalidProfile as exc:
        err.print(f"[red]invalid profile:[/red] {exc.field}: {exc.message}")
        raise typer.Exit(1) from None
    stored, created = _with_app(lambda app: profiles.upsert(app.db, profile))
    err.print(f"{'created' if created else 'replaced'} {stored.external_id}")
    _print_json(_profile_json(stored))


@profiles_cli.command("get")
def profiles_get(external_id: Annotated[str, typer.Argument(help="External id.")]) -> None:
    """Show a profile as JSON."""
    found = _with_app(lambda app: profiles.get(app.db, external_id))
    if found is None:
        err.print(f"no profile {external_id}")
        raise typer.Exit(1)
    _print_json(_profile_json(found))


@profiles_cli.command("delete")
def profiles_delete(external_id: Annotated[str, typer.Argument(help="External id.")]) -> None:
    """Delete a profile and erase its data from queued events (right to erasure)."""
    erasure = _with_app(lambda app: profiles.delete(app.db, external_id))
    if erasure is None:
        err.print(f"no profile {external_id}")
        raise typer.Exit(1)
    out.print(f"deleted {external_id}; its data erased from {erasure.events} queued event(s)")


_SUFFIX_FORMAT = {
    ".csv": profiles.Format.CSV,
    ".json": profiles.Format.JSON,
    ".ndjson": profiles.Format.JSON,
    ".jsonl": profiles.Format.JSON,
}


@profiles_cli.command("import")
def profiles_import(
    file: Annotated[Path, typer.Argument(help="NDJSON or CSV file ('-' reads stdin).")],
    fmt: Annotated[
        profiles.Format | None,
        typer.Option("--format", help="json (NDJSON) or csv; default: from the file name."),
    ] = None,
    progress: Annotated[bool, typer.Option(help="Show a progress bar.")] = True,
) -> None:
    """Import profiles in batches of 1,000 per transaction; bad lines are reported by number
    and the rest is imported."""
    chosen = fmt or _SUFFIX_FORMAT.get(file.suffix.lower())
    if chosen is None:
        err.print("[red]say --format json or --format csv[/red]")
        raise typer.Exit(2)
    fmt_known: profiles.Format = chosen
    try:
        stream = sys.stdin.buffer if str(file) == "-" else file.open("rb")
        size = None if str(file) == "-" else file.stat().st_size
    except OSError as exc:
        err.print(f"[red]cannot read {file}:[/red] {exc}")
        raise typer.Exit(1) from None

    async def action(app: App) -> profiles.ImportResult:
        bar = Progress(
            TextColumn("[bold]{task.fields[rows]:,}[/bold] profiles"),
            BarColumn(),
            DownloadColumn(),
            TimeRemainingColumn(),
            console=err,
            disable=not progress,
        )
        parser = profiles.Parser(fmt_known)
        importer = profiles.Importer(app.db)
        with bar, stream:
            task = bar.add_task("import", total=size, rows=0)
            while chunk := stream.read(1 << 18):
                await importer.add(parser.feed(chunk))
                bar.update(task, advance=len(chunk), rows=importer.result.imported)
            await importer.add(parser.finish())
            result = await importer.finish()
            bar.update(task, rows=result.imported)
        return result

    result = _with_app(action)
    for e in result.errors:
        err.print(f"{file}:{e.line}: {e.message}", markup=False)
    if result.failed > len(result.errors):
        err.print(f"... and {result.failed - len(result.errors)} more bad lines")
    out.print(f"imported {result.imported} profiles, {result.failed} bad lines")
    if result.failed:
        raise typer.Exit(1)


# ---------------------------------------------------------------------------- targeting


@targeting_cli.command("get")
def targeting_get(name: Annotated[str, typer.Argument(help="Event type name.")]) -> None:
    """Show an event type's reconciliation and enrichment settings."""
    try:
        found = _with_app(lambda app: targeting_ops.get(app.db, name))
    except targeting_ops.UnknownEventType:
        err.print(f"no event type {name}")
        raise typer.Exit(1) from None
    _print_json(targeting_ops.describe(found))


@targeting_cli.command("set")
def targeting_set(
    name: Annotated[str, typer.Argument(help="Event type name.")],
    reconcile_by: Annotated[
        model.ReconcileBy, typer.Option(help="Match events to a profile by this field.")
    ] = model.ReconcileBy.NONE,
    on_missing: Annotated[
        model.OnMissing, typer.Option(help="No profile found: send anyway, or targetingFailed.")
    ] = model.OnMissing.SEND,
    enrichment_url: Annotated[str | None, typer.Option(help="HTTP enrichment source.")] = None,
    enrichment_method: Annotated[str, typer.Option(help="GET or POST.")] = "POST",
    enrichment_timeout: Annotated[float, typer.Option(help="Seconds per call.")] = 2.0,
    enrichment_ttl: Annotated[float, typer.Option(help="Seconds an answer is cached.")] = 60.0,
    enrichment_header: Annotated[
        list[str] | None, typer.Option(help="'Name: value' sent to the source (repeatable).")
    ] = None,
) -> None:
    """Set (replace) an event type's reconciliation and enrichment settings."""
    headers: dict[str, str] = {}
    for item in enrichment_header or []:
        key, sep, value = item.partition(":")
        if not sep:
            err.print(f"[red]--enrichment-header {item!r}: write 'Name: value'[/red]")
            raise typer.Exit(2)
        headers[key.strip()] = value.strip()
    data = targeting_ops.TargetingIn(
        reconcileBy=reconcile_by,
        onMissing=on_missing,
        enrichmentUrl=enrichment_url,
        enrichmentMethod=enrichment_method,
        enrichmentTimeout=enrichment_timeout,
        enrichmentTtl=enrichment_ttl,
        enrichmentHeaders=headers,
    )
    try:
        stored = _with_app(lambda app: targeting_ops.put(app.db, name, data))
    except targeting_ops.UnknownEventType:
        err.print(f"no event type {name}")
        raise typer.Exit(1) from None
    except targeting_ops.InvalidTargeting as exc:
        err.print(f"[red]invalid:[/red] {exc.field}: {exc.message}")
        raise typer.Exit(1) from None
    _print_json(targeting_ops.describe(stored))


@targeting_cli.command("clear")
def targeting_clear(name: Annotated[str, typer.Argument(help="Event type name.")]) -> None:
    """Remove an event type's reconciliation and enrichment settings."""
    try:
        _with_app(lambda app: targeting_ops.delete(app.db, name))
    except targeting_ops.UnknownEventType:
        err.print(f"no event type {name}")
        raise typer.Exit(1) from None
    out.print(f"{name}: no reconciliation, no enrichment")


def main() -> None:
    """Entry point of the ``tidings`` command."""
    cli()


__all__ = ["cli", "main"]
