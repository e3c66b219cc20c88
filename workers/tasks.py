"""The Celery task: ``recnotify.deliver(event_id, destination)``.

Arguments are ids only (shown as such in Flower); the worker loads the rest.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
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

        runtime = get_runtime(self.app.recnotify_settings)
        result: Any = runtime.deliverer.run(event_id, destination)
        dest = runtime.config.get(destination)
        if dest is not None and dest.ordered:
            from workers.ordering import finish_ordered

            finish_ordered(runtime.ordering, event_id, destination,
                           hold_dead=dest.on_dead_letter == "hold",
                           enqueue=lambda e, d: _enqueue(self.app)([(e, d)]))
        if isinstance(result, Retry):
            raise self.retry(countdown=result.countdown_s, max_retries=None)
        return str(result) if result is not None else "duplicate"


_enqueuers: dict[int, Callable[[Sequence[tuple[str, str]]], None]] = {}


def _enqueue(app: Celery) -> Callable[[Sequence[tuple[str, str]]], None]:
    """The worker's batched enqueue (workers.fastpath), built once per app."""
    found = _enqueuers.get(id(app))
    if found is None:
        from workers.service import make_enqueue

        found = _enqueuers.setdefault(id(app), make_enqueue(app))
    return found
