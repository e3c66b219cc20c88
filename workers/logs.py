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


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        out = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
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
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for noisy in ("urllib3", "kombu", "amqp", "alembic", *CELERY_PER_TASK_LOGGERS):
        logging.getLogger(noisy).setLevel(logging.WARNING)
