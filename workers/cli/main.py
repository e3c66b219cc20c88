"""The ``recnotify`` command line: a thin layer over the modules.

Global options bind to the environment (``RECNOTIFY_REDIS_URL``,
``RECNOTIFY_DATABASE_URL``, ``RECNOTIFY_KEY_PREFIX``, ``RECNOTIFY_DATA_DIR``); a
command-line option wins. ``--data-dir`` is accepted by every command, before or
after its name. With no Redis URL configured, commands use the service a running
``recnotify run`` serves (its run file in the data dir, producer/discovery.py).
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any, NoReturn

import click
import redis

from producer.errors import RecnotifyError
from producer.redis_url import client_from_url, redact
from workers import __version__
from workers.config import telemetry
from workers.config.env import unknown_variables
from workers.config.logs import setup_logging
from workers.config.settings import DEFAULT_DATA_DIR_TEXT, Settings
from workers.errors import ConfigError


def _settings(ctx: click.Context) -> Settings:
    return ctx.find_object(Settings) or Settings.from_env()


def fail(message: str) -> NoReturn:
    """The one way a command fails: one line on stderr, exit code 1."""
    click.echo(f"error: {message}", err=True)
    sys.exit(1)


class RecnotifyGroup(click.Group):
    """The one error path of every command (SPEC 7): a recnotify error, a Redis that does
    not answer, or a usage mistake (an unknown option, a bad option value) is one line
    naming what is wrong and how to fix it, exit code 1; never a traceback."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except RecnotifyError as exc:
            fail(str(exc))
        except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError) as exc:
            fail(redis_down(ctx.obj, exc))

    def main(self, *args: Any, **kwargs: Any) -> Any:
        kwargs["standalone_mode"] = False
        try:
            code = super().main(*args, **kwargs)
        except click.UsageError as exc:
            where = exc.ctx.command_path if exc.ctx is not None else "recnotify"
            fail(f"{exc.format_message()} (see `{where} --help`)")
        except click.ClickException as exc:
            fail(exc.format_message())
        except click.Abort:
            fail("aborted")
        sys.exit(code if isinstance(code, int) else 0)


def redis_down(settings: Any, exc: BaseException) -> str:
    url = redact(settings.redis_url) if isinstance(settings, Settings) else "the configured URL"
    return (f"Redis at {url} does not answer ({exc}): start it (`recnotify run` starts one), "
            "or point --redis-url / RECNOTIFY_REDIS_URL at the service's Redis")


def require_redis(settings: Settings) -> None:
    """A ConfigError (one line) unless the service's Redis answers now."""
    client = client_from_url(settings.redis_url, socket_timeout=5, socket_connect_timeout=5)
    try:
        client.ping()
    except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError) as exc:
        raise ConfigError(redis_down(settings, exc)) from None
    finally:
        client.close()


@click.group(cls=RecnotifyGroup,
             context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="recnotify")
@click.option(
    "--redis-url",
    envvar="RECNOTIFY_REDIS_URL",
    metavar="URL",
    help="Redis for the event stream and Celery [env RECNOTIFY_REDIS_URL; default: the one "
    "a running `recnotify run` serves (run.json in the data dir), else "
    "redis://127.0.0.1:6379/0].",
)
@click.option(
    "--database-url",
    envvar="RECNOTIFY_DATABASE_URL",
    metavar="URL",
    help="SQLAlchemy URL of the destination store [env RECNOTIFY_DATABASE_URL; "
    "default: SQLite in the data dir].",
)
@click.option(
    "--key-prefix",
    envvar="RECNOTIFY_KEY_PREFIX",
    metavar="PREFIX",
    help="Prefix of every Redis key [env RECNOTIFY_KEY_PREFIX; default recnotify:].",
)
@click.option(
    "--log-format",
    type=click.Choice(["text", "json"]),
    default="text",
    envvar="RECNOTIFY_LOG_FORMAT",
    show_default=True,
    help="Log line format.",
)
@click.option("--log-level", default="INFO", envvar="RECNOTIFY_LOG_LEVEL", show_default=True,
              type=click.Choice(["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"],
                                case_sensitive=False),
              help="Least severe level logged [env RECNOTIFY_LOG_LEVEL].")
