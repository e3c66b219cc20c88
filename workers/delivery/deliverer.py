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
from dataclasses import replace
from typing import Any

import redis
from celery import current_task

from producer.events import Event, load_stored_event
from workers.config.logs import add_log_context, log_context
from workers.config.settings import Settings
from workers.config.telemetry import attempt_span
from workers.delivery.attempt import (
    LOCK_MARGIN_S,
    REDIS_DOWN,
    REDIS_OUTAGE_RETRY_S,
    REDIS_OUTAGE_WAIT_S,
    AttemptResult,
    Chore,
    Given,
    Lease,
    Retry,
    Run,
    describe,
    destination_rules,
    jitter,
    send_once,
)
from workers.delivery.authed import send_authed
from workers.delivery.tokens import TokenCache
from workers.destinations.backoff import compute_backoff_s
from workers.destinations.cache import ConfigCache
from workers.destinations.expiry import EXPIRED, capped_wait_s, expiry_for
from workers.destinations.model import Destination, span_s
from workers.errors import DeliveryError, StoreError
from workers.http.netsafety import AddressRules
from workers.http.outcome import Outcome, is_delivered
from workers.http.request import build_request, notification_id
from workers.http.transport import Transport
from workers.state.circuit import CircuitBreaker
from workers.state.circuit import Verdict as Admitted
from workers.state.counters import Tally
from workers.state.limits import SLOT_RETRY_S, Limits
from workers.state.notification import (
    Decision,
    EnqueueMany,
    Verdict,
    circuit_gate,
    rate_gate,
    slot_gate,
)
from workers.state.ordering import Ordering, after_finish, finish_ordered, queue_finish
from workers.state.parking import ParkingLot, dead_reason
from workers.state.records import attempt_record
from workers.state.schedule import Schedule, schedule_member
from workers.state.scripts import Batch, Scripts
from workers.state.writes import NOTIFICATION_TTL_S, queue_dead_letter, queue_waiting

__all__ = ["AttemptResult", "Deliverer", "Retry", "describe", "destination_rules"]

log = logging.getLogger("recnotify.deliver")


