"""``recnotify destinations ...`` and ``recnotify dead-letters ...``."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import click
import yaml

from workers.config.settings import Settings
from workers.errors import DestinationNotFound


def _store(ctx: click.Context) -> Any:
    from workers.store.database import Store

    settings: Settings = ctx.find_object(Settings)  # type: ignore[assignment]
    settings.require_database()  # never create an empty database: say where it looked
    return Store.of(settings)


def register(main: click.Group) -> None:
    main.add_command(destinations)
    main.add_command(dead_letters)


@click.group()
def destinations() -> None:
    """Configure where notifications go (SPEC 4 file format).

    \b
    Example file (destinations.yaml):
      destinations:
        - name: face-started
          events: [RECORDING_STARTED_EVENT]
          scope: route:support-line
          url: https://10.0.0.5:8443/Face/eventNotify
          params: "event=AudioRecordingStarted&calledAors=%CALLEDAORS%&ucid=%UCID%"
    """


@destinations.command("import")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--replace", is_flag=True, help="Also remove destinations absent from the file.")
@click.pass_context
def import_(ctx: click.Context, file: Path, replace: bool) -> None:
    """Create or update destinations from FILE (upsert by name); all or nothing.

    \b
    Example:
      recnotify destinations import destinations.yaml --replace
    """
    from workers.destinations import load_file, read_file

    store = _store(ctx)
    existing = {d.name: d for d in store.list_destinations()}
    with click.progressbar(length=0, label=f"validating {file.name}", file=sys.stderr,
                           show_pos=True) as bar:

        def advance(done: int, total: int) -> None:
            bar.length = total
            bar.update(done - bar.pos)

        dests = load_file(read_file(file), existing=existing, progress=advance)
    result = store.import_destinations(dests, replace=replace)
    click.echo(f"{file}: {len(result.created)} created, {len(result.updated)} updated, "
               f"{len(result.removed)} removed, {len(result.unchanged)} unchanged")
    for verb, names in (("created", result.created), ("updated", result.updated),
                        ("removed", result.removed)):
        if names:
            click.echo(f"  {verb}: {', '.join(names)}")


@destinations.command("export")
@click.option("--include-secrets", is_flag=True, help="Write secrets in clear (keep it safe).")
@click.option(
    "--output",
    "-o",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write to a file instead of standard output.",
)
@click.pass_context
def export(ctx: click.Context, include_secrets: bool, output: Path | None) -> None:
    """Write every destination in the import format (secrets masked unless asked).

    \b
    Example:
      recnotify destinations export -o backup.yaml
    """
    from workers.destinations import dump_file

    text = dump_file(_store(ctx).list_destinations(), include_secrets=include_secrets)
    if output:
        output.write_text(text, encoding="utf-8")
    else:
        click.echo(text, nl=False)


@destinations.command("schema")
def schema() -> None:
    """Print the JSON Schema of the destinations file, for editors that validate YAML.

    \b
    Example (VS Code, yaml-language-server):
      recnotify destinations schema > destinations.schema.json
      # first line of destinations.yaml:
      # yaml-language-server: $schema=./destinations.schema.json
    """
    from workers.destinations.schema import file_json_schema

    click.echo(json.dumps(file_json_schema(), indent=2))


@destinations.command("list")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def list_(ctx: click.Context, as_json: bool) -> None:
    """One line per destination. Example: recnotify destinations list"""
    dests = _store(ctx).list_destinations()
    if as_json:
        click.echo(json.dumps([d.to_dict() for d in dests], indent=2))
        return
    if not dests:
        click.echo("no destinations (add some with `recnotify destinations import FILE`)")
    for d in dests:
        events = ("all" if d.all_events else ",".join(d.events)) + (
            " (filtered)" if d.filter is not None else "")
        state = "enabled" if d.enabled else "DISABLED"
        click.echo(f"{d.name:<30} {d.scope:<24} {d.method:<4} {state:<8} {events}")


@destinations.command("show")
@click.argument("name")
@click.pass_context
def show(ctx: click.Context, name: str) -> None:
    """One destination, secrets masked. Example: recnotify destinations show face-started"""
    dest = _store(ctx).get(name)
    click.echo(yaml.safe_dump(dest.to_dict(), sort_keys=False, allow_unicode=True), nl=False)


@destinations.command("remove")
@click.argument("name")
@click.pass_context
def remove(ctx: click.Context, name: str) -> None:
    """Delete a destination. Example: recnotify destinations remove face-started"""
    if not _store(ctx).remove(name):
        raise DestinationNotFound(name)
    click.echo(f"removed {name}")


def _set_enabled(ctx: click.Context, name: str, enabled: bool) -> None:

    _store(ctx).set_enabled(name, enabled)
    click.echo(f"{name} {'enabled' if enabled else 'disabled'}")


@destinations.command("enable")
@click.argument("name")
@click.pass_context
def enable(ctx: click.Context, name: str) -> None:
    """Enable a destination. Example: recnotify destinations enable face-started"""
    _set_enabled(ctx, name, True)


@destinations.command("disable")
@click.argument("name")
@click.pass_context
def disable(ctx: click.Context, name: str) -> None:
    """Disable a destination. Example: recnotify destinations disable face-started"""
    _set_enabled(ctx, name, False)


@click.group("dead-letters")
def dead_letters() -> None:
    """Notifications that ended undelivered, with every attempt's status or error."""

