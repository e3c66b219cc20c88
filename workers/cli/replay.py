"""``recnotify replay``: send retained events to one destination again (a backfill)."""

from __future__ import annotations

import signal
import sys
import threading
import time
from typing import Any

import click

from producer.events import EVENT_TYPES
from workers.config.settings import Settings


def register(main: click.Group) -> None:
    main.add_command(replay)


@click.command("replay")
@click.option("--destination", required=True, help="The destination to send to.")
@click.option("--since", help="Events from this time: ISO 8601 (2026-12-01T10:00:00Z) or an "
              "age (90s, 30m, 2h, 7d).")
@click.option("--until", help="Events up to this time (same forms as --since).")
@click.option("--account", help="Only events of this account.")
@click.option("--route", help="Only events of this route.")
@click.option("--realm", help="Only events of this realm.")
@click.option("--ucid", help="Only the events of this call (UCID).")
@click.option("--event-id", help="Only this event.")
@click.option("--type", "event_type", type=click.Choice(EVENT_TYPES), help="Only this type.")
@click.option("--dry-run", is_flag=True, help="Print what would be sent, per event type.")
@click.option("--rate", type=click.FloatRange(min=0.1), help="Notifications per second "
              "(default: the destination's rate_limit_per_s, else 200).")
@click.pass_context
def replay(ctx: click.Context, destination: str, since: str | None, until: str | None,
           account: str | None, route: str | None, realm: str | None, ucid: str | None,
           event_id: str | None, event_type: str | None, dry_run: bool,
           rate: float | None) -> None:
    """Send retained events that match DESTINATION now, under their usual notification ids.

    The destination may be newer than the events: its scope, event types, results and
    filters decide. Interrupted (Ctrl-C), the same command resumes where it stopped.

    \b
    Examples:
      recnotify replay --destination crm --since 2h --dry-run
      recnotify replay --destination face --ucid 13-1@10.0.0.1 --type RECORDING_STARTED_EVENT
    """
    from workers.ops.selection import Selection, parse_when
    from workers.store.database import Store

    settings: Settings = ctx.find_object(Settings)  # type: ignore[assignment]
    settings.require_database()
    now_s = time.time()
    selection = Selection(
        destination=destination,
        since_s=parse_when(since, now_s=now_s, option="--since") if since else None,
        until_s=parse_when(until, now_s=now_s, option="--until") if until else None,
        account=account, route=route, realm=realm, ucid=ucid, event_id=event_id,
        type=event_type, since=since, until=until)
    store = Store.of(settings)
    dest = store.get(destination)
    router = settings.cell_router
    # with cells, each event goes back through the cell it routes to (one job per cell)
    cells = [(None, settings)] if router is None else [
        (cell.name, settings.for_cell(cell.index)) for cell in router.cells]
    for name, cell_settings in cells:
        owns = None if router is None else _owned_by(router, cell_settings, name)
        job = _job(cell_settings, dest, selection, store, rate, owns)
        where = f" in cell {name}" if name is not None else ""
        if dry_run:
            counts = job.plan()
            click.echo(f"would send {counts.notifications} notification(s) for {counts.events} "
                       f"event(s) to {destination}{where} (looked at {counts.scanned} "
                       "retained event(s))")
            for type_name, count in sorted(counts.per_type.items()):
                click.echo(f"  {type_name}: {count}")
            continue
        _run(job, destination, where)


def _owned_by(router: Any, settings: Settings, name: str | None) -> Any:
    index = next(c.index for c in router.cells if c.name == name)
    return lambda event: router.cell_of_event(event).index == index


def _job(settings: Settings, dest: Any, selection: Any, store: Any, rate: float | None,
         owns: Any) -> Any:
    from producer.redis_url import client_from_url
    from workers.ops.backfill import Backfill
    from workers.taskqueue.app import create_app
    from workers.taskqueue.enqueue import make_enqueue

    client = client_from_url(settings.redis_url)
    client.ping()
    return Backfill(settings, client, dest, selection, make_enqueue(create_app(settings)),
                    store=store, rate_per_s=rate, owns=owns)


def _run(job: Any, destination: str, where: str) -> None:
    stop = threading.Event()
    previous = signal.signal(signal.SIGINT, lambda *_: stop.set())
    try:
        with click.progressbar(length=max(job.total_entries(), 1), file=sys.stderr,
                               label=f"replaying to {destination}{where}", show_pos=True) as bar:
            result: dict[str, Any] = job.run(progress=bar.update, stop=stop)
    finally:
        signal.signal(signal.SIGINT, previous)
    summary = (f"{result.get('notifications', 0)} notification(s) for "
               f"{result.get('events', 0)} event(s) to {destination}{where}")
    if result.get("state") == "interrupted":
        raise click.ClickException(f"replay {job.job_id} interrupted after {summary}: run the "
                                   "same command again to resume")
    left = result.get("in_progress", 0)
    click.echo(f"replay {job.job_id} done: {summary}"
               + (f"; {left} still being delivered were left alone" if left else ""))
