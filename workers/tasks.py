"""The Celery task: ``recnotify.deliver(event_id, destination)``.

Arguments are ids only (shown as such in Flower); the worker loads the rest.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

from celery import Celery, Task

from workers.schedule import ENQUEUED_AT_HEADER


def register(app: Celery) -> None:
    @app.task(  # type: ignore[untyped-decorator]
        name="recnotify.deliver",
        bind=True,
        acks_late=True,
        max_retries=None,
        ignore_result=True,
        shared=False,
    )
    def deliver(self: Task, event_id: str, destination: str) -> str:
        from workers.deliver import Retry
        from workers.runtime import get_runtime

        runtime = get_runtime(self.app.recnotify_settings)
        # enqueue: an ordered destination's next notification goes on when this one ends
        result: Any = runtime.deliverer.run(event_id, destination, enqueue=_enqueue(self.app))
        if isinstance(result, Retry):
            # the header tells the watchdog when this message entered the queue
            raise self.retry(countdown=result.countdown_s, max_retries=None,
                             headers={ENQUEUED_AT_HEADER: time.time()})
        return str(result) if result is not None else "duplicate"


_enqueuers: dict[int, Callable[[Sequence[tuple[str, str]]], None]] = {}


def _enqueue(app: Celery) -> Callable[[Sequence[tuple[str, str]]], None]:
    """The worker's batched enqueue (workers.fastpath), built once per app."""
    found = _enqueuers.get(id(app))
    if found is None:
        from workers.service import make_enqueue

        found = _enqueuers.setdefault(id(app), make_enqueue(app))
    return found
