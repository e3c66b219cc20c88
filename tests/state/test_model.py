"""Model-based tests: a pure model of the notification state machine, checked step by
step against the real transition code (the Lua scripts behind the circuit, the parking
lot and ordering) on a real Redis.

Checked after every step: terminal states are final; a parked notification becomes dead
only after a probe made after it was parked has failed; ordered sequence numbers are
1..n with no gap. At the end (faults stop: the receiver recovers), every notification
reaches a terminal state within its bound.
"""

from __future__ import annotations

import itertools
import time
import uuid
from typing import Any

import pytest
import redis
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from tests.state.test_parking import Source, dest
from workers.config.keys import Keys
from workers.destinations.cache import ConfigCache
from workers.http.request import notification_id
from workers.state.circuit import CircuitBreaker, Verdict
from workers.state.ordering import Ordering, finish_ordered, make_member
from workers.state.parking import ParkingLot
from workers.state.schedule import schedule_member

RESET_S = 0.25
MODEL_SETTINGS = settings(max_examples=12, stateful_step_count=25, deadline=None,
                          suppress_health_check=list(HealthCheck))


def cleanup(client: redis.Redis, prefix: str) -> None:
    keys = list(client.scan_iter(match=prefix + "*", count=1000))
    if keys:
        client.delete(*keys)


class OnRealRedis(RuleBasedStateMachine):
    """A machine whose every example runs under its own key prefix, deleted afterwards."""

    redis_url = ""

    def __init__(self) -> None:
        super().__init__()
        self.client = redis.Redis.from_url(self.redis_url)
        self.prefix = f"rnmodel-{uuid.uuid4().hex[:8]}:"
        self.keys = Keys(self.prefix)

    def teardown(self) -> None:
        cleanup(self.client, self.prefix)
        self.client.close()


