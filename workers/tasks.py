"""The Celery task: ``recnotify.deliver(event_id, destination)``.

Arguments are ids only (shown as such in Flower); the worker loads the rest.
"""

from __future__ import annotations

from typing import Any

from celery import Celery, Task


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

        result: Any = get_runtime(self.app.recnotify_settings).deliverer.run(event_id, destination)
        if isinstance(result, Retry):
            raise self.retry(countdown=result.countdown_s, max_retries=None)
        return str(result) if result is not None else "duplicate"
