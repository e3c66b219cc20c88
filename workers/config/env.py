"""The environment, read once at the edge through pydantic-settings.

:class:`EnvSettings` names every ``RECNOTIFY_*`` variable the service reads, with its
type and bounds; :func:`read_env` turns a bad value into one :class:`ConfigError`
line naming the variable, the value and what is accepted. :func:`unknown_variables`
finds the ``RECNOTIFY_*`` variables nobody reads (a misspelling is otherwise silently
ignored), each with the closest known name. ``workers.config.settings.Settings.from_env``
builds the typed settings every process uses from it.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from typing import Annotated, Any, Literal

from pydantic import Field, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from producer.constants import (
    DEFAULT_DURABLE_TIMEOUT_MS,
    DEFAULT_KEY_PREFIX,
    DEFAULT_PUBLISH_TIMEOUT_S,
)
from producer.durable import MAX_DURABLE_TIMEOUT_MS
from workers.config.telemetry import check_mode
from workers.errors import ConfigError

PREFIX = "RECNOTIFY_"

#: Consumed stream entries stay this long in Redis (the events themselves are kept in the
#: database for trace and replay: DEFAULT_EVENT_RETENTION_DAYS).
DEFAULT_STREAM_RETENTION_S = 3600
#: A finished notification's state and an event's copy stay in Redis this long: the window
#: in which a repeated task or event id is recognised (issue 17: Redis holds work in flight).
DEFAULT_DEDUPE_WINDOW_S = 3600
#: The database keeps events (for trace and replay) this long.
DEFAULT_EVENT_RETENTION_DAYS = 7
DEFAULT_RECORD_RETENTION_DAYS = 30
#: A queued task not seen again this long after its enqueue is taken for lost (a worker
#: killed while holding it, a Redis restart) and enqueued again (workers/state/schedule.py).
DEFAULT_WATCHDOG_S = 60.0
#: Retry waits up to this long use Celery's countdown; longer ones the durable schedule.
DEFAULT_MAX_COUNTDOWN_S = 30.0
#: A stream entry pending this long on a consumer is claimed by another one.
DEFAULT_CLAIM_IDLE_S = 60.0
#: Delivery threads per worker process.
DEFAULT_CONCURRENCY = 64

Seconds = Annotated[float, Field(gt=0)]
LOG_LEVELS = ("debug", "info", "warning", "error", "critical")


class EnvSettings(BaseSettings):
    """Every ``RECNOTIFY_*`` variable of the service (README: Configuration)."""

    model_config = SettingsConfigDict(env_prefix=PREFIX, extra="ignore",
                                      case_sensitive=True)

    REDIS_URL: str = ""
    #: producers, trace, dead-letter replay: the cells (producer/cells.py); workers ignore it
    CELLS: str = ""
    CELL_TABLE: str = ""
    DATABASE_URL: str = ""
    KEY_PREFIX: str = DEFAULT_KEY_PREFIX
    DATA_DIR: str = ""
    SECRET_KEY: str = Field("", repr=False)
    STREAM_RETENTION_S: Seconds = DEFAULT_STREAM_RETENTION_S
    DEDUPE_WINDOW_S: Seconds = DEFAULT_DEDUPE_WINDOW_S
    EVENT_RETENTION_DAYS: Annotated[float, Field(gt=0)] = DEFAULT_EVENT_RETENTION_DAYS
    RECORD_RETENTION_DAYS: Annotated[float, Field(gt=0)] = DEFAULT_RECORD_RETENTION_DAYS
    PUBLISH_TIMEOUT_S: Seconds = DEFAULT_PUBLISH_TIMEOUT_S
    PUBLISH_DURABLE_REPLICAS: Annotated[int, Field(ge=0)] = 0
    PUBLISH_DURABLE_TIMEOUT_MS: Annotated[int, Field(gt=0, le=MAX_DURABLE_TIMEOUT_MS)] = (
        DEFAULT_DURABLE_TIMEOUT_MS)
    WATCHDOG_S: Annotated[float, Field(ge=10, le=3600)] = DEFAULT_WATCHDOG_S
    MAX_COUNTDOWN_S: Annotated[float, Field(gt=0, le=300)] = DEFAULT_MAX_COUNTDOWN_S
    CLAIM_IDLE_S: Seconds = DEFAULT_CLAIM_IDLE_S
    CONCURRENCY: Annotated[int, Field(ge=1, le=1024)] = DEFAULT_CONCURRENCY
    ALLOW_CIDRS: str = ""
    DENY_CIDRS: str = ""
    LOG_FORMAT: Literal["text", "json"] = "text"
    LOG_LEVEL: Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"] = "INFO"
    #: OpenTelemetry tracing: off, otlp, console or jsonl:PATH (workers/config/telemetry.py)
    OTEL: str = "off"

    @field_validator("OTEL")
    @classmethod
    def _otel_mode(cls, value: str) -> str:
        return check_mode(value)

    @field_validator("LOG_LEVEL", "LOG_FORMAT", mode="before")
    @classmethod
    def _any_case(cls, value: Any) -> Any:
        if not isinstance(value, str):
            return value
        return value.upper() if value.lower() in LOG_LEVELS else value.lower()


#: Variables read elsewhere (by click options, the admin, Flower, the tests, deploy/).
OTHER_VARIABLES = frozenset({
    "ADMIN_ADDR", "ADMIN_TOKEN", "TRUSTED_PROXIES", "PROCESSES", "WORKERS", "NODE_NAME",
    "FLOWER_AUTH", "FLOWER_PORT", "LISTEN_SECRET", "REDIS_ADDRESS", "IMAGE",
    "TEST_REDIS_URL", "TEST_PG_URL", "TEST_SENTINEL_SOAK_S",
})
KNOWN = frozenset(PREFIX + name for name in (*EnvSettings.model_fields, *OTHER_VARIABLES))
#: Variables an earlier release read, with what replaced them.
RETIRED = {
    "VISIBILITY_TIMEOUT_S": "kombu's ack emulation is off and the watchdog brings back a "
                            "dead worker's tasks; set RECNOTIFY_WATCHDOG_S instead",
}

def read_env(env: Mapping[str, str]) -> EnvSettings:
    """The typed environment; a bad value is one ConfigError line (variable, value, fix)."""
    given = {k.removeprefix(PREFIX): v for k, v in env.items()
             if k.startswith(PREFIX) and v != "" and k.removeprefix(PREFIX)
             in EnvSettings.model_fields}
    try:
        return EnvSettings.model_validate(given)
    except ValidationError as exc:
        error = exc.errors()[0]
        name = str(error["loc"][0])
        whole = EnvSettings.model_fields[name].annotation is int
        raise ConfigError(f"{PREFIX}{name}={given.get(name, '')!r} is not valid: "
                          f"{_accepted(error, whole)}") from None


def _accepted(error: Any, whole: bool) -> str:
    kind = str(error.get("type", ""))
    ctx = error.get("ctx") or {}
    if kind == "value_error":
        return str(ctx.get("error", ""))
    if kind == "literal_error":
        return f"give one of {ctx.get('expected', '')}"
    bounds = [f"{word} {ctx[key]}" for key, word in (("gt", ">"), ("ge", ">="),
                                                      ("lt", "<"), ("le", "<="))
              if key in ctx]
    what = "a whole number" if whole else "a number"
    if kind.endswith(("parsing", "type", "from_float")):
        return f"give {what}"
    return f"give {what} {' and '.join(bounds)}".rstrip()


def unknown_variables(env: Mapping[str, str]) -> list[str]:
    """One warning line per ``RECNOTIFY_*`` variable that nothing reads."""
    out = []
    for name in sorted(k for k in env if k.startswith(PREFIX) and k not in KNOWN):
        if (replaced := RETIRED.get(name.removeprefix(PREFIX))) is not None:
            out.append(f"{name} is no longer read and is ignored: {replaced}")
            continue
        suffixes = sorted(k.removeprefix(PREFIX) for k in KNOWN)
        close = difflib.get_close_matches(name.removeprefix(PREFIX), suffixes, n=1,
                                          cutoff=0.6)
        hint = f"; did you mean {PREFIX}{close[0]}?" if close else ""
        out.append(f"{name} is not a recnotify setting and is ignored{hint}")
    return out