class CircuitAndLot(OnRealRedis):
    """One destination whose receiver fails while its circuit is open."""

    def __init__(self) -> None:
        super().__init__()
        self.config = ConfigCache(Source(dest(
            retry={"max_attempts": 3, "backoff_s": 0.01, "backoff_max_s": 0.01},
            circuit={"failures": 1, "reset_s": RESET_S})))
        self.config.refresh()
        self.breaker = CircuitBreaker(self.client, self.keys)
        self.lot = ParkingLot(self.client, self.keys)
        self.ids = itertools.count()
        # the model
        self.open = False
        self.parked_at: dict[str, float] = {}  # event id -> when parked
        self.released: set[str] = set()  # in the queue (schedule), not yet attempted
        self.final: dict[str, str] = {}  # event id -> delivered / dead
        self.failed_probes: list[float] = []  # when each failed probe was made

    # -- helpers -------------------------------------------------------------------------
    def state(self, event_id: str) -> str | None:
        raw: Any = self.client.hget(self.keys.notification(notification_id(event_id, "d")),
                                    "state")
        return raw.decode() if raw else None

    def scheduled(self) -> set[str]:
        return {str(m.decode()).split('"')[1]
                for m in self.client.zrange(self.keys.schedule, 0, -1)}  # type: ignore[union-attr]

    def deliver(self, event_id: str) -> None:
        """What a task does with a released notification once the receiver answers."""
        member = schedule_member(event_id, "d")
        self.client.zrem(self.keys.schedule, member)
        self.client.hset(self.keys.notification(notification_id(event_id, "d")),
                         "state", "delivered")
        self.released.discard(event_id)
        self.final[event_id] = "delivered"

    def park(self, event_id: str, first_at: float) -> None:
        pipe = self.client.pipeline()
        self.lot.park(pipe, event_id, self.config.get("d"), first_at)  # type: ignore[arg-type]
        pipe.execute()
        self.parked_at[event_id] = time.time()

    # -- rules ---------------------------------------------------------------------------
    @precondition(lambda self: not self.open)
    @rule()
    def receiver_fails_and_the_circuit_opens(self) -> None:
        self.breaker.record_failure("d", threshold=1, reset_s=RESET_S)
        self.open = True

    @precondition(lambda self: self.open)
    @rule(age_s=st.floats(0, 2 * RESET_S))
    def a_notification_is_parked(self, age_s: float) -> None:
        self.park(f"e{next(self.ids)}", time.time() - age_s)

    @rule()
    def time_passes(self) -> None:
        time.sleep(RESET_S + 0.02)

    @rule()
    def the_lot_is_swept(self) -> None:
        self.lot.sweep(self.config)
        swept_at = time.time()
        scheduled = self.scheduled()
        for event_id in list(self.parked_at):
            if self.state(event_id) == "dead":
                parked_at = self.parked_at.pop(event_id)
                # the circuit rule: a probe made after it was parked has failed
                assert any(made > parked_at for made in self.failed_probes), event_id
                assert swept_at >= parked_at  # and its deadline had passed (by the script)
                self.final[event_id] = "dead"
            elif event_id in scheduled:
                self.parked_at.pop(event_id)
                self.released.add(event_id)

    @precondition(lambda self: self.open and self.released)
    @rule(succeeds=st.booleans())
    def the_probe_is_attempted(self, succeeds: bool) -> None:
        admission = self.breaker.admit("d", reset_s=RESET_S)
        if admission.verdict is not Verdict.PROBE:
            return  # not yet its turn (reset_s not over): the task waits
        probe = sorted(self.released)[0]
        if succeeds:
            self.breaker.record_success("d")
            self.open = False
            self.deliver(probe)
        else:
            made: Any = self.client.hget(self.keys.circuit("d"), "probe_at")
            self.breaker.record_failure("d", threshold=1, reset_s=RESET_S, probe=True,
                                        error="HTTP 503")
            self.failed_probes.append(float(made))
            self.client.zrem(self.keys.schedule, schedule_member(probe, "d"))
            self.released.discard(probe)
            self.park(probe, time.time() - RESET_S)  # it retries: parked again

    @precondition(lambda self: not self.open and self.released)
    @rule()
    def released_notifications_are_delivered(self) -> None:
        for event_id in sorted(self.released):
            self.deliver(event_id)

    # -- invariants ----------------------------------------------------------------------
    @invariant()
    def terminal_states_are_final(self) -> None:
        for event_id, final in self.final.items():
            assert self.state(event_id) == final, (event_id, final)

    @invariant()
    def the_lot_holds_exactly_the_parked_ones(self) -> None:
        raw: Any = self.client.zrange(self.keys.parked("d"), 0, -1)
        assert {m.decode().split('"')[1] for m in raw} == set(self.parked_at)

    def recover(self) -> float:
        """Faults stop: the receiver answers. Returns how long everything took to end."""
        started = time.monotonic()
        while self.parked_at or self.released:
            if self.open and not self.released:
                time.sleep(0.02)
            self.the_lot_is_swept()
            if self.open and self.released:
                self.the_probe_is_attempted(succeeds=True)
            if not self.open:
                self.released_notifications_are_delivered()
            assert time.monotonic() - started < 3 * RESET_S + 2, "did not end in its bound"
        return time.monotonic() - started


class RecoveringCircuitAndLot(CircuitAndLot):
    def teardown(self) -> None:
        try:
            self.recover()
            everyone = set(self.final)
            assert all(self.state(e) in ("delivered", "dead") for e in everyone)
        finally:
            super().teardown()


def test_the_circuit_and_the_lot_keep_the_model_on_a_real_redis(redis_url: str) -> None:
    RecoveringCircuitAndLot.redis_url = redis_url
    run_state_machine_as_test(RecoveringCircuitAndLot, settings=MODEL_SETTINGS)


