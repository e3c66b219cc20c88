"""``recnotify run``: the whole service on one machine, for a first try.

Redis: the one at ``RECNOTIFY_REDIS_URL`` when set (it must answer); when unset,
the default one if it answers, else an embedded ``redis-server`` with AOF in the
data dir. Then the database schema, the worker(s), Flower (basic auth) and the
admin service when installed; Ctrl-C stops them all.
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

from workers.embedded import EmbeddedRedis, redis_answers
from workers.errors import ConfigError
from workers.secret_key import ensure_key_file, read_or_create_private
from workers.settings import Settings

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
    embedded = EmbeddedRedis(settings.data_dir / "redis").start()
    log.info(
        "no Redis at %s: started an embedded redis-server (AOF on) at %s, data in %s",
        settings.redis_url,
        embedded.url,
        embedded.data_dir,
    )
    return replace(settings, redis_url=embedded.url, redis_url_explicit=True), embedded


def warn_without_persistence(url: str) -> None:
    try:
        config = redis.Redis.from_url(url).config_get("appendonly")
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


@click.command()
@click.option(
    "--workers",
    "worker_count",
    type=int,
    default=1,
    show_default=True,
    envvar="RECNOTIFY_WORKERS",
    help="Worker processes to start.",
)
@click.option(
    "--flower-port",
    type=int,
    default=5555,
    show_default=True,
    envvar="RECNOTIFY_FLOWER_PORT",
    help="Flower's port (0: no Flower).",
)
@click.option(
    "--data-dir",
    type=click.Path(file_okay=False, path_type=Path),
    envvar="RECNOTIFY_DATA_DIR",
    help="SQLite database, secret key, Redis data [env RECNOTIFY_DATA_DIR; default ./.recnotify].",
)
@click.pass_context
def run(ctx: click.Context, worker_count: int, flower_port: int, data_dir: Path | None) -> None:
    """Run the whole service on this machine (Redis if needed, workers, Flower, admin).

    \b
    Example:
      recnotify run --workers 2
    """
    from workers.store import Store

    settings: Settings = ctx.find_object(Settings)  # type: ignore[assignment]
    if data_dir:
        settings = replace(settings, data_dir=data_dir)
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    try:
        settings, embedded = resolve_redis(settings)
    except ConfigError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(1)
    if not settings.secret_key:
        settings = replace(settings, secret_key=ensure_key_file(settings.data_dir))
    Store(settings.effective_database_url, settings.secret_key).upgrade()
    env = {**os.environ, **settings.to_env()}
    children: list[tuple[str, subprocess.Popen[bytes]]] = []
    python = sys.executable
    for index in range(worker_count):
        node = f"{os.uname().nodename}-run{index}"
        children.append(
            (
                f"worker {index}",
                subprocess.Popen([python, "-m", "workers", "worker", "--node-name", node], env=env),
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
                        "workers.app",
                        "flower",
                        f"--port={flower_port}",
                        "--address=127.0.0.1",
                        f"--basic-auth={creds}",
                    ],
                    env=env,
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
    click.echo(f"Redis:    {settings.redis_url}")
    click.echo(f"Database: {settings.effective_database_url}")
    click.echo("Publish:  recnotify publish RECORDING_STARTED_EVENT --route demo --param UCID=1")
    _supervise(children, embedded)


def _start_admin(python: str, env: dict[str, str]) -> subprocess.Popen[bytes] | None:
    try:
        import workers.admin  # type: ignore[import-not-found,unused-ignore]  # noqa: F401
    except ImportError:
        return None
    return subprocess.Popen([python, "-m", "workers", "admin"], env=env)


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
