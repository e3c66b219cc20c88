"""The Celery/kombu changes in workers.taskqueue.tuning, each on its own."""

from __future__ import annotations

from typing import Any

import redis
from kombu import Connection

from workers.taskqueue import tuning as celery_tuning
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


def test_visibility_bookkeeping_without_multi_still_restores_and_acks(redis_url: str,
                                                                      key_prefix: str) -> None:
    # Given the patches and a kombu queue on the real Redis
    celery_tuning.apply()
    client = redis.Redis.from_url(redis_url)
    unacked, index = f"{key_prefix}unacked", f"{key_prefix}unacked_index"
    with Connection(redis_url, transport_options={"global_keyprefix": key_prefix,
                                                  "visibility_timeout": 3600}) as conn:
        queue = conn.SimpleQueue("qos-probe")
        channel: Any = queue.channel
        pipe = channel.qos.pipe_or_acquire().__enter__()
        assert pipe.transaction is False  # no MULTI/EXEC around the bookkeeping
        queue.put({"n": 1})
        queue.put({"n": 2})
        # When one message is taken and acked
        first = queue.get(timeout=5)
        tag = first.delivery_tag
        assert client.hexists(unacked, tag) and client.zscore(index, tag) is not None
        first.ack()
        # Then its bookkeeping is gone
        assert not client.hexists(unacked, tag) and client.zscore(index, tag) is None
        # When another is taken and never acked, and its visibility timeout has passed
        second = queue.get(timeout=5)
        assert second.payload == {"n": 2}
        client.zadd(index, {second.delivery_tag: 0})
        channel.qos.restore_visible(num=10)
        # Then it is back in the queue, once, and its bookkeeping is gone
        assert not client.hexists(unacked, second.delivery_tag)
        again = queue.get(timeout=5)
        assert again.payload == {"n": 2}
        again.ack()
        queue.close()
