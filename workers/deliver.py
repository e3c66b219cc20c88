"""One notification attempt, end to end: load, render, send, classify, record, retry.

Runs inside the ``recnotify.deliver`` Celery task. The task carries only ids
(event id, destination name): the event comes from Redis, the destination (and
its secrets) from the worker's in-memory configuration, so nothing secret is in
a message, a log line or Flower.

Duplicates (a task redelivered after a crash, a stream entry read twice) are
harmless: a notification already delivered or dead is skipped, and a per-
notification lock keeps two copies from sending at the same moment.
"""

from __future__ import annotations

import contextlib
import json
import logging
import time
import uuid
from typing import Any

import redis

from producer.events import Event, load_stored_event
from workers.attempt import (
    LOCK_MARGIN_S,
    NOTIFICATION_TTL_S,
    REDIS_DOWN,
    REDIS_OUTAGE_RETRY_S,
    REDIS_OUTAGE_WAIT_S,
    AttemptResult,
    Given,
    Hold,
    Retry,
    describe,
    destination_rules,
    jitter,
    queue_dead_letter,
    queue_waiting,
    send_once,
    span_s,
)
from workers.backoff import compute_backoff_s
from workers.circuit import CircuitBreaker
from workers.circuit import Verdict as Admitted
from workers.config import ConfigCache
from workers.destination_model import Destination
from workers.errors import DeliveryError
from workers.limits import SLOT_RETRY_S, Limits
from workers.metrics_keys import bucket_for
from workers.netsafety import AddressRules
from workers.ordering import EnqueueMany, Ordering, after_finish, finish_ordered, queue_finish
from workers.outcome import Outcome, is_delivered
from workers.parking import ParkingLot, dead_reason
from workers.records import attempt_record
from workers.request import build_request, notification_id
from workers.schedule import Schedule, schedule_member
from workers.settings import Settings
from workers.state.notification import (
    Decision,
    Verdict,
    circuit_gate,
    rate_gate,
    slot_gate,
)
from workers.state.scripts import Batch, Scripts
from workers.transport import Transport

__all__ = ["AttemptResult", "Deliverer", "Retry", "describe", "destination_rules"]

log = logging.getLogger("recnotify.deliver")


