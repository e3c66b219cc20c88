"""The shared state writes, on a real Redis."""

from __future__ import annotations

import redis

from workers.config.keys import Keys
from workers.state.writes import queue_fresh_attempts


def test_fresh_attempts_start_a_new_span_and_keep_the_notifications_order_fields(
        redis_client: redis.Redis, key_prefix: str) -> None:
    """A replayed dead letter or a backfilled notification: its old retry span, circuit
    waits and expiry clock must not end it at its first failure."""
    keys = Keys(key_prefix)
    nkey = keys.notification("msg_1")
    redis_client.hset(nkey, mapping={
        "state": "dead", "attempts": 8, "reason": "HTTP 503", "first_at": 1.0,
        "circuit_since": 2.0, "circuit_waited_s": 3.0, "waiting": "circuit open",
        "seq": 7, "ord_pair": "p", "ord_member": "m"})
    redis_client.rpush(keys.notification_log("msg_1"), b"{}")
    pipe = redis_client.pipeline()
    queue_fresh_attempts(pipe, keys, "msg_1")
    pipe.execute()
    left = {k.decode(): v.decode() for k, v in redis_client.hgetall(nkey).items()}
    assert set(left) == {"seq", "ord_pair", "ord_member", "replayed_at"}
    assert (left["seq"], left["ord_pair"], left["ord_member"]) == ("7", "p", "m")
    assert float(left["replayed_at"]) > 1_000_000_000
    assert redis_client.ttl(nkey) > 0
    assert not redis_client.exists(keys.notification_log("msg_1"))
