"""The Celery app and its configuration.

At-least-once: late acknowledgement, reject on worker loss, prefetch 1 per slot. A task
a killed worker held (taken off the queue, running or waiting for its countdown) is
enqueued again by recnotify's watchdog (workers/state/schedule.py: every task has an
entry from its enqueue on), so kombu's own ack emulation, its ``unacked`` hash and
index in Redis, is turned off: four Redis commands per task that would only repeat it
(docs/capacity.md). kombu still counts unacknowledged messages in memory (prefetch
holds) and pushes them back to the queue on a warm shutdown.
"""

from __future__ import annotations

from typing import Any

from celery import Celery

from producer.redis_url import kombu_broker
from workers.config.settings import Settings
from workers.taskqueue import tuning as celery_tuning
from workers.taskqueue.enqueue import DELIVER_TASK


def celery_config(settings: Settings) -> dict[str, Any]:
    keys = settings.keys
    broker_url, sentinel_options = kombu_broker(settings.redis_url)
    return {
        "broker_url": broker_url,
        "broker_transport_options": {
            **sentinel_options,
            "ack_emulation": False,
            "global_keyprefix": settings.key_prefix,
            "socket_keepalive": True,
            "health_check_interval": 25,
        },
        "broker_connection_retry_on_startup": True,
        "broker_connection_max_retries": None,
        "broker_pool_limit": settings.concurrency + 16,
        "broker_heartbeat": 0,
        "result_backend": None,
        "task_ignore_result": True,
        "task_serializer": "json",
        "accept_content": ["json"],
        "task_acks_late": True,
        "task_reject_on_worker_lost": True,
        "task_acks_on_failure_or_timeout": True,
        "worker_prefetch_multiplier": 1,
        "worker_send_task_events": True,
        "task_send_sent_event": True,
        "task_default_queue": keys.deliver_queue.removeprefix(settings.key_prefix),
        "task_routes": {DELIVER_TASK: {"queue": "deliver"}},
        "worker_hijack_root_logger": False,
        "worker_redirect_stdouts": False,
        "worker_cancel_long_running_tasks_on_connection_loss": False,
        "worker_enable_remote_control": True,
        "worker_consumer": "workers.taskqueue.tuning:BatchedEventsConsumer",
        "enable_utc": True,
        "timezone": "UTC",
    }


def create_app(settings: Settings) -> Celery:
    """A Celery app configured for ``settings`` (tasks registered on import)."""
    celery_tuning.apply()
    celery_app = Celery("recnotify", set_as_current=True)
    celery_app.conf.update(celery_config(settings))
    celery_app.recnotify_settings = settings
    from workers.taskqueue import tasks

    tasks.register(celery_app)
    return celery_app

