"""Publishing (SPEC 3) against a real Redis."""

from __future__ import annotations

import json
import threading
import time

import pytest
import redis

from producer import InvalidEvent, Publisher, PublishError
from producer.constants import events_key
from workers.ops.embedded import EmbeddedRedis, free_port


def test_publish_writes_one_stream_entry_with_the_event_json(redis_url: str, key_prefix: str,
                                                             redis_client: redis.Redis) -> None:
    publisher = Publisher(redis_url, key_prefix=key_prefix)
    event_id = publisher.publish("SEGMENT_STARTED_EVENT", route="r", account="a", realm="x",
                                 params={"UCID": "u", "SEQUENCE": 3, "CALLEDAORS": ["a", "b"]})
    ((_, fields),) = redis_client.xrange(events_key(key_prefix))
    event = json.loads(fields[b"event"])
    assert event["schema"] == 1 and event["id"] == event_id
    assert event["type"] == "SEGMENT_STARTED_EVENT" and event["result"] == "success"
    assert (event["route"], event["account"], event["realm"]) == ("r", "a", "x")
    assert event["params"] == {"UCID": "u", "SEQUENCE": 3, "CALLEDAORS": ["a", "b"]}
    assert event["occurred_at"].endswith("Z") and len(event["occurred_at"]) == 24


def test_invalid_event_is_refused_and_nothing_is_written(redis_url: str, key_prefix: str,
                                                         redis_client: redis.Redis) -> None:
    publisher = Publisher(redis_url, key_prefix=key_prefix)
    with pytest.raises(ValueError, match="RECORDING_START'") as info:
        publisher.publish("RECORDING_START")
    assert isinstance(info.value, InvalidEvent) and info.value.field == "type"
    with pytest.raises(InvalidEvent, match="FILESIZE"):
        publisher.publish("RECORDING_STARTED_EVENT", params={"FILESIZE": 1})
    with pytest.raises(InvalidEvent, match="error 'boom' given on a success"):
        publisher.publish("RECORDING_STARTED_EVENT", error="boom")
    assert redis_client.xlen(events_key(key_prefix)) == 0


def test_given_occurred_at_is_normalised_to_utc_milliseconds(redis_url: str,
                                                             key_prefix: str,
                                                             redis_client: redis.Redis) -> None:
    Publisher(redis_url, key_prefix=key_prefix).publish(
        "RECORDING_ENDED_EVENT", occurred_at="2026-11-24T21:01:02.5+01:00")
    ((_, fields),) = redis_client.xrange(events_key(key_prefix))
    assert json.loads(fields[b"event"])["occurred_at"] == "2026-11-24T20:01:02.500Z"


def test_module_level_publish_uses_the_environment(redis_url: str, key_prefix: str,
                                                   redis_client: redis.Redis,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    module = sys.modules["producer.publish"]  # `producer.publish` is also the function

    monkeypatch.setenv("RECNOTIFY_REDIS_URL", redis_url)
    monkeypatch.setenv("RECNOTIFY_KEY_PREFIX", key_prefix)
    monkeypatch.setattr(module, "_default", None)
    event_id = module.publish("RECORDING_PAUSED_EVENT", account="acme")
    ((_, fields),) = redis_client.xrange(events_key(key_prefix))
    assert json.loads(fields[b"event"])["id"] == event_id


def test_publish_rides_out_a_brief_redis_restart(tmp_path: object) -> None:
    # Given a Redis (with AOF) that goes away and comes back on the same port within 1 s
    from pathlib import Path

    data = Path(str(tmp_path)) / "redis"
    server = EmbeddedRedis(data, port=free_port()).start()
    publisher = Publisher(server.url, key_prefix="p:", publish_timeout_s=8)
    publisher.publish("RECORDING_STARTED_EVENT")
    server.stop()
    restarted = threading.Timer(1.0, lambda: EmbeddedRedis(data, port=server.port).start())
    restarted.start()
    try:
        # When an event is published during the outage
        event_id = publisher.publish("RECORDING_ENDED_EVENT")
        # Then it is accepted once Redis is back, and both events are there
        restarted.join()
        client = redis.Redis.from_url(server.url)
        ids = [json.loads(f[b"event"])["id"] for _, f in client.xrange("p:events")]
        assert event_id in ids and len(ids) == 2
    finally:
        client = redis.Redis.from_url(server.url)
        client.shutdown(nosave=True)


def test_publish_raises_a_connection_error_after_the_timeout() -> None:
    publisher = Publisher(f"redis://127.0.0.1:{free_port()}/0", publish_timeout_s=0.5)
    started = time.monotonic()
    with pytest.raises(ConnectionError) as info:
        publisher.publish("RECORDING_STARTED_EVENT")
    assert isinstance(info.value, PublishError)
    assert "NOT published" in str(info.value)
    assert time.monotonic() - started >= 0.5
