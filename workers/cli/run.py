"""``recnotify run``: the whole service on one machine, for a first try.

Redis: the one at ``RECNOTIFY_REDIS_URL`` when set (it must answer); when unset,
the default one if it answers, else an embedded server (workers/ops/embedded.py) with
AOF in the data dir, on the default address 127.0.0.1:6379 when that port is
free. Then the database schema, the worker processes (one per CPU), Flower
(basic auth) and the admin service when installed; Ctrl-C stops them all.

Once per data dir (``run.lock``; default ``./.recnotify``). While it runs,
``<data dir>/run.json`` and the per-user pointer (``~/.local/share/recnotify/run.json``,
the same content plus the absolute data dir; the latest run wins) say which data dir,
Redis, key prefix and database it serves, so every other command and ``Publisher()``
find them from any directory with no environment set (producer/discovery.py). Every
child dies with it (PR_SET_PDEATHSIG on Linux).
"""

from __future__ import annotations

import logging
import os
import secrets
import signal
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import click
import redis

from producer.constants import DEFAULT_REDIS_URL
from producer.discovery import (
    RunInfo,
    pointer_file,
    read_pointer,
    remove_pointer,
    remove_run_file,
    write_pointer,
    write_run_file,
)
from producer.redis_url import client_from_url, redact
from workers.config.secret_key import ensure_key_file, read_or_create_private
from workers.config.settings import Settings
from workers.errors import ConfigError
from workers.ops.embedded import (
    DEFAULT_PORT,
    EmbeddedRedis,
    child_preexec,
    hold_pid_lock,
    redis_answers,
)

log = logging.getLogger("recnotify.run")


def register(main: click.Group) -> None:
    main.add_command(run)


def resolve_redis(settings: Settings) -> tuple[Settings, EmbeddedRedis | None]:
    """The Redis to use, starting the embedded one only when allowed (SPEC 7)."""
    if redis_answers(settings.redis_url):
        warn_without_persistence(settings.redis_url)
        return settings, None
    if settings.redis_url_explicit:
        raise ConfigError(
            f"RECNOTIFY_REDIS_URL={settings.redis_url} does not answer; start "
            "that Redis, or unset RECNOTIFY_REDIS_URL to use an embedded one"
        )
    prefer = DEFAULT_PORT if settings.redis_url == DEFAULT_REDIS_URL else None
    embedded = EmbeddedRedis(settings.data_dir / "redis", prefer_port=prefer).start()
    log.info(
        "no Redis at %s: started an embedded Redis server (AOF on) at %s, data in %s",
        settings.redis_url,
        embedded.url,
        embedded.data_dir,
    )
    return replace(settings, redis_url=embedded.url, redis_url_explicit=True), embedded


def warn_without_persistence(url: str) -> None:
    try:
        config = client_from_url(url).config_get("appendonly")
    except redis.exceptions.RedisError:
        return
    if config.get("appendonly") != "yes":
        log.warning(
            "Redis at %s has AOF persistence off: events and queued notifications are "
            "lost if it restarts (use appendonly yes, appendfsync everysec)",
            url.rpartition("@")[2],
        )


def flower_credentials(data_dir: Path) -> str:
    """``user:password`` from RECNOTIFY_FLOWER_AUTH, else a generated one kept in the data dir."""
    given = os.environ.get("RECNOTIFY_FLOWER_AUTH")
    if given:
        return given
    return read_or_create_private(data_dir / "flower.auth",
                                  lambda: f"admin:{secrets.token_urlsafe(16)}")


def refuse_sharing_a_running_service(settings: Settings) -> None:
    """A ConfigError when the live run the pointer names serves this Redis and key prefix
    for another data dir: two runs would share one event stream with two databases."""
    other = read_pointer()
    if other is None or Path(other.data_dir) == settings.data_dir:
        return
    if (other.redis_url, other.key_prefix) != (settings.redis_url, settings.key_prefix):
        return
    raise ConfigError(
        f"`recnotify run` (pid {other.pid}) already serves Redis {redact(other.redis_url)} "
        f"with key prefix {other.key_prefix!r} for data dir {other.data_dir}; a second one "
        f"for {settings.data_dir} would share its events with another database: use that "
        "one (every command finds it from any directory), stop it first, or give this one "
        "its own RECNOTIFY_KEY_PREFIX or RECNOTIFY_REDIS_URL")


def lock_data_dir(data_dir: Path) -> object:
    """Hold ``run.lock`` in the data dir for the life of this process, or a ConfigError."""
    return hold_pid_lock(data_dir / "run.lock", lambda holder: (
        f"`recnotify run` is already running for data dir {data_dir} (pid {holder or '?'}): "
        "use that one, stop it first, or give another --data-dir"))


