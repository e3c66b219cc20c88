"""The module for ``celery -A workers.celery_app ...``: Flower, ``celery inspect``,
``celery events``. Importing it builds the app from the environment (that is its job;
nothing else in recnotify builds an app at import time).

``celery -A workers.celery_app worker`` is refused: a bare Celery worker would run
deliveries but not recnotify's stream consumer and scheduler, so events would never be
consumed. ``recnotify worker`` runs both.
"""

from __future__ import annotations

import os
import sys
from typing import Any

from celery.signals import worker_init

from workers.config.settings import Settings
from workers.taskqueue.app import create_app

app = create_app(Settings.from_env())

REFUSAL = ("error: `celery -A workers.celery_app worker` would deliver tasks but never "
           "consume the event stream (no recnotify consumer or scheduler): run "
           "`recnotify worker` instead")


@worker_init.connect  # type: ignore[untyped-decorator]
def _refuse_a_bare_worker(sender: Any = None, **_: Any) -> None:
    if getattr(sender, "app", None) is not app:  # another app's worker (recnotify worker)
        return
    sys.stderr.write(REFUSAL + "\n")
    sys.stderr.flush()
    os._exit(1)