class OrderedRecordings(OnRealRedis):
    """Ordered destinations: heads released in stream order, numbered 1..n, no gap."""

    def __init__(self) -> None:
        super().__init__()
        self.ordering = Ordering(self.client, self.prefix, self.keys.events, self.keys.group)
        self.client.xgroup_create(self.keys.events, self.keys.group, id="0", mkstream=True)
        self.entries = itertools.count(1)
        self.waiting: dict[str, list[str]] = {}  # recording -> event ids in stream order
        self.head: dict[str, str] = {}  # recording -> released head
        self.numbers: dict[str, list[int]] = {}  # recording -> sequence numbers seen
        self.enqueued: list[tuple[str, str]] = []

    def enqueue(self, pairs: Any) -> None:
        self.enqueued.extend(pairs)

    def pair(self, recording: str) -> str:
        return f"d\x1f{recording}"

    def absorb_released(self) -> None:
        for event_id, _ in self.enqueued:
            recording = event_id.split("-")[0]
            assert recording not in self.head, "two heads of one recording in flight"
            assert self.waiting[recording][0] == event_id, "released out of stream order"
            self.head[recording] = event_id
            seq: Any = self.client.hget(self.keys.notification(notification_id(event_id, "d")),
                                        "seq")
            self.numbers.setdefault(recording, []).append(int(seq))
        self.enqueued.clear()

    @rule(recording=st.sampled_from(["r1", "r2", "r3"]))
    def an_event_enters_the_stream(self, recording: str) -> None:
        """As the consumer does: read the entry, queue it for its recording, acknowledge."""
        event_id = f"{recording}-{next(self.entries)}"
        raw: Any = self.client.xadd(self.keys.events, {"event": event_id})
        entry_id = raw.decode()
        self.client.xreadgroup(self.keys.group, "c", {self.keys.events: ">"}, count=1)
        nid = notification_id(event_id, "d")
        pipe = self.client.pipeline()
        pair = self.ordering.add(pipe, "d", recording, entry_id, event_id, nid)
        pipe.hset(self.keys.notification(nid), mapping={
            "ord_pair": pair, "ord_member": make_member(entry_id, event_id, nid)})
        pipe.xack(self.keys.events, self.keys.group, entry_id)
        pipe.execute()
        self.waiting.setdefault(recording, []).append(event_id)
        self.ordering.release([pair], self.enqueue, self.ordering.frontier())
        self.absorb_released()

    @precondition(lambda self: self.head)
    @rule(data=st.data(), outcome=st.sampled_from(["delivered", "dead"]))
    def the_head_ends(self, data: st.DataObject, outcome: str) -> None:
        recording = data.draw(st.sampled_from(sorted(self.head)))
        event_id = self.head.pop(recording)
        self.client.hset(self.keys.notification(notification_id(event_id, "d")),
                         "state", outcome)
        finish_ordered(self.ordering, event_id, "d", hold_dead=False, enqueue=self.enqueue)
        self.waiting[recording].remove(event_id)
        self.absorb_released()

    @invariant()
    def sequence_numbers_are_one_to_n_without_a_gap(self) -> None:
        for recording, numbers in self.numbers.items():
            assert numbers == list(range(1, len(numbers) + 1)), recording

    @invariant()
    def a_recording_with_waiting_events_has_its_head_in_flight(self) -> None:
        for recording, events in self.waiting.items():
            assert bool(events) == (recording in self.head), recording


def test_ordered_heads_keep_the_model_on_a_real_redis(redis_url: str) -> None:
    OrderedRecordings.redis_url = redis_url
    run_state_machine_as_test(OrderedRecordings, settings=settings(
        max_examples=25, stateful_step_count=30, deadline=None,
        suppress_health_check=list(HealthCheck)))


def test_the_model_would_catch_a_lot_that_buries_before_the_probe(redis_url: str) -> None:
    """The check is real: the old rule (bury anything past its deadline) breaks it."""
    client = redis.Redis.from_url(redis_url)
    CircuitAndLot.redis_url = redis_url
    machine = CircuitAndLot()
    try:
        machine.receiver_fails_and_the_circuit_opens()
        machine.a_notification_is_parked(age_s=2 * RESET_S)  # past its deadline
        # what the old sweep did: bury it although no probe was made after it was parked
        event_id = next(iter(machine.parked_at))
        client.hset(machine.keys.notification(notification_id(event_id, "d")), "state", "dead")
        with pytest.raises(AssertionError):
            machine.the_lot_is_swept()
    finally:
        machine.teardown()
        client.close()
