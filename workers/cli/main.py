"""The ``recnotify`` command line: a thin layer over the modules.

Global options bind to the environment (``RECNOTIFY_REDIS_URL``,
``RECNOTIFY_DATABASE_URL``, ``RECNOTIFY_KEY_PREFIX``, ``RECNOTIFY_DATA_DIR``); a
command-line option wins. ``--data-dir`` is accepted by every command, before or
after its name. With no Redis URL configured, commands use the service a running
``recnotify run`` serves (its run file in the data dir, producer/discovery.py).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import click
import redis

from producer.errors import RecnotifyError
from workers import __version__
from workers.cli.common import fail, redis_down
from workers.config import telemetry
from workers.config.env import unknown_variables
from workers.config.logs import setup_logging
from workers.config.settings import DEFAULT_DATA_DIR_TEXT, Settings


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
        except click.exceptions.NoArgsIsHelpError as exc:  # `recnotify`, `recnotify db`
            click.echo(exc.ctx.get_help() if exc.ctx is not None else exc.format_message())
            sys.exit(0)
        except click.UsageError as exc:
            where = exc.ctx.command_path if exc.ctx is not None else "recnotify"
            fail(f"{exc.format_message()} (see `{where} --help`)")
        except click.ClickException as exc:
            fail(exc.format_message())
        except click.Abort:
            fail("aborted")
        sys.exit(code if isinstance(code, int) else 0)


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
    "--cells",
    envvar="RECNOTIFY_CELLS",
    metavar="URLS",
    help="Cells: comma-separated Redis URLs ([NAME=]URL); publish sends each event to the "
    "cell of its account, trace and dead-letters replay find the owning cell "
    "[env RECNOTIFY_CELLS].",
)
@click.option(
    "--cell-table",
    envvar="RECNOTIFY_CELL_TABLE",
    metavar="TABLE",
    help="Pinned tenants: ACCOUNT=CELL,... (a cell index or name), before the hash "
    "[env RECNOTIFY_CELL_TABLE].",
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
    cells: str | None,
    cell_table: str | None,
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
    overrides = {"redis_url": redis_url, "cells": cells, "cell_table": cell_table,
                 "database_url": database_url, "key_prefix": key_prefix,
                 "log_format": log_format, "log_level": log_level, "data_dir": data_dir}
    ctx.meta["recnotify.overrides"] = {k: v for k, v in overrides.items() if v is not None}
    ctx.obj = Settings.from_env(**ctx.meta["recnotify.overrides"])
    telemetry.setup(ctx.obj.otel)  # RECNOTIFY_OTEL; off: nothing (workers/config/telemetry.py)


from workers.cli import (  # noqa: E402  (sub-commands register)
    admin,
    destinations,
    events,
    listen,
    replay,
    run,
    service,
)

events.register(main)
service.register(main)
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