class Deliverer:
    """Everything a delivery needs, built once per worker process.

    One run (:meth:`run`) takes the notification through the state machine of
    ``workers/state/notification.py``: queued -> in flight, then the gates decide
    (go, wait, park, dead: :meth:`_act`), and an attempt's outcome moves it to
    delivered, waiting (retry) or dead (:meth:`_conclude`). The run's context is one
    :class:`~workers.delivery.attempt.Run`; what it holds (lock, probe lease) is its
    :class:`~workers.delivery.attempt.Lease`, given back in ``finally`` (:meth:`_let_go`).
    """

    def __init__(self, settings: Settings, client: redis.Redis, config: ConfigCache,
                 transport: Transport, global_rules: AddressRules, store: Any,
                 ordering: Ordering | None = None, tally: Tally | None = None) -> None:
        self.settings = settings
        self.keys = settings.keys
        self.redis = client
        self.config = config
        self.transport = transport
        self.global_rules = global_rules
        self.store = store
        #: a finished notification's hash and log stay this long (the dedupe window)
        self.dedupe_ttl_s = max(1, int(settings.dedupe_window_s))
        self.schedule = Schedule(client, self.keys, watchdog_s=settings.watchdog_s)
        self.watchdog_s = self.schedule.watchdog_s
        self.circuit = CircuitBreaker(client, self.keys)
        self.parking = ParkingLot(client, self.keys, dedupe_ttl_s=self.dedupe_ttl_s)
        self.ordering = ordering
        self.limits = Limits(client, self.keys.prefix)
        self.scripts = Scripts.of(client)
        #: The per-attempt counters, sent in batches (whoever runs deliveries flushes it:
        #: the worker's housekeeping loop, workers.taskqueue.service)
        self.tally = tally if tally is not None else Tally(client, self.keys.metric)
        #: Tokens of destinations with auth: this process's memory only.
        self.tokens = TokenCache()

    # -- the task body -------------------------------------------------------------------
    def run(self, event_id: str, destination: str, enqueue: EnqueueMany | None = None,
            enqueued_at_s: float | None = None,
            task_id: str | None = None) -> Outcome | Retry | None:
        """Deliver once. Returns the outcome, a Retry for the task, or None (duplicate).

        With ``enqueue``, an ordered destination's next notification of the same
        recording is released and enqueued when this one has ended (workers.state.ordering).
        ``enqueued_at_s``: when its task message
        was enqueued (its header), so a fresh one's watchdog entry need not be re-armed.
        ``task_id``: the Celery task's id for the log lines (None: looked up).
        """
        nid = notification_id(event_id, destination)
        with log_context(event_id=event_id, notification_id=nid, destination=destination,
                         node=self.settings.node_name,
                         task_id=task_id if task_id is not None else _task_id()):
            return self._run_logged(event_id, destination, nid, enqueue, enqueued_at_s)

    def _run_logged(self, event_id: str, destination: str, nid: str,
                    enqueue: EnqueueMany | None, enqueued_at_s: float | None = None
                    ) -> Outcome | Retry | None:
        run = Run(event_id, destination, nid, Lease(self.keys.lock(nid), uuid.uuid4().hex),
                  enqueue=enqueue, enqueued_at_s=enqueued_at_s)
        try:
            result = self._run(run)
            if Chore.WATCHDOG not in run.done:
                self._watch(run, result)
            if enqueue is not None and Chore.ORDER not in run.done:
                self._finish_ordered(run, enqueue)
            return result
        except REDIS_DOWN as exc:
            # Not the notification's fault: no attempt spent, try again shortly. Re-queueing
            # needs the broker (a failed re-queue would drop the task), so wait for Redis
            # first; the whole service is stalled meanwhile anyway.
            log.error("Redis unavailable while handling notification of event %s to %s (%s); "
                      "re-queued once it answers", event_id, destination, type(exc).__name__)
            self._wait_for_redis(REDIS_OUTAGE_WAIT_S)
            return Retry(REDIS_OUTAGE_RETRY_S)

    def _watch(self, run: Run, result: Outcome | Retry | None) -> None:
        """Keep the notification's watchdog entry in step (see workers/state/schedule.py)."""
        if isinstance(result, Retry):
            self.schedule.watch([(run.event_id, run.destination)],
                                time.time() + result.countdown_s + self.watchdog_s)
        elif result in (Outcome.DELIVERED, Outcome.DEAD, None):
            self.schedule.forget(run.event_id, run.destination)
        # RETRYING / WAITING past max_countdown_s: Schedule.add took it off the watchdog

    def _finish_ordered(self, run: Run, enqueue: EnqueueMany) -> None:
        """Every run for an ordered destination ends here (duplicates too: idempotent),
        unless its delivery already finished it on its last pipeline (_conclude)."""
        dest = self.config.get(run.destination)
        if dest is None or not dest.ordered or self.ordering is None:
            return
        with contextlib.suppress(*REDIS_DOWN):  # else the stale-head resend covers it
            finish_ordered(self.ordering, run.event_id, run.destination,
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

    def _run(self, run: Run) -> Outcome | Retry | None:
        """queued -> in flight: one round trip reads the event and the state, takes the
        lock, re-arms the watchdog and asks the circuit."""
        lease = run.lease
        known = self.config.get(run.destination)
        # with auth an attempt may be: login, send, 401, login, send
        sends = 4 if known is not None and known.auth is not None else 1
        lock_ms = int(((known.timeout_s * sends if known else 60.0) + LOCK_MARGIN_S) * 1000)
        pipe = self.scripts.pipeline()
        pipe.get(self.keys.event(run.event_id))
        pipe.hgetall(self.keys.notification(run.nid))
        pipe.set(lease.lock_key, lease.token, nx=True, px=lock_ms)
        # started: if this run dies, a copy goes once its lock has expired (an entry
        # armed at the enqueue that comes due only after that already does: no re-arm)
        due_s = time.time() + lock_ms / 1000 + 5
        if not _armed_past(run.enqueued_at_s, due_s, self.watchdog_s):
            self.schedule.rearm(pipe, run.event_id, run.destination, due_s)
        # a closed circuit answers here; an open or half-open one is asked by _gate
        peek_at = self.circuit.queue_peek(pipe, run.destination) if (
            known is not None and known.enabled) else -1
        replies = pipe.execute()
        run.raw_event, state, locked = replies[:3]
        lease.lock = bool(locked)
        admission = self.circuit.peeked(replies[peek_at]) if peek_at >= 0 else None
        try:
            if state.get(b"state") in (b"delivered", b"dead"):
                log.info("notification %s to %s already %s; duplicate skipped", run.nid,
                         run.destination, state[b"state"].decode())
                return None
            if not locked:
                # Another copy holds the lock: it is sending now, or its worker died mid-
                # attempt (the lock then expires). Look again later instead of dropping this.
                wait_s = max(0.5, min(self.redis.pttl(lease.lock_key) / 1000,
                                      self.settings.max_countdown_s))
                log.info("notification %s to %s is locked by another copy; looking again in "
                         "%.1f s", run.nid, run.destination, wait_s)
                return Retry(jitter(wait_s))
            run.fields = frozenset(state)
            run.attempt = int(state.get(b"attempts", 0)) + 1
            add_log_context(attempt=run.attempt)
            run.first_at = float(state.get(b"first_at", 0)) or time.time()
            run.replayed_at = _float(state.get(b"replayed_at"))
            since = _float(state.get(b"circuit_since"))
            waited_s = (_float(state.get(b"circuit_waited_s")) or 0.0) + (
                max(0.0, time.time() - since) if since is not None else 0.0)
            run.given = Given(known, admission, state.get(b"seq"), since, waited_s)
            try:
                return self._attempt(run, run.given)
            except REDIS_DOWN:
                raise
            except Exception as exc:
                log.exception("notification %s to %s: unexpected error, dead-lettered",
                              run.nid, run.destination)
                return self._finish_dead(run, f"internal error: {type(exc).__name__}: {exc}",
                                         kind="internal")
        finally:
            self._let_go(run)

    def _let_go(self, run: Run) -> None:
        """Whatever the run still holds: the circuit's news, the probe lease, the lock."""
        lease = run.lease
        with contextlib.suppress(*REDIS_DOWN):  # else the lease / lock expires by itself
            if lease.success_due:
                lease.success_due = False
                self.circuit.record_success(run.destination)
            if lease.probe:
                lease.probe = False
                self.circuit.release_probe(run.destination)
        if lease.lock:
            with contextlib.suppress(*REDIS_DOWN):
                self.scripts.run("lock_release", [lease.lock_key], [lease.token])
            lease.lock = False

    def _queue_unlock(self, pipe: Batch, run: Run) -> None:
        """Queue the lock's release on ``pipe`` (given back once the pipeline has run)."""
        pipe.script("lock_release", [run.lease.lock_key], [run.lease.token])

    def _sequence(self, run: Run, dest: Destination, seq: bytes | None) -> int | None:
        """The X-Recnotify-Sequence of an ordered notification (assigned at its release,
        before its task was enqueued: ``seq`` is the hash's value read by the first pipeline)."""
        if not dest.ordered:
            return None
        if seq is None:
            seq = self.redis.hget(self.keys.notification(run.nid), "seq")  # type: ignore[assignment]
        return int(seq) if seq is not None else None

    def _attempt(self, run: Run, given: Given) -> Outcome | Retry:
        dest = given.dest
        if run.raw_event is None:  # Redis forgot it (the dedupe window): the database's copy
            try:
                kept = self.store.get_event_json(run.event_id)
            except StoreError:
                log.warning("notification %s to %s: its event is not in Redis and the "
                            "database is unavailable; trying again later", run.nid,
                            run.destination)
                return Retry(jitter(self.settings.max_countdown_s))
            if kept is None:
                return self._finish_dead(run, "event data not found (neither Redis nor the "
                                              "database keeps it: expired or lost)")
            run.raw_event = kept.encode()
        if dest is None:
            # a destination made a moment ago (then backfilled, replayed or tested at once):
            # this process's copy may predate it (or another thread refreshed it meanwhile)
            self.config.refresh()
            dest = self.config.get(run.destination)
            given = run.given = replace(given, dest=dest)
        if dest is None:
            return self._finish_dead(run, f"destination {run.destination!r} no longer exists")
        if not dest.enabled:
            return self._finish_dead(run, f"destination {run.destination!r} is disabled")
        event = load_stored_event(run.raw_event)
        run.expiry = expiry_for(dest.expire_after_s, event.type, occurred_at=event.occurred_at,
                                first_at_s=run.first_at, replayed_at_s=run.replayed_at)
        if run.expiry is not None and run.expiry.expired(time.time()):  # not sent: too late
            return self._finish_dead(run, run.expiry.reason, kind=EXPIRED, spent=False)
        try:
            request = build_request(event, dest, nid=run.nid, now_s=time.time(),
                                    sequence=self._sequence(run, dest, given.seq))
        except DeliveryError as exc:
            return self._finish_dead(run, str(exc))
        decision = self._gate(run, dest, given)
        if not decision.goes:
            return self._act(run, dest, decision)
        # tracing off: a no-op (only an event's own traceparent header is carried)
        with attempt_span(event, dest.name, run.attempt, run.nid, request.headers) as span:
            run.traceparent = span.traceparent
            result = self._send_limited(run, dest, request, given)
            if result is None:
                return span.done(None, self._act(run, dest,
                                                 slot_gate(False, retry_s=SLOT_RETRY_S)))
            if result.disable:
                self._disable(dest, run.nid)
            return span.done(result.status, self._conclude(run, event, dest, result))

    # -- the gates -----------------------------------------------------------------------
    def _gate(self, run: Run, dest: Destination, given: Given) -> Decision:
        """The circuit's decision, then the rate limit's (``given.admission``: the
        circuit's answer from the first pipeline; None: ask now)."""
        admission = given.admission
        if admission is None:
            admission = self.circuit.admit(dest.name, dest.circuit.reset_s)
            run.lease.probe = admission.verdict is Admitted.PROBE
        failed_at = admission.probe_failed_at
        decision = circuit_gate(
            open_=not admission.allowed, ordered=dest.ordered, now_s=time.time(),
            deadline_s=run.first_at + span_s(dest), waiting_since_s=given.circuit_since,
            probe_failed_at_s=failed_at, wait_s=admission.wait_s,
            reset_s=dest.circuit.reset_s,
            # the reason is only ever read for a failed probe: no formatting per delivery
            why_dead=dead_reason(dest, failed_at, admission.probe_error)
            if failed_at is not None else "")
        if decision.goes:
            decision = rate_gate(self.limits.take_token(dest.name, dest.rate_limit_per_s))
            if not decision.goes:
                self._drop_probe(run)
        return decision

    def _act(self, run: Run, dest: Destination, decision: Decision) -> Outcome | Retry:
        """Carry out a gate's decision to hold the attempt back (no attempt spent)."""
        if decision.verdict is Verdict.DEAD:
            return self._finish_dead(run, decision.why, kind="circuit", spent=False)
        if decision.verdict is Verdict.PARK:  # no task until the circuit closes (or dead)
            return self._park(run, dest)
        wait_s = capped_wait_s(jitter(decision.wait_s), time.time(), run.expiry)
        return self._wait(run, dest, wait_s, decision.why)

    def _send_limited(self, run: Run, dest: Destination, request: Any, given: Given
                      ) -> AttemptResult | None:
        """Send under an in-flight slot and report to the circuit; None when no slot.

        A retryable failure is reported at once; an answer (success for the circuit)
        goes with the outcome's pipeline (``lease.success_due``, see _conclude)."""
        lease = run.lease
        slot = self.limits.acquire_slot(dest.name, dest.max_in_flight, dest.timeout_s)
        if slot is None:
            self._drop_probe(run)
            return None
        try:
            result = (send_once(self.transport, self.global_rules, dest, request)
                      if dest.auth is None else
                      send_authed(self.transport, self.global_rules, dest, request,
                                  self.tokens, run.raw_event))
        finally:
            self.limits.release_slot(slot)
        if result.retryable:
            probe, lease.probe = lease.probe, False  # used: the failure re-opens it
            self.circuit.record_failure(dest.name, dest.circuit.failures,
                                        dest.circuit.reset_s, probe=probe,
                                        counts=run.attempt > 1,
                                        error=result.error or "failed")
        elif result.status is not None:
            lease.probe = False  # used: the success closes the circuit
            clean = given.admission is not None and given.admission.clean
            lease.success_due = not clean
        else:
            self._drop_probe(run)
        return result

    def _drop_probe(self, run: Run) -> None:
        if run.lease.probe:
            run.lease.probe = False
            self.circuit.release_probe(run.destination)

    # -- the transitions out of in flight -------------------------------------------------
    def _wait(self, run: Run, dest: Destination, wait_s: float, why: str) -> Outcome | Retry:
        """in flight -> waiting for ``wait_s``, without spending an attempt."""
        due = time.time() + wait_s
        short = wait_s <= self.settings.max_countdown_s
        pipe = self.scripts.pipeline()
        queue_waiting(pipe, self.keys, nid=run.nid, event_id=run.event_id,
                      destination=dest.name, first_at=run.first_at, why=why)
        if short:  # nothing left to do under the lock: the task retries after wait_s
            self.schedule.watch([(run.event_id, dest.name)], due + self.watchdog_s, pipe)
            self._queue_unlock(pipe, run)
        pipe.execute()
        log.debug("notification %s to %s waits %.2f s: %s", run.nid, dest.name, wait_s, why)
        if short:
            run.done.add(Chore.WATCHDOG)
            run.lease.lock = False
            return Retry(wait_s)
        self.schedule.add(run.event_id, dest.name, due)
        return Outcome.WAITING

    def _park(self, run: Run, dest: Destination) -> Outcome:
        """in flight -> parked: the circuit is open (workers/state/parking.py)."""
        pipe = self.scripts.pipeline()
        self.parking.park(pipe, run.event_id, dest, run.first_at,
                          expires_at=run.expiry.at_s if run.expiry is not None else None)
        self._queue_unlock(pipe, run)
        pipe.execute()
        run.done.add(Chore.WATCHDOG)  # park() removed the watchdog entry: the lot holds it
        run.lease.lock = False
        log.debug("notification %s to %s parked: circuit open", run.nid, dest.name)
        return Outcome.WAITING

    def _conclude(self, run: Run, event: Event, dest: Destination, result: AttemptResult
                  ) -> Outcome | Retry:
        """in flight -> delivered, waiting (a retry) or dead, by the attempt's result."""
        lease, attempt = run.lease, run.attempt
        given = run.given
        since = given.circuit_since if given is not None else None
        # waits on an open circuit do not eat the attempts' span
        deadline = run.first_at + span_s(dest) + (given.circuit_waited_s if given else 0.0)
        expired = run.expiry is not None and run.expiry.expired(time.time())
        if result.status is not None and is_delivered(result.status):
            outcome = Outcome.DELIVERED
        elif (result.retryable and attempt < dest.retry.max_attempts and time.time() < deadline
              and not expired):
            outcome = Outcome.RETRYING
        else:
            outcome = Outcome.DEAD
        entry = {"attempt": attempt, "at": time.time(), "status": result.status,
                 "error": result.error, "latency_ms": round(result.latency_ms, 2)}
        delivered = outcome is Outcome.DELIVERED
        nkey = self.keys.notification(run.nid)
        # delivered: forget the watchdog entry (in the same script); its lock is left to
        # expire: the state is final, and a copy of the task reads it before the lock
        keys = [nkey, self.keys.notification_log(run.nid), self.keys.records,
                self.keys.watchdog, self.keys.waiting(dest.name)]
        args = [attempt, outcome.value, event.id, dest.name, run.first_at, json.dumps(entry),
                attempt_record(notification_id=run.nid, event_id=event.id,
                               destination=dest.name, outcome=outcome.value,
                               response=result.response or None,
                               traceparent=run.traceparent, **entry),
                NOTIFICATION_TTL_S if outcome is Outcome.RETRYING else self.dedupe_ttl_s,
                schedule_member(event.id, dest.name) if delivered else "",
                round(max(0.0, time.time() - since), 3) if since is not None else 0,
                run.nid, *_known_fields(run.fields)]
        pipe = self.scripts.pipeline()
        pipe.script("attempt_conclude", keys, args)
        success = finish = -1
        if lease.success_due:
            success = self.circuit.queue_success(pipe, dest.name)
        if delivered and dest.ordered and run.enqueue is not None and self.ordering is not None:
            finish = queue_finish(self.ordering, pipe, event.id, dest.name,
                                  hold_dead=dest.on_dead_letter == "hold")
        # counted before the script runs: once its record can be seen, so can its counts
        latency_ms = result.latency_ms if result.status is not None else None
        self.tally.attempt(dest.name, outcome.value, latency_ms)
        try:
            replies = pipe.execute()
        except BaseException:
            self.tally.attempt(dest.name, outcome.value, latency_ms, sign=-1)
            raise
        if delivered:
            run.done.add(Chore.WATCHDOG)
            lease.lock = False
        if success >= 0:
            lease.success_due = False
            self.circuit.success_reply(replies[success], dest.name)
        if finish >= 0 and self.ordering is not None and run.enqueue is not None:
            after_finish(self.ordering, replies[finish], dest.name, run.enqueue)
            run.done.add(Chore.ORDER)
        outcome_fields = {"status": result.status, "latency_ms": round(result.latency_ms, 1)}
        add_log_context(**outcome_fields)
        if outcome is Outcome.DELIVERED:
            log.info("notification %s to %s delivered: HTTP %s in %.0f ms (attempt %d)",
                     run.nid, dest.name, result.status, result.latency_ms, attempt,
                     extra=outcome_fields)
            return outcome
        if outcome is Outcome.DEAD:
            reason = result.error or "failed"
            if result.retryable and expired and run.expiry is not None:
                return self._finish_dead(run, run.expiry.reason, record=False, kind=EXPIRED)
            if result.retryable:
                reason = f"gave up after {attempt} attempts; last: {reason}"
            return self._finish_dead(run, reason, record=False,
                                     kind="exhausted" if result.retryable else "final")
        wait_s = compute_backoff_s(dest.retry, attempt)
        if result.retry_after_s is not None:
            wait_s = max(wait_s, result.retry_after_s)
        wait_s = min(wait_s, max(0.0, deadline - time.time()))  # never past the span
        wait_s = capped_wait_s(wait_s, time.time(), run.expiry)  # nor past the expiry
        log.warning("notification %s to %s attempt %d failed (%s); retry in %.1f s", run.nid,
                    dest.name, attempt, result.error, wait_s, extra=outcome_fields)
        if wait_s <= self.settings.max_countdown_s:
            return Retry(wait_s)
        self.schedule.add(event.id, dest.name, time.time() + wait_s)
        return outcome

    def _finish_dead(self, run: Run, reason: str, *, record: bool = True,
                     kind: str = "final", spent: bool = True) -> Outcome:
        """-> dead: keep the notification as a dead letter with every attempt's status
        and error (``record``: also log this run as an attempt; ``spent``: this run counts
        as an attempt -- a gate's dead end does not)."""
        attempts = run.attempt if spent else run.attempt - 1
        log_key = self.keys.notification_log(run.nid)
        if record:
            entry = {"attempt": attempts, "at": time.time(), "status": None, "error": reason,
                     "latency_ms": 0.0}
            self.redis.rpush(log_key, json.dumps(entry))
            self.redis.rpush(self.keys.records, attempt_record(
                notification_id=run.nid, event_id=run.event_id, destination=run.destination,
                outcome=Outcome.DEAD.value, **entry))
        history: Any = self.redis.lrange(log_key, 0, -1)
        pipe = self.redis.pipeline(transaction=False)
        queue_dead_letter(pipe, self.keys, nid=run.nid, event_id=run.event_id,
                          destination=run.destination, raw_event=run.raw_event,
                          attempts=attempts, history=history, reason=reason, kind=kind,
                          ttl_s=self.dedupe_ttl_s)
        pipe.execute()
        log.error("notification %s to %s dead-lettered: %s", run.nid, run.destination, reason)
        return Outcome.DEAD

    def _disable(self, dest: Destination, nid: str) -> None:
        log.error("notification %s to %s answered 410 Gone: destination disabled; enable it "
                  "again with `recnotify destinations enable %s`", nid, dest.name, dest.name)
        self.redis.hincrby(self.keys.metric("disabled"), f"{dest.name}|410", 1)
        try:
            self.store.set_enabled(dest.name, False)
        except Exception as exc:
            log.error("could not disable destination %s: %s", dest.name, exc)


def _known_fields(fields: frozenset[bytes] | None) -> tuple[str, str, str]:
    """attempt_conclude's ARGV[12..14] from the hash's fields as the run found them
    ('1' each when not known: the script then writes as if they might be there)."""
    if fields is None:
        return "1", "1", "1"
    return ("1" if b"first_at" in fields else "0",
            "1" if fields & {b"circuit_since", b"waiting"} else "0",
            "1" if fields else "0")


#: Slack for the clocks of the enqueue and of the watchdog entry's write (a retry's entry
#: is written a moment before its message's header is stamped).
REARM_SLACK_S = 2.0


def _armed_past(enqueued_at_s: float | None, due_s: float, watchdog_s: float) -> bool:
    """Whether the watchdog entry of a message enqueued at ``enqueued_at_s`` (its header;
    None: unknown) is due after ``due_s`` anyway. Every enqueue arms the entry at least
    ``watchdog_s`` after the header's time (workers.taskqueue.enqueue, the retry's
    ``_watch``), so a message taken soon after its enqueue needs no re-arm; one that waited
    in a backlog does. A wrong guess costs a harmless copy (the lock, then the state,
    turns it away), never a lost notification."""
    return enqueued_at_s is not None and enqueued_at_s + watchdog_s >= due_s + REARM_SLACK_S


def _float(value: bytes | None) -> float | None:
    return float(value) if value else None


def _task_id() -> str | None:
    """The id of the Celery task this run is (None outside one, e.g. in-process tests)."""
    try:
        request = current_task.request if current_task else None
        return str(request.id) if request is not None and request.id else None
    except Exception:  # no task machinery in this process
        return None
