"""Logging setup: human-readable by default, one JSON object per line with ``json``."""

from __future__ import annotations

import json
import logging
import sys
import time

#: Celery's per-task INFO lines ("Task ... received", "Task ... succeeded in ..."): they
#: repeat recnotify's own "delivered" / "retry" / "dead-lettered" line (which names the
#: notification and its destination) and cost CPU on every task. Their warnings and
#: errors (a task that raised, a lost worker) are still logged.
CELERY_PER_TASK_LOGGERS = ("celery.app.trace", "celery.worker.strategy")


#: recnotify's lines about one notification start with this, its id and destination first.
NOTIFICATION_PREFIX = "notification %s to %s"


class NotificationFields(logging.Filter):
    """Give lines about a notification ``notification_id`` and ``destination`` attributes.

    Every such line in recnotify is written as ``"notification %s to %s ..."`` with the
    id and the destination name as its first two arguments; the JSON format then
    carries them as fields, so a log search by notification or destination is exact.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        if (isinstance(record.msg, str) and record.msg.startswith(NOTIFICATION_PREFIX)
                and isinstance(record.args, tuple) and len(record.args) >= 2):
            record.notification_id = str(record.args[0])
            record.destination = str(record.args[1])
        return True


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        out = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for name in ("notification_id", "destination"):
            value = getattr(record, name, None)
            if value is not None:
                out[name] = value
        if record.exc_info:
            out["exception"] = self.formatException(record.exc_info)
        return json.dumps(out, ensure_ascii=False)


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