class Deliverer:
    """Everything a delivery needs, built once per worker process."""

    def __init__(self, settings: Settings, client: redis.Redis, config: ConfigCache,
                 transport: Transport, global_rules: AddressRules, store: Any,
                 ordering: Ordering | None = None) -> None:
        self.settings = settings
        self.keys = settings.keys
        self.redis = client
        self.config = config
        self.transport = transport
        self.global_rules = global_rules
        self.store = store
        self.schedule = Schedule(client, self.keys)
        self.watchdog_s = self.schedule.watchdog_s
        self.circuit = CircuitBreaker(client, self.keys)
        self.parking = ParkingLot(client, self.keys)
        self.ordering = ordering
        self.limits = Limits(client, self.keys.prefix)
        self.scripts = Scripts.of(client)

    # -- the task body -------------------------------------------------------------------
    def run(self, event_id: str, destination: str, enqueue: EnqueueMany | None = None
            ) -> Outcome | Retry | None:
        """Deliver once. Returns the outcome, a Retry for the task, or None (duplicate).

        With ``enqueue``, an ordered destination's next notification of the same
        recording is released and enqueued when this one has ended (workers.ordering).
        """
        nid = notification_id(event_id, destination)
        hold = Hold(destination, self.keys.lock(nid), uuid.uuid4().hex, enqueue=enqueue)
        try:
            result = self._run(nid, event_id, destination, hold)
            if not hold.watched:
                self._watch(event_id, destination, result)
            if enqueue is not None and not hold.finished:
                self._finish_ordered(event_id, destination, enqueue)
            return result
        except REDIS_DOWN as exc:
            # Not the notification's fault: no attempt spent, try again shortly. Re-queueing
            # needs the broker (a failed re-queue would drop the task), so wait for Redis
            # first; the whole service is stalled meanwhile anyway.
            log.error("Redis unavailable while handling notification of event %s to %s (%s); "
                      "re-queued once it answers", event_id, destination, type(exc).__name__)
            self._wait_for_redis(REDIS_OUTAGE_WAIT_S)
            return Retry(REDIS_OUTAGE_RETRY_S)

    def _watch(self, event_id: str, destination: str, result: Outcome | Retry | None) -> None:
        """Keep the notification's watchdog entry in step (see workers/schedule.py)."""
        if isinstance(result, Retry):
            self.schedule.watch([(event_id, destination)],
                                time.time() + result.countdown_s + self.watchdog_s)
        elif result in (Outcome.DELIVERED, Outcome.DEAD, None):
            self.schedule.forget(event_id, destination)
        # RETRYING / WAITING past max_countdown_s: already in the schedule at its due time

    def _finish_ordered(self, event_id: str, destination: str, enqueue: EnqueueMany) -> None:
        """Every run for an ordered destination ends here (duplicates too: idempotent),
        unless its delivery already finished it on its last pipeline (_conclude)."""
        dest = self.config.get(destination)
        if dest is None or not dest.ordered or self.ordering is None:
            return
        with contextlib.suppress(*REDIS_DOWN):  # else the stale-head resend covers it
            finish_ordered(self.ordering, event_id, destination,
                           hold_dead=dest.on_dead_letter == "hold", enqueue=enqueue)

    def _wait_for_redis(self, limit_s: float) -> None:
        deadline = time.monotonic() + limit_s
        delay = 0.2
        while time.monotonic() < deadline:
            with contextlib.suppress(redis.exceptions.RedisError):
                if self.redis.ping():
                    return
            time.sleep(delay)
            delay = min(delay * 2, 2.0)

    def _run(self, nid: str, event_id: str, destination: str, hold: Hold
             ) -> Outcome | Retry | None:
        known = self.config.get(destination)
        lock_ms = int(((known.timeout_s if known else 60.0) + LOCK_MARGIN_S) * 1000)
        pipe = self.scripts.pipeline()
        pipe.get(self.keys.event(event_id))
        pipe.hgetall(self.keys.notification(nid))
        pipe.set(hold.lock_key, hold.token, nx=True, px=lock_ms)
        # started: if this run dies, a copy goes once its lock has expired
        self.schedule.rearm(pipe, event_id, destination, time.time() + lock_ms / 1000 + 5)
        admitting = known is not None and known.enabled
        admit_at = -1
        if known is not None and admitting:
            admit_at = self.circuit.queue_admit(pipe, destination, known.circuit.reset_s)
        replies = pipe.execute()
        raw_event, state, locked = replies[:3]
        hold.locked = bool(locked)
        hold.released = not locked
        admission = None
        if admit_at >= 0:
            admission = self.circuit.admission(replies[admit_at])
            hold.probing = admission.verdict is Admitted.PROBE
            hold.circuit_clean = admission.clean
        try:
            if state.get(b"state") in (b"delivered", b"dead"):
                log.info("notification %s to %s already %s; duplicate skipped", nid,
                         destination, state[b"state"].decode())
                if locked:
                    self.redis.delete(hold.lock_key)
                    hold.released = True
                return None
            if not locked:
                # Another copy holds the lock: it is sending now, or its worker died mid-
                # attempt (the lock then expires). Look again later instead of dropping this.
                wait_s = max(0.5, min(self.redis.pttl(hold.lock_key) / 1000,
                                      self.settings.max_countdown_s))
                log.info("notification %s to %s is locked by another copy; looking again in "
                         "%.1f s", nid, destination, wait_s)
                return Retry(jitter(wait_s))
            attempts_so_far = int(state.get(b"attempts", 0))
            first_at = float(state.get(b"first_at", 0)) or time.time()
            try:
                return self._attempt(nid, event_id, destination, raw_event,
                                     attempts_so_far + 1, first_at,
                                     Given(known, admission, state.get(b"seq"),
                                           _float(state.get(b"circuit_since"))), hold)
            except REDIS_DOWN:
                raise
            except Exception as exc:
                log.exception("notification %s to %s: unexpected error, dead-lettered", nid,
                              destination)
                self._finish_dead(nid, event_id, destination, raw_event, attempts_so_far + 1,
                                  f"internal error: {type(exc).__name__}: {exc}", record=True,
                                  kind="internal")
                return Outcome.DEAD
        finally:
            self._let_go(hold)

    def _let_go(self, hold: Hold) -> None:
        """Whatever the run still owes: the circuit's news, the probe lease, the lock."""
        with contextlib.suppress(*REDIS_DOWN):  # else the lease / lock expires by itself
            if hold.success_due:
                hold.success_due = False
                self.circuit.record_success(hold.destination)
            if hold.probing:
                hold.probing = False
                self.circuit.release_probe(hold.destination)
        if not hold.released:
            with contextlib.suppress(*REDIS_DOWN):
                self.scripts.run("lock_release", [hold.lock_key], [hold.token])
            hold.released = True

    def _queue_unlock(self, pipe: Batch, hold: Hold) -> None:
        """Queue the lock's release on ``pipe`` (done once the pipeline has run)."""
        pipe.script("lock_release", [hold.lock_key], [hold.token])

    def _sequence(self, nid: str, dest: Destination, seq: bytes | None) -> int | None:
        """The X-Recnotify-Sequence of an ordered notification (assigned at its release,
        before its task was enqueued: ``seq`` is the hash's value read by the first pipeline)."""
        if not dest.ordered:
            return None
        if seq is None:
            seq = self.redis.hget(self.keys.notification(nid), "seq")  # type: ignore[assignment]
        return int(seq) if seq is not None else None

    def _attempt(self, nid: str, event_id: str, destination: str, raw_event: bytes | None,
                 attempt: int, first_at: float, given: Given, hold: Hold) -> Outcome | Retry:
        dest = given.dest
        if raw_event is None:
            return self._finish_dead(nid, event_id, destination, None, attempt,
                                     "event data not found in Redis (expired or lost)")
        if dest is None:
            return self._finish_dead(nid, event_id, destination, raw_event, attempt,
                                     f"destination {destination!r} no longer exists")
        if not dest.enabled:
            return self._finish_dead(nid, event_id, destination, raw_event, attempt,
                                     f"destination {destination!r} is disabled")
        event = load_stored_event(raw_event)
        now = time.time()
        try:
            request = build_request(event, dest, nid=nid, now_s=now,
                                    sequence=self._sequence(nid, dest, given.seq))
        except DeliveryError as exc:
            return self._finish_dead(nid, event_id, destination, raw_event, attempt, str(exc),
                                     record=True)
        gate = self._gate(nid, event, dest, raw_event, attempt, first_at, given, hold)
        if gate is not None:
            return gate
        result = self._send_limited(dest, request, hold)
        if result is None:
            return self._act(nid, event, dest, raw_event, attempt, first_at,
                             slot_gate(False, retry_s=SLOT_RETRY_S), hold)
        if result.disable:
            self._disable(dest, nid)
        return self._conclude(nid, event, dest, raw_event, attempt, result, first_at, hold)

    # -- circuit breaker and limits ------------------------------------------------------
    def _gate(self, nid: str, event: Event, dest: Destination, raw_event: bytes,
              attempt: int, first_at: float, given: Given, hold: Hold
              ) -> Outcome | Retry | None:
        """None when the attempt may go; else the notification waits (no attempt spent).
        ``given.admission``: the circuit's answer from the first pipeline (None: ask now)."""
        admission = given.admission
        if admission is None:
            admission = self.circuit.admit(dest.name, dest.circuit.reset_s)
            hold.probing = admission.verdict is Admitted.PROBE
        decision = circuit_gate(
            open_=not admission.allowed, ordered=dest.ordered, now_s=time.time(),
            deadline_s=first_at + span_s(dest), waiting_since_s=given.circuit_since,
            probe_failed_at_s=admission.probe_failed_at, wait_s=admission.wait_s,
            reset_s=dest.circuit.reset_s,
            why_dead=dead_reason(dest, admission.probe_failed_at or 0.0, admission.probe_error))
        if decision.goes:
            decision = rate_gate(self.limits.take_token(dest.name, dest.rate_limit_per_s))
            if not decision.goes:
                self._drop_probe(dest, hold)
        if decision.goes:
            return None
        return self._act(nid, event, dest, raw_event, attempt, first_at, decision, hold)

    def _act(self, nid: str, event: Event, dest: Destination, raw_event: bytes, attempt: int,
             first_at: float, decision: Decision, hold: Hold) -> Outcome | Retry:
        """Carry out a gate's decision to hold the attempt back (no attempt spent)."""
        if decision.verdict is Verdict.DEAD:
            return self._finish_dead(nid, event.id, dest.name, raw_event, attempt - 1,
                                     decision.why, kind="circuit")
        if decision.verdict is Verdict.PARK:  # no task until the circuit closes (or dead)
            return self._park(event.id, dest, first_at, hold)
        return self._wait(nid, event.id, dest, first_at, jitter(decision.wait_s), decision.why,
                          hold)

    def _send_limited(self, dest: Destination, request: Any, hold: Hold
                      ) -> AttemptResult | None:
        """Send under an in-flight slot and report to the circuit; None when no slot.

        A retryable failure is reported at once; an answer (success for the circuit)
        goes with the outcome's pipeline (``hold.success_due``, see _conclude)."""
        slot = self.limits.acquire_slot(dest.name, dest.max_in_flight, dest.timeout_s)
        if slot is None:
            self._drop_probe(dest, hold)
            return None
        try:
            result = self._send(dest, request)
        finally:
            self.limits.release_slot(slot)
        if result.retryable:
            probe, hold.probing = hold.probing, False  # used: the failure re-opens it
            self.circuit.record_failure(dest.name, dest.circuit.failures,
                                        dest.circuit.reset_s, probe=probe,
                                        error=result.error or "failed")
        elif result.status is not None:
            hold.probing = False  # used: the success closes the circuit
            hold.success_due = not hold.circuit_clean
        else:
            self._drop_probe(dest, hold)
        return result

    def _drop_probe(self, dest: Destination, hold: Hold) -> None:
        if hold.probing:
            hold.probing = False
            self.circuit.release_probe(dest.name)

    def _wait(self, nid: str, event_id: str, dest: Destination, first_at: float,
              wait_s: float, why: str, hold: Hold) -> Outcome | Retry:
        """Park the notification for ``wait_s`` without spending an attempt."""
        due = time.time() + wait_s
        short = wait_s <= self.settings.max_countdown_s
        pipe = self.scripts.pipeline()
        queue_waiting(pipe, self.keys, nid=nid, event_id=event_id, destination=dest.name,
                      first_at=first_at, why=why)
        if short:  # nothing left to do under the lock: the task retries after wait_s
            self.schedule.watch([(event_id, dest.name)], due + self.watchdog_s, pipe)
            self._queue_unlock(pipe, hold)
        pipe.execute()
        if short:
            hold.watched = True
            hold.released = True
        log.debug("notification %s to %s waits %.2f s: %s", nid, dest.name, wait_s, why)
        if short:
            return Retry(wait_s)
        self.schedule.add(event_id, dest.name, due)
        return Outcome.WAITING

    def _park(self, event_id: str, dest: Destination, first_at: float, hold: Hold
              ) -> Outcome:
        """The circuit is open: park the notification in the lot (workers/parking.py)."""
        pipe = self.scripts.pipeline()
        self.parking.park(pipe, event_id, dest, first_at)
        self._queue_unlock(pipe, hold)
        pipe.execute()
        hold.watched = True  # park() removed the watchdog entry: the lot holds it now
        hold.released = True
        log.debug("notification %s to %s parked: circuit open",
                  notification_id(event_id, dest.name), dest.name)
        return Outcome.WAITING

    def _send(self, dest: Destination, request: Any) -> AttemptResult:
        return send_once(self.transport, self.global_rules, dest, request)

    def _conclude(self, nid: str, event: Event, dest: Destination, raw_event: bytes,
                  attempt: int, result: AttemptResult, first_at: float, hold: Hold
                  ) -> Outcome | Retry:
        deadline = first_at + span_s(dest)
        if result.status is not None and is_delivered(result.status):
            outcome = Outcome.DELIVERED
        elif result.retryable and attempt < dest.retry.max_attempts and time.time() < deadline:
            outcome = Outcome.RETRYING
        else:
            outcome = Outcome.DEAD
        entry = {"attempt": attempt, "at": time.time(), "status": result.status,
                 "error": result.error, "latency_ms": round(result.latency_ms, 2)}
        delivered = outcome is Outcome.DELIVERED
        nkey = self.keys.notification(nid)
        # done: forget the watchdog entry, release the lock (in the same script)
        keys = [nkey, nkey + ":log", self.keys.records, self.keys.metric("notifications"),
                self.keys.metric("latency"), self.keys.watchdog, hold.lock_key]
        args = [attempt, outcome.value, event.id, dest.name, first_at, json.dumps(entry),
                attempt_record(notification_id=nid, event_id=event.id, destination=dest.name,
                               outcome=outcome.value, **entry),
                NOTIFICATION_TTL_S,
                bucket_for(result.latency_ms) if result.status is not None else "",
                round(result.latency_ms, 3),
                schedule_member(event.id, dest.name) if delivered else "",
                hold.token if delivered else ""]
        pipe = self.scripts.pipeline()
        pipe.script("attempt_conclude", keys, args)
        success = finish = -1
        if hold.success_due:
            success = self.circuit.queue_success(pipe, dest.name)
        if delivered and dest.ordered and hold.enqueue is not None and self.ordering is not None:
            finish = queue_finish(self.ordering, pipe, event.id, dest.name,
                                  hold_dead=dest.on_dead_letter == "hold")
        replies = pipe.execute()
        if delivered:
            hold.watched = True
            hold.released = bool(replies[0])
        if success >= 0:
            hold.success_due = False
            self.circuit.success_reply(replies[success], dest.name)
        if finish >= 0 and self.ordering is not None and hold.enqueue is not None:
            after_finish(self.ordering, replies[finish], dest.name, hold.enqueue)
            hold.finished = True
        if outcome is Outcome.DELIVERED:
            log.info("notification %s to %s delivered: HTTP %s in %.0f ms (attempt %d)", nid,
                     dest.name, result.status, result.latency_ms, attempt)
            return outcome
        if outcome is Outcome.DEAD:
            reason = result.error or "failed"
            if result.retryable:
                reason = f"gave up after {attempt} attempts; last: {reason}"
            self._finish_dead(nid, event.id, dest.name, raw_event, attempt, reason, record=False,
                              kind="exhausted" if result.retryable else "final")
            return outcome
        wait_s = compute_backoff_s(dest.retry, attempt)
        if result.retry_after_s is not None:
            wait_s = max(wait_s, result.retry_after_s)
        wait_s = min(wait_s, max(0.0, deadline - time.time()))  # never past the span
        log.warning("notification %s to %s attempt %d failed (%s); retry in %.1f s", nid,
                    dest.name, attempt, result.error, wait_s)
        if wait_s <= self.settings.max_countdown_s:
            return Retry(wait_s)
        self.schedule.add(event.id, dest.name, time.time() + wait_s)
        return outcome

    def _finish_dead(self, nid: str, event_id: str, destination: str, raw_event: bytes | None,
                     attempt: int, reason: str, *, record: bool = True,
                     kind: str = "final") -> Outcome:
        """Keep the notification as a dead letter with every attempt's status/error."""
        nkey = self.keys.notification(nid)
        if record:
            entry = {"attempt": attempt, "at": time.time(), "status": None, "error": reason,
                     "latency_ms": 0.0}
            self.redis.rpush(nkey + ":log", json.dumps(entry))
            self.redis.rpush(self.keys.records, attempt_record(
                notification_id=nid, event_id=event_id, destination=destination,
                outcome=Outcome.DEAD.value, **entry))
        history: Any = self.redis.lrange(nkey + ":log", 0, -1)
        pipe = self.redis.pipeline(transaction=False)
        queue_dead_letter(pipe, self.keys, nid=nid, event_id=event_id, destination=destination,
                          raw_event=raw_event, attempts=attempt, history=history,
                          reason=reason, kind=kind)
        pipe.execute()
        log.error("notification %s to %s dead-lettered: %s", nid, destination, reason)
        return Outcome.DEAD

    def _disable(self, dest: Destination, nid: str) -> None:
        log.error("notification %s to %s answered 410 Gone: destination disabled; enable it "
                  "again with `recnotify destinations enable %s`", nid, dest.name, dest.name)
        self.redis.hincrby(self.keys.metric("disabled"), f"{dest.name}|410", 1)
        try:
            self.store.set_enabled(dest.name, False)
        except Exception as exc:
            log.error("could not disable destination %s: %s", dest.name, exc)


def _float(value: bytes | None) -> float | None:
    return float(value) if value else None
