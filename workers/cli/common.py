"""What every command shares: the one way to fail, the settings, the Redis check."""

from __future__ import annotations

import sys
from typing import Any, NoReturn

import click
import redis

from producer.redis_url import client_from_url, redact
from workers.config.settings import Settings
from workers.errors import ConfigError


def _settings(ctx: click.Context) -> Settings:
    return ctx.find_object(Settings) or Settings.from_env()


def fail(message: str) -> NoReturn:
    """The one way a command fails: one line on stderr, exit code 1."""
    click.echo(f"error: {message}", err=True)
    sys.exit(1)


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