@click.option(
    "--data-dir",
    type=click.Path(file_okay=False, path_type=Path),
    envvar="RECNOTIFY_DATA_DIR",
    help="SQLite database, secret key, embedded Redis data, run file [env RECNOTIFY_DATA_DIR; "
    f"default {DEFAULT_DATA_DIR_TEXT}].",
)
@click.pass_context
def main(
    ctx: click.Context,
    redis_url: str | None,
    database_url: str | None,
    key_prefix: str | None,
    log_format: str,
    log_level: str,
    data_dir: Path | None,
) -> None:
    """recnotify: recording events in, HTTP notifications out.

    \b
    Examples:
      recnotify run                          # everything on one machine, for a first try
      recnotify publish RECORDING_STARTED_EVENT --route support --param UCID=13-1@1.2.3.4
      recnotify destinations import destinations.yaml
      recnotify check
    """
    setup_logging(log_level, log_format)
    for line in unknown_variables(os.environ):
        click.echo(f"warning: {line}", err=True)
    overrides = {"redis_url": redis_url, "database_url": database_url, "key_prefix": key_prefix,
                 "log_format": log_format, "log_level": log_level, "data_dir": data_dir}
    ctx.meta["recnotify.overrides"] = {k: v for k, v in overrides.items() if v is not None}
    ctx.obj = Settings.from_env(**ctx.meta["recnotify.overrides"])
    telemetry.setup(ctx.obj.otel)  # RECNOTIFY_OTEL; off: nothing (workers/config/telemetry.py)


# -- publish ---------------------------------------------------------------------------------
@main.command()
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
    traceparent: str | None,
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
    publisher = Publisher(settings.redis_url, key_prefix=settings.key_prefix,
                          publish_timeout_s=settings.publish_timeout_s)
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


# -- worker ----------------------------------------------------------------------------------
@main.command()
@click.option(
    "--concurrency",
    "-c",
    type=int,
    envvar="RECNOTIFY_CONCURRENCY",
    default=64,
    show_default=True,
    help="Delivery threads in this process.",
)
@click.option(
    "--processes",
    "-p",
    type=click.IntRange(min=1),
    envvar="RECNOTIFY_PROCESSES",
    help="Worker processes, each with its consumer and delivery threads "
    "[env RECNOTIFY_PROCESSES; default: one per CPU].",
)
@click.option(
    "--node-name",
    "-n",
    envvar="RECNOTIFY_NODE_NAME",
    help="Worker name (default: host-pid); unique per process (-p0, -p1 ... appended "
    "with several processes).",
)
@click.pass_context
def worker(ctx: click.Context, concurrency: int, processes: int | None,
           node_name: str | None) -> None:
    """Run the worker: the stream consumer and the delivery pool, one process per CPU.

    Run more of them (on one host or many) to scale out.

    \b
    Example:
      RECNOTIFY_REDIS_URL=redis://redis:6379/0 recnotify worker -c 100
      recnotify worker --processes 1
    """
    from dataclasses import replace

    from workers.taskqueue.app import create_app
    from workers.taskqueue.service import available_cpus, install

    settings = _settings(ctx)
    settings.require_database()
    # Celery would log an "Unrecoverable error" traceback and exit 0
    require_redis(settings)
    count = processes or available_cpus()
    if count > 1:
        _run_processes(settings, count, concurrency, node_name or settings.node_name)
        return
    settings = replace(settings, concurrency=concurrency,
                       node_name=node_name or settings.node_name)
    app = create_app(settings)
    install(app)
    app.worker_main(
        [
            "worker",
            "--pool",
            "threads",
            "--concurrency",
            str(concurrency),
            "--queues",
            "deliver",
            "--hostname",
            f"recnotify@{settings.node_name}",
            "--task-events",
            "--without-gossip",
            "--without-mingle",
            "--loglevel",
            settings.log_level,
        ]
    )


def _run_processes(settings: Settings, count: int, concurrency: int, base: str) -> None:
    """``count`` single-process workers as children that die with this one."""
    import os
    import subprocess

    from workers.cli.run import _supervise
    from workers.ops.embedded import child_preexec

    env = {**os.environ, **settings.to_env()}
    children = [
        (f"worker {index}", subprocess.Popen(
            [sys.executable, "-m", "workers", "worker", "--processes", "1", "-c",
             str(concurrency), "--node-name", f"{base}-p{index}"],
            env=env, preexec_fn=child_preexec()))
        for index in range(count)
    ]
    _supervise(children, None)
    if any(child.returncode for _, child in children):
        sys.exit(1)


