"""Notifications flowing through a Sentinel failover: a steady publisher, real workers,
a real receiver, and the count of what was lost.

:class:`FlowingPublisher` publishes one event every ``1/rate`` s through
:class:`producer.Publisher` on the ``sentinel://`` URL (route ``flow``, ``UCID`` = ``tag`` + a
sequence number) and records, per event, when ``publish()`` returned (acknowledged)
or what it raised and how long it took. A durable publisher republishes the *same*
event after a :class:`DurabilityError` (the documented way: its id dedupes) until
it is acknowledged or ``publish_timeout_s`` is used up.

"Lost" = acknowledged by ``publish()`` but never delivered to the receiver.
Used by tests/test_sentinel_failover.py.
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field

import redis

from producer import DurabilityError, Publisher, RecnotifyError
from producer.events import validate_event
from tests.receiver import Receiver

ROUTE = "flow"


@dataclass
class Outcome:
    seq: int
    started: float
    finished: float
    acked: bool
    error: str | None = None
    durable_retries: int = 0


@dataclass
class FlowingPublisher:
    url: str
    key_prefix: str
    rate_per_s: float = 100.0
    durable_replicas: int = 0
    durable_timeout_ms: int = 300
    publish_timeout_s: float = 5.0
    #: prefix of the UCIDs (two publishers in one flow)
    tag: str = ""
    #: bytes of padding after the UCID's ``:`` (big events fill the replication link)
    pad: int = 0
    outcomes: list[Outcome] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> FlowingPublisher:
        self._thread = threading.Thread(target=self._run, name="flowing-publisher", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(self.publish_timeout_s * 2 + 5)
            assert not self._thread.is_alive(), "the publisher hung"

    def _run(self) -> None:
        publisher = Publisher(self.url, key_prefix=self.key_prefix,
                              publish_timeout_s=self.publish_timeout_s,
                              durable_replicas=self.durable_replicas,
                              durable_timeout_ms=self.durable_timeout_ms)
        interval = 1.0 / self.rate_per_s
        next_at = time.monotonic()
        seq = 0
        while not self._stop.is_set():
            self.outcomes.append(self._publish_one(publisher, seq))
            seq += 1
            next_at += interval
            delay = next_at - time.monotonic()
            if delay > 0:
                self._stop.wait(delay)
            else:
                next_at = time.monotonic()  # behind (a failover): no burst to catch up
        publisher.close()

    def _publish_one(self, publisher: Publisher, seq: int) -> Outcome:
        event = validate_event({"type": "RECORDING_STARTED_EVENT", "route": ROUTE,
                                "params": {"UCID": f"{self.tag}{seq}"
                                           + (":" + "x" * self.pad if self.pad else "")}})
        started = time.monotonic()
        retries = 0
        while True:
            try:
                publisher.publish_event(event)
                return Outcome(seq, started, time.monotonic(), True, None, retries)
            except DurabilityError as exc:
                # the documented retry: the same event again (same id), within the budget
                if time.monotonic() - started + self.durable_timeout_ms / 1000 > (
                        self.publish_timeout_s):
                    return Outcome(seq, started, time.monotonic(), False,
                                   f"DurabilityError: {exc}", retries)
                retries += 1
            except RecnotifyError as exc:
                return Outcome(seq, started, time.monotonic(), False,
                               f"{type(exc).__name__}: {exc}", retries)

    # -- results -------------------------------------------------------------------------
    def acked(self, since: float = 0.0, until: float = float("inf")) -> set[str]:
        return {f"{self.tag}{o.seq}" for o in self.outcomes
                if o.acked and since <= o.finished < until}

    def errors(self) -> list[Outcome]:
        return [o for o in self.outcomes if not o.acked]

    def max_latency_s(self) -> float:
        return max((o.finished - o.started for o in self.outcomes), default=0.0)


def in_stream(client: redis.Redis, stream: str) -> set[str]:
    """The UCIDs (padding cut) of the events a Redis has in its stream."""
    return {json.loads(fields[b"event"])["params"]["UCID"].split(":")[0]
            for _, fields in client.xrange(stream)}


def delivered(receiver: Receiver) -> set[str]:
    return {r.query["n"][0] for r in receiver.received(lambda r: "n" in r.query)}


def wait_delivered(receiver: Receiver, wanted: set[str], timeout_s: float,
                   quiet_s: float = 5.0) -> set[str]:
    """Wait until every ``wanted`` one arrived, or nothing new came for ``quiet_s`` (after
    the stream's claim and the watchdog had their chance), or
    ``timeout_s``; returns the missing ones."""
    deadline = time.monotonic() + timeout_s
    last_count, last_change = -1, time.monotonic()
    while True:
        got = delivered(receiver)
        missing = wanted - got
        now = time.monotonic()
        if not missing or now > deadline:
            return missing
        if len(got) != last_count:
            last_count, last_change = len(got), now
        elif now - last_change > quiet_s:
            return missing
        time.sleep(0.2)


def destination_yaml(receiver: Receiver) -> str:
    return f"""destinations:
  - name: flow
    events: all
    scope: 'route:{ROUTE}'
    url: '{receiver.url("/flow")}'
    params: 'n=%UCID%'
    circuit: {{failures: 100000, reset_s: 1}}
"""
