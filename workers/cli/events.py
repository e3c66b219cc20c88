"""``recnotify publish`` and ``recnotify trace``: an event in, and where it went."""

from __future__ import annotations

import json
from typing import Any

import click

from workers.cli.common import _settings


def register(main: click.Group) -> None:
    main.add_command(publish)
    main.add_command(trace)


# -- publish ---------------------------------------------------------------------------------
@click.command()
@click.argument("event_type", metavar="TYPE")
@click.option("--route")
@click.option("--account")
@click.option("--realm")
@click.option(
    "--result", type=click.Choice(["success", "failure"]), default="success", show_default=True
)
@click.option("--error", "error_text", metavar="TEXT", help="Reason of a failure.")
@click.option(
    "--param",
    "params",
    multiple=True,
    metavar="NAME=VALUE",
    help="A parameter (repeatable; CALLEDAORS may repeat to make a list).",
)
@click.option("--durable", "durable", type=click.IntRange(min=0), metavar="N", default=None,
              help="Return only once N replicas have the event (Redis WAIT); "
                   "env RECNOTIFY_PUBLISH_DURABLE_REPLICAS.")
@click.option("--durable-timeout-ms", type=click.IntRange(min=1), default=None,
              help="How long --durable waits for the replicas; "
                   "env RECNOTIFY_PUBLISH_DURABLE_TIMEOUT_MS (1000).")
@click.option("--traceparent", metavar="00-TRACE-SPAN-FLAGS",
              help="The recorder's W3C trace context (SPEC 1); README: Tracing.")
@click.pass_context
def publish(
    ctx: click.Context,
    event_type: str,
    route: str | None,
    account: str | None,
    realm: str | None,
    result: str,
    error_text: str | None,
    params: tuple[str, ...],
    durable: int | None = None,
    durable_timeout_ms: int | None = None,
    traceparent: str | None = None,
) -> None:
    """Publish one event and print its id.

    \b
    Example:
      recnotify publish RECORDING_STARTED_EVENT --route support-line \\
          --param UCID=13-23132@1.2.3.4 --param CALLEDAORS=sip:7654321@1.2.3.1:5060
    """
    from producer.events import LIST_PARAMS
    from producer.publish import Publisher

    settings = _settings(ctx)
    values: dict[str, Any] = {}
    for item in params:
        name, sep, value = item.partition("=")
        if not sep:
            raise click.BadParameter(f"{item!r} is not NAME=VALUE", param_hint="--param")
        if name in LIST_PARAMS:
            values.setdefault(name, []).append(value)
        else:
            values[name] = value
    cells = settings.cell_router  # with cells: the event goes to its account's cell
    publisher = Publisher(
        None if cells else settings.redis_url, cells=cells, key_prefix=settings.key_prefix,
        publish_timeout_s=settings.publish_timeout_s,
        durable_replicas=settings.publish_durable_replicas if durable is None else durable,
        durable_timeout_ms=durable_timeout_ms or settings.publish_durable_timeout_ms)
    event_id = publisher.publish(
        event_type,
        route=route,
        account=account,
        realm=realm,
        result=result,
        error=error_text,
        params=values,
        traceparent=traceparent,
    )
    click.echo(event_id)


# -- trace -----------------------------------------------------------------------------------
@click.command()
@click.argument("event_id", required=False)
@click.option("--ucid", help="Trace every event of this call.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_context
def trace(ctx: click.Context, event_id: str | None, ucid: str | None, as_json: bool) -> None:
    """An event, its notifications, every attempt and where each stands.

    \b
    Examples:
      recnotify trace 2ebfde20-fce5-481d-8714-f9642c0a56b3
      recnotify trace --ucid 13-23132@1.2.3.4
    """
    from workers.ops.tracing import event_ids_for_ucid, trace_event

    settings = _settings(ctx)
    if not event_id and not ucid:
        raise click.UsageError("give an EVENT_ID or --ucid")
    settings.require_database()
    if settings.cell_router is not None:
        traces = _trace_in_cells(settings, event_id, ucid)
    else:
        ids = [event_id] if event_id else event_ids_for_ucid(settings, ucid or "")
        traces = [trace_event(settings, i) for i in ids]
    if as_json:
        click.echo(json.dumps(traces, indent=2))
        return
    if not traces:
        click.echo(f"no events found for UCID {ucid!r}")
    for item in traces:
        click.echo(_format_trace(item))


def _trace_in_cells(settings: Any, event_id: str | None, ucid: str | None
                    ) -> list[dict[str, Any]]:
    """Each event traced in the cell that owns it (``cell``: its name, None if unknown)."""
    from workers.ops.cells import event_ids_for_ucid_in_cells, owning_cell
    from workers.ops.tracing import trace_event
    from workers.store.database import Store

    store = Store.of(settings)
    ids = [event_id] if event_id else event_ids_for_ucid_in_cells(settings, ucid or "", store)
    traces = []
    for one in ids:
        cell = owning_cell(settings, one, store)
        cell_settings = settings.for_cell(cell.index if cell else 0)
        item = trace_event(cell_settings, one, store=store)
        item["cell"] = cell.name if cell else None
        traces.append(item)
    return traces


def _format_trace(item: dict[str, Any]) -> str:
    lines = [f"event {item['event_id']}: {item.get('type') or '(event not retained)'}"]
    if "cell" in item:
        lines[0] += f"  (cell {item['cell']})" if item["cell"] else "  (cell unknown)"
    for n in item["notifications"]:
        state = f"{n['state']}: {n['waiting']}" if n.get("waiting") else n["state"]
        lines.append(f"  -> {n['destination']}  [{state}]  id={n['notification_id']}")
        for a in n["attempts"]:
            status = a.get("status") or a.get("error") or ""
            lines.append(f"       attempt {a['attempt']}: {status}  ({a.get('latency_ms', 0)} ms)")
    if not item["notifications"]:
        lines.append("  (no notifications recorded)")
    return "\n".join(lines)
