"""``recnotify worker``, ``recnotify check`` and ``recnotify db``: running the service."""

from __future__ import annotations

import os
import sys

import click

from producer.errors import RecnotifyError
from workers.cli.common import _settings, require_redis
from workers.config.settings import Settings


def register(main: click.Group) -> None:
    main.add_command(worker)
    main.add_command(check)
    main.add_command(db)


# -- worker ----------------------------------------------------------------------------------
@click.command()
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
@click.command()
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
@click.group()
def db() -> None:
    """The destination database."""


@db.command("upgrade")
@click.pass_context
def db_upgrade(ctx: click.Context) -> None:
    """Create or upgrade the schema (migrations). Example: recnotify db upgrade"""
    import redis

    from producer.redis_url import client_from_url, redact
    from workers.ops.retained import copy_stream_to_database
    from workers.store.database import Store

    settings = _settings(ctx)
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    store = Store.of(settings)
    store.upgrade()
    click.echo("database schema is up to date")
    # events an earlier version consumed are only in the stream: keep them for trace,
    # replay and backfill before new workers trim it
    try:
        client = client_from_url(settings.redis_url, socket_connect_timeout=2,
                                 socket_timeout=10)
        copied = copy_stream_to_database(client, settings.keys, store)
    except redis.RedisError as exc:
        click.echo(f"warning: Redis at {redact(settings.redis_url)} did not answer "
                   f"({type(exc).__name__}), so the events its stream retains were not copied "
                   "into the database; run `recnotify db upgrade` again with Redis up, "
                   "before new workers trim the stream", err=True)
        return
    if copied:
        click.echo(f"{copied} event(s) the stream retains are in the database")
