"""Logging setup: human-readable by default, one JSON object per line with ``json``.

Every line written while a notification is being delivered carries that
notification's fields (:func:`log_context`: ``event_id``, ``notification_id``,
``destination``, ``attempt``, ``node``, ``task_id``; the lines after an attempt also
``status`` and ``latency_ms``, given as ``extra=``). The JSON format
(python-json-logger) writes every such field, so a Flower task, its log lines and a
receiver's ``webhook-id`` can be matched exactly; the text format keeps them in the
message (``notification ID to DESTINATION ...``).
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

from pythonjsonlogger.json import JsonFormatter as _LibraryJsonFormatter

#: Celery's per-task INFO lines ("Task ... received", "Task ... succeeded in ..."): they
#: repeat recnotify's own "delivered" / "retry" / "dead-lettered" line (which names the
#: notification and its destination) and cost CPU on every task. Their warnings and
#: errors (a task that raised, a lost worker) are still logged.
CELERY_PER_TASK_LOGGERS = ("celery.app.trace", "celery.worker.strategy")

#: recnotify's lines about one notification start with this, its id and destination first.
NOTIFICATION_PREFIX = "notification %s to %s"

#: The fields of the notification being handled in this thread (see :func:`log_context`).
_CONTEXT: ContextVar[dict[str, Any] | None] = ContextVar("recnotify_log_context",
                                                         default=None)


@contextmanager
def log_context(**fields: Any) -> Iterator[None]:
    """Every line logged inside carries ``fields`` (None values are left out)."""
    token = _CONTEXT.set({**(_CONTEXT.get() or {}),
                          **{k: v for k, v in fields.items() if v is not None}})
    try:
        yield
    finally:
        _CONTEXT.reset(token)


def add_log_context(**fields: Any) -> None:
    """Add fields to the current :func:`log_context` (e.g. the attempt, once known)."""
    _CONTEXT.set({**(_CONTEXT.get() or {}),
                  **{k: v for k, v in fields.items() if v is not None}})


class NotificationFields(logging.Filter):
    """Give lines about a notification its fields as record attributes.

    From the current :func:`log_context`, and for a line written as
    ``"notification %s to %s ..."`` outside one, its id and destination arguments.
    An ``extra=`` field given by the line itself wins.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        for name, value in (_CONTEXT.get() or {}).items():
            if not hasattr(record, name):
                setattr(record, name, value)
        if (not hasattr(record, "notification_id") and isinstance(record.msg, str)
                and record.msg.startswith(NOTIFICATION_PREFIX)
                and isinstance(record.args, tuple) and len(record.args) >= 2):
            record.notification_id = str(record.args[0])
            record.destination = str(record.args[1])
        return True


class JsonFormatter(_LibraryJsonFormatter):
    """``ts``, ``level``, ``logger``, ``message``, then every field of the line."""

    def __init__(self) -> None:
        super().__init__("%(message)s", json_ensure_ascii=False)

    def add_fields(self, log_data: dict[str, Any], record: logging.LogRecord,
                   message_dict: dict[str, Any]) -> None:
        log_data["ts"] = (time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
                          + f".{int(record.msecs):03d}Z")
        log_data["level"] = record.levelname.lower()
        log_data["logger"] = record.name
        super().add_fields(log_data, record, message_dict)
        if record.exc_info and "exc_info" in log_data:
            log_data["exception"] = log_data.pop("exc_info")


def setup_logging(level: str = "INFO", fmt: str = "text") -> None:
    handler = logging.StreamHandler(sys.stderr)
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(
            logging.Formatter(
                "%(asctime)s %(levelname)-7s %(name)s: %(message)s", "%Y-%m-%d %H:%M:%S"
            )
        )
    handler.addFilter(NotificationFields())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for noisy in ("urllib3", "kombu", "amqp", "alembic", *CELERY_PER_TASK_LOGGERS):
        logging.getLogger(noisy).setLevel(logging.WARNING)