@dead_letters.command("list")
@click.option("--destination", help="Only this destination's.")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def dl_list(ctx: click.Context, destination: str | None, as_json: bool) -> None:
    """List dead letters. Example: recnotify dead-letters list --destination crm"""
    letters = _store(ctx).list_dead_letters(destination=destination)
    if as_json:
        click.echo(json.dumps(letters, indent=2, default=str))
        return
    if not letters:
        click.echo("no dead letters")
    for d in letters:
        click.echo(
            f"#{d['id']:<6} {d['destination'] or '(no destination)':<24} "
            f"event {d['event_id']}  {len(d.get('attempts') or [])} attempt(s): "
            f"{d['reason']}"
        )


@dead_letters.command("replay")
@click.option("--destination", help="Only this destination's.")
@click.pass_context
def dl_replay(ctx: click.Context, destination: str | None) -> None:
    """Deliver dead letters again (same notification id, fresh attempts).

    \b
    Example:
      recnotify dead-letters replay --destination crm
    """
    from producer.redis_url import client_from_url
    from workers.ops.replay import replay_dead_letters
    from workers.taskqueue.app import create_app
    from workers.taskqueue.enqueue import make_enqueue

    settings: Settings = ctx.find_object(Settings)  # type: ignore[assignment]
    store = _store(ctx)
    total = len(store.list_dead_letters(destination=destination))
    if settings.cell_router is not None:
        from workers.ops.cells import replay_in_cells

        with click.progressbar(length=total, label="replaying", file=sys.stderr) as bar:
            outcome = replay_in_cells(settings, store, lambda s: make_enqueue(create_app(s)),
                                      destination=destination, progress=bar.update)
        _cells_report("replayed", outcome)
        return
    client = client_from_url(settings.redis_url)
    with click.progressbar(length=total, label="replaying", file=sys.stderr) as bar:
        count = replay_dead_letters(
            settings,
            store,
            client,
            make_enqueue(create_app(settings)),
            destination=destination,
            progress=bar.update,
        )
    click.echo(f"replayed {count} dead letter(s)")


@dead_letters.command("purge")
@click.option("--destination", help="Only this destination's.")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@click.pass_context
def dl_purge(ctx: click.Context, destination: str | None, yes: bool) -> None:
    """Delete dead letters for good. Example: recnotify dead-letters purge --yes"""
    if not yes and sys.stdin.isatty():
        click.confirm("delete these dead letters for good?", abort=True)
    from producer.redis_url import client_from_url
    from workers.ops.replay import purge_dead_letters
    from workers.taskqueue.app import create_app
    from workers.taskqueue.enqueue import make_enqueue

    settings: Settings = ctx.find_object(Settings)  # type: ignore[assignment]
    if settings.cell_router is not None:
        from workers.ops.cells import purge_in_cells

        _cells_report("purged", purge_in_cells(settings, _store(ctx),
                                               lambda s: make_enqueue(create_app(s)),
                                               destination=destination))
        return
    count = purge_dead_letters(settings, _store(ctx), client_from_url(settings.redis_url),
                               make_enqueue(create_app(settings)), destination=destination)
    click.echo(f"purged {count} dead letter(s)")


def _cells_report(verb: str, outcome: Any) -> None:
    """``replayed 3 dead letter(s): cell a 1, cell b 2``; a cell that did not answer: exit 1."""
    per_cell = ", ".join(f"cell {name} {count}" for name, count in outcome.done.items())
    click.echo(f"{verb} {outcome.total} dead letter(s)" + (f": {per_cell}" if per_cell else ""))
    if outcome.unrouted:
        click.echo(f"{outcome.unrouted} dead letter(s) kept: no stored event to route by "
                   "(replay them with --redis-url of their cell and no --cells)")
    if outcome.failed:
        from workers.errors import ConfigError

        raise ConfigError("; ".join(outcome.failed.values()))
