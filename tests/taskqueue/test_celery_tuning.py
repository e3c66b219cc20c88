"""The Celery/kombu changes in workers.taskqueue.tuning, each on its own."""

from __future__ import annotations

from typing import Any

import redis
from kombu import Connection

from workers.config.settings import Settings
from workers.taskqueue import tuning as celery_tuning
from workers.taskqueue.app import celery_config
from workers.taskqueue.tuning import EVENT_FLUSH_S, BatchedEventsConsumer


def test_a_kombu_channel_reuses_one_redis_client_per_pool(redis_url: str, key_prefix: str) -> None:
    # Given the patches and a kombu channel on the real Redis
    celery_tuning.apply()
    with Connection(redis_url, transport_options={"global_keyprefix": key_prefix}) as conn:
        channel: Any = conn.default_channel
        # When the channel asks for a synchronous client twice
        first, second = channel._create_client(), channel._create_client()
        # Then it is the same client, and it works (prefix included)
        assert first is second
        first.set("probe", "1")
        assert redis.Redis.from_url(redis_url).get(f"{key_prefix}probe") == b"1"
        # When the channel's pool is replaced (a reconnect), the client follows it
        channel._pool = None
        third = channel._create_client()
        assert third is not first and third.connection_pool is channel.pool
        # And asynchronous (BRPOP) clients are still made fresh each time
        assert channel._create_client(asynchronous=True) is not channel._create_client(
            asynchronous=True)


class FakeHub:
    """Records what the consumer schedules; runs nothing by itself."""

    def __init__(self) -> None:
        self.soon: list[Any] = []
        self.later: list[tuple[float, Any]] = []

    def call_soon(self, callback: Any) -> None:
        self.soon.append(callback)

    def call_later(self, delay_s: float, callback: Any) -> None:
        self.later.append((delay_s, callback))


def test_buffered_task_events_are_flushed_once_per_interval_not_per_event() -> None:
    # Given a consumer with a hub (no Celery worker needed for the scheduling rule)
    consumer: Any = BatchedEventsConsumer.__new__(BatchedEventsConsumer)
    consumer.hub = FakeHub()
    flushed: list[int] = []
    consumer._flush_events = lambda: flushed.append(1)
    # When ten events are buffered in a burst
    for _ in range(10):
        consumer.on_send_event_buffered()
    # Then one flush is armed, from the hub's own thread, EVENT_FLUSH_S later
    assert len(consumer.hub.soon) == 1 and not flushed
    consumer.hub.soon[0]()
    assert [delay for delay, _ in consumer.hub.later] == [EVENT_FLUSH_S]
    consumer.hub.later[0][1]()
    assert flushed == [1]
    # And the next event after the flush arms the next one
    consumer.on_send_event_buffered()
    assert len(consumer.hub.soon) == 2


def test_a_taken_task_costs_no_redis_bookkeeping_and_an_unacked_one_goes_back_first(
        redis_url: str, key_prefix: str) -> None:
    # Given recnotify's own transport options (ack emulation off) on the real Redis
    celery_tuning.apply()
    settings = Settings(redis_url=redis_url, key_prefix=key_prefix)
    options = celery_config(settings)["broker_transport_options"]
    assert options["ack_emulation"] is False
    client = redis.Redis.from_url(redis_url)
    with Connection(redis_url, transport_options=options) as conn:
        queue = conn.SimpleQueue("qos-probe")
        for n in (1, 2, 3):
            queue.put({"n": n})
        # When one message is taken and acked, and the next taken and never acked
        first = queue.get(timeout=5)
        first.ack()
        second = queue.get(timeout=5)
        assert second.payload == {"n": 2}
        # Then Redis holds no bookkeeping of either (no unacked hash or index)
        assert [k for k in client.keys(f"{key_prefix}*")
                if b"unacked" in k] == []
        # When the channel closes with the second unacked (a warm shutdown)
        queue.close()
    # Then it is back in the queue, once, at the end read next: before the third
    with Connection(redis_url, transport_options=options) as conn:
        queue = conn.SimpleQueue("qos-probe")
        again = [queue.get(timeout=5) for _ in range(2)]
        assert [m.payload for m in again] == [{"n": 2}, {"n": 3}]
        assert again[0].delivery_info.get("redelivered") or again[0].headers.get("redelivered")
        for message in again:
            message.ack()
        assert client.llen(f"{key_prefix}qos-probe") == 0
        queue.close()