# -- check -----------------------------------------------------------------------------------
@main.command()
@click.option(
    "--self",
    "self_only",
    is_flag=True,
    help="Only the worker on this host (liveness probe; ignores the database).",
)
@click.pass_context
def check(ctx: click.Context, self_only: bool) -> None:
    """Exit 0 when Redis, the database and at least one worker answer.

    \b
    Examples:
      recnotify check            # readiness of the whole service
      recnotify check --self     # liveness of this host's worker
    """
    from workers.ops.health import check_all, check_self

    settings = _settings(ctx)
    if self_only:
        problems = check_self(settings)
    else:
        try:
            settings.require_database()
            problems = check_all(settings)
        except RecnotifyError as exc:
            problems = [str(exc)]
    if problems:
        for problem in problems:
            click.echo(f"FAIL: {problem}", err=True)
        sys.exit(1)
    click.echo("OK")


# -- db --------------------------------------------------------------------------------------
@main.group()
def db() -> None:
    """The destination database."""


@db.command("upgrade")
@click.pass_context
def db_upgrade(ctx: click.Context) -> None:
    """Create or upgrade the schema (migrations). Example: recnotify db upgrade"""
    from workers.store.database import Store

    settings = _settings(ctx)
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    Store.of(settings).upgrade()
    click.echo("database schema is up to date")


# -- trace -----------------------------------------------------------------------------------
@main.command()
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
    ids = [event_id] if event_id else event_ids_for_ucid(settings, ucid or "")
    traces = [trace_event(settings, i) for i in ids]
    if as_json:
        click.echo(json.dumps(traces, indent=2))
        return
    if not traces:
        click.echo(f"no events found for UCID {ucid!r}")
    for item in traces:
        click.echo(_format_trace(item))


def _format_trace(item: dict[str, Any]) -> str:
    lines = [f"event {item['event_id']}: {item.get('type') or '(event data not in Redis)'}"]
    for n in item["notifications"]:
        state = f"{n['state']}: {n['waiting']}" if n.get("waiting") else n["state"]
        lines.append(f"  -> {n['destination']}  [{state}]  id={n['notification_id']}")
        for a in n["attempts"]:
            status = a.get("status") or a.get("error") or ""
            lines.append(f"       attempt {a['attempt']}: {status}  ({a.get('latency_ms', 0)} ms)")
    if not item["notifications"]:
        lines.append("  (no notifications recorded)")
    return "\n".join(lines)


from workers.cli import admin, destinations, listen, replay, run  # noqa: E402  (sub-commands register)

destinations.register(main)
run.register(main)
listen.register(main)
admin.register(main)
replay.register(main)


def _data_dir_after_the_command(ctx: click.Context, _param: click.Parameter,
                                value: Path | None) -> None:
    """``recnotify COMMAND --data-dir X``: the settings again, with that data dir."""
    if value is None:
        return
    overrides = {**ctx.find_root().meta.get("recnotify.overrides", {}), "data_dir": value}
    ctx.find_root().meta["recnotify.overrides"] = overrides
    try:
        ctx.obj = Settings.from_env(**overrides)
    except RecnotifyError as exc:  # an eager callback runs before the group's invoke
        fail(str(exc))


def add_data_dir_option(command: click.Command) -> None:
    """Give ``command`` and every sub-command a ``--data-dir`` (the global one, repeated)."""
    if not any(p.name == "data_dir" for p in command.params):
        command.params.append(click.Option(
            ["--data-dir"], type=click.Path(file_okay=False, path_type=Path),
            expose_value=False, is_eager=True, callback=_data_dir_after_the_command,
            help="The data dir (as `recnotify --data-dir`) [env RECNOTIFY_DATA_DIR]."))
    if isinstance(command, click.Group):
        for sub in command.commands.values():
            add_data_dir_option(sub)


for _command in main.commands.values():
    add_data_dir_option(_command)