@click.command()
@click.option(
    "--processes",
    "--workers",
    "processes",
    type=click.IntRange(min=1),
    envvar=["RECNOTIFY_PROCESSES", "RECNOTIFY_WORKERS"],
    help="Worker processes to start [env RECNOTIFY_PROCESSES; default: one per CPU].",
)
@click.option(
    "--flower-port",
    type=int,
    default=5555,
    show_default=True,
    envvar="RECNOTIFY_FLOWER_PORT",
    help="Flower's port (0: no Flower).",
)
@click.pass_context
def run(ctx: click.Context, processes: int | None, flower_port: int) -> None:
    """Run the whole service on this machine (Redis if needed, workers, Flower, admin).

    Other commands, from any directory and terminal, find it with no settings.

    \b
    Example:
      recnotify run
      recnotify run --processes 4 --flower-port 0
    """
    from workers.store.database import Store
    from workers.taskqueue.service import available_cpus

    overrides = ctx.find_root().meta.get("recnotify.overrides", {})
    try:
        # Its own data dir (--data-dir, RECNOTIFY_DATA_DIR, else ./.recnotify), never the one
        # another run's pointer names; under the lock that dir's run file is stale.
        settings = Settings.from_env(discover=False, **overrides)
        settings = replace(settings, data_dir=settings.data_dir.resolve())
        refuse_sharing_a_running_service(settings)
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        lock = lock_data_dir(settings.data_dir)
        settings, embedded = resolve_redis(settings)
    except OSError as exc:
        raise ConfigError(f"cannot prepare the data dir or Redis: {exc}") from None
    if not settings.secret_key:
        settings = replace(settings, secret_key=ensure_key_file(settings.data_dir))
    Store.of(settings).upgrade()
    env = {**os.environ, **settings.to_env()}
    children: list[tuple[str, subprocess.Popen[bytes]]] = []
    python = sys.executable
    for index in range(processes or available_cpus()):
        node = f"{os.uname().nodename}-run{index}"
        children.append(
            (
                f"worker {index}",
                subprocess.Popen([python, "-m", "workers", "worker", "--processes", "1",
                                  "--node-name", node], env=env, preexec_fn=child_preexec()),
            )
        )
    if flower_port:
        creds = flower_credentials(settings.data_dir)
        children.append(
            (
                "flower",
                subprocess.Popen(
                    [
                        python,
                        "-m",
                        "celery",
                        "--app",
                        "workers.celery_app",
                        "flower",
                        f"--port={flower_port}",
                        "--address=127.0.0.1",
                    ],
                    # the password through the environment, never argv (ps shows argv)
                    env={**env, "FLOWER_BASIC_AUTH": creds},
                    preexec_fn=child_preexec(),
                ),
            )
        )
        click.echo(
            f"Flower:   http://127.0.0.1:{flower_port}/  (user/password in "
            f"{settings.data_dir / 'flower.auth'})"
        )
    admin = _start_admin(python, env)
    if admin:
        children.append(("admin", admin))
        addr = env.get("RECNOTIFY_ADMIN_ADDR") or "127.0.0.1:8080"
        click.echo(f"Admin:    http://{addr}/  (External Event Destinations page, /docs, "
                   "/metrics)")
    info = RunInfo(redis_url=settings.redis_url, key_prefix=settings.key_prefix,
                   database_url=settings.effective_database_url, pid=os.getpid(),
                   data_dir=str(settings.data_dir))
    write_run_file(settings.data_dir, info)
    previous = read_pointer()
    try:
        write_pointer(info)
    except OSError as exc:
        log.warning("cannot write the per-user pointer %s (%s): commands find this service "
                    "only from %s or with --data-dir %s", pointer_file(), exc,
                    settings.data_dir.parent, settings.data_dir)
    click.echo(f"Redis:    {redact(settings.redis_url)}")
    click.echo(f"Database: {settings.effective_database_url}")
    click.echo(f"Data dir: {settings.data_dir}  (other commands find this service from any "
               "directory)")
    click.echo("Try:      recnotify listen   (in another terminal; README: a worked example)")
    try:
        _supervise(children, embedded)
    finally:
        remove_pointer(os.getpid(), previous)
        remove_run_file(settings.data_dir, os.getpid())
        del lock


def _start_admin(python: str, env: dict[str, str]) -> subprocess.Popen[bytes] | None:
    try:
        import workers.admin  # type: ignore[import-not-found,unused-ignore]  # noqa: F401
    except ImportError:
        return None
    return subprocess.Popen([python, "-m", "workers", "admin"], env=env,
                            preexec_fn=child_preexec())


def _supervise(
    children: list[tuple[str, subprocess.Popen[bytes]]], embedded: EmbeddedRedis | None
) -> None:
    stopping = False

    def _stop(signum: int, _frame: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    try:
        while not stopping:
            for name, child in list(children):
                if child.poll() is None:
                    continue
                if name.startswith("worker"):
                    log.error("%s exited with code %s; stopping", name, child.returncode)
                    stopping = True
                else:  # Flower or admin (e.g. its port is taken): the service goes on
                    log.warning("%s exited with code %s; workers keep running", name,
                                child.returncode)
                    children.remove((name, child))
            time.sleep(0.5)
    finally:
        for _, child in children:
            if child.poll() is None:
                child.terminate()
        for _, child in children:
            try:
                child.wait(30)
            except subprocess.TimeoutExpired:
                child.kill()
        if embedded:
            embedded.stop()
