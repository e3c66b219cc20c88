"""The notification state machine: its states, the allowed transitions, and the gates.

Every notification (one event x one matching destination, SPEC 6) is in exactly one
of these states. Where each state lives in Redis (names from ``workers.config.settings.Keys``;
``n`` is the notification hash, whose ``state`` field holds the value below where
one is written):

============  =============================================================================
state         where it lives
============  =============================================================================
queued        a task message in the broker queue (or reserved with a countdown), plus a
              watchdog entry in ``schedule`` (workers/state/schedule.py); ``n.state`` absent,
              ``retrying`` or ``waiting``
in_flight     ``lock:<nid>`` held by one task run (expires by itself)
waiting       a due time: a short one as the task's countdown, a long one in ``schedule``;
              ``n.state`` = ``retrying`` (an attempt failed) or ``waiting`` (no attempt
              spent: rate limit, in-flight cap, an ordered destination's open circuit)
parked        a member of ``parked:<dest>`` and ``parked-since:<dest>``; ``n.state`` =
              ``waiting``, ``n.waiting`` = ``circuit open``; no task, no watchdog
held          ordered destinations: a member of ``ord:q:<pair>`` behind an earlier one
delivered     ``n.state`` = ``delivered`` (terminal)
dead          ``n.state`` = ``dead`` and a dead-letter record (terminal)
============  =============================================================================

The transitions (:data:`TRANSITIONS`): from -> to, the trigger, and the writes.

- new -> queued: the consumer dispatches an entry. LPUSH the task and ZADD its watchdog
  entry to ``schedule``, with the XACK, in one MULTI (consumer).
- new -> held: dispatch to an ordered destination. ZADD ``ord:q:<pair>`` (ordering.add).
- new -> parked: dispatch while the circuit is open. ZADD ``parked``/``parked-since``.
- held -> queued: the earlier notification of the recording ended and the stream
  frontier has passed this one. ``ordering_release.lua`` / ``ordering_finish.lua``.
- queued -> in_flight: a task run takes the lock (SET NX, the deliverer's first pipeline).
- queued -> queued: a copy finds the lock taken (task countdown, no write); or the
  watchdog finds the task lost and enqueues a copy (same notification id).
- queued -> delivered / dead: a copy finds it already ended: skipped, no write.
- in_flight -> delivered: 2xx. ``attempt_conclude.lua`` (+ ``ordering_finish.lua``); the
  lock is left to expire (the final state turns a copy away before the lock is tried).
- in_flight -> waiting: a retryable failure with attempts and span left
  (``attempt_conclude.lua``, then a countdown or ZADD ``schedule``); or a gate says wait:
  rate limit, in-flight cap, an ordered destination's open circuit (``writes.queue_waiting``).
- in_flight -> parked: the circuit gate says park (unordered). ``ParkingLot.park``.
- in_flight -> dead: a final status, a refused address, attempts or span spent
  (``attempt_conclude.lua`` + the dead letter); or the circuit rule (below); or expiry
  (below): checked before the request is built, and after a failed attempt.
- waiting -> queued: the countdown ends, or the schedule mover moves it
  (``schedule_lease.lua``).
- parked -> queued: the circuit closed, the probe's turn, or the destination was
  disabled or removed. ``parking_sweep.lua`` (ZADD ``schedule`` due now).
- parked -> dead: the circuit rule. ``parking_sweep.lua`` + ``ParkingLot.bury``; or
  expiry: ``parking_expire.lua`` + ``ParkingLot.bury_expired``.

``delivered`` and ``dead`` are terminal: nothing leaves them but an operator's replay
(which starts a new life for the same notification id).

The circuit rule (SPEC 6 "Circuit"): a notification held back by an open circuit
(parked, or waiting for an ordered destination) becomes a dead letter only when its
deadline (first try + the retry policy's span) has passed **and** a probe made after it
began waiting has failed. :func:`circuit_buries` is that rule; ``parking_sweep.lua``
applies the same test to the lot. Two refinements keep a receiver that recovers (or one
that refuses only first attempts) from losing work:

- a failed probe counts only when the probe's notification had been attempted before
  (a fresh notification's refused first attempt re-opens the circuit, condemns nothing;
  that notification, now a retry, is the next probe);
- time spent waiting on an open circuit does not eat a notification's retry span: once
  it is attempted again, its attempts have the span the retry policy gives
  (``circuit_waited_s`` in the notification hash).

Expiry (SPEC 4 ``expire_after_s``, ``workers/destinations/expiry.py``): a notification not
delivered within its destination's limit for its event type, counted from the event's
``occurred_at``, goes to dead with the reason ``expired after N s`` (kind ``expired``),
wherever it sits: in flight, the deliverer checks before sending; waiting, no wait
(a retry's backoff, a gate's, an ordered destination's open circuit) is scheduled past
the expiry, so the run that follows it finds it expired and ends it at expiry; parked,
the sweep buries it; held, its release queues it and its run finds it expired. An
ordered destination's expired head is a dead letter like any other: ``on_dead_letter``
decides whether the recording goes on. No new edge: expiry is a trigger of the
``in_flight -> dead`` and ``parked -> dead`` transitions.

Every write named here is in ``workers/state/writes.py``, a script of ``lua/``, or the
enqueue (``workers.taskqueue.enqueue``); nothing else changes a notification's state.

The gates (circuit, rate limit, in-flight cap) are small pure functions that return a
:class:`Decision`; the deliverer acts on it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import StrEnum


class State(StrEnum):
    QUEUED = "queued"
    IN_FLIGHT = "in_flight"
    WAITING = "waiting"
    PARKED = "parked"
    HELD = "held"
    DELIVERED = "delivered"
    DEAD = "dead"


TERMINAL = frozenset({State.DELIVERED, State.DEAD})

#: Every allowed transition (see the module's table for triggers and writes).
TRANSITIONS: dict[State, frozenset[State]] = {
    State.HELD: frozenset({State.QUEUED}),
    State.QUEUED: frozenset({State.IN_FLIGHT, State.QUEUED, State.DELIVERED, State.DEAD}),
    State.IN_FLIGHT: frozenset({State.DELIVERED, State.WAITING, State.PARKED, State.DEAD,
                                State.QUEUED}),
    State.WAITING: frozenset({State.QUEUED}),
    State.PARKED: frozenset({State.QUEUED, State.DEAD}),
    State.DELIVERED: frozenset(),
    State.DEAD: frozenset(),
}

#: Where a new notification starts.
INITIAL = frozenset({State.QUEUED, State.HELD, State.PARKED})


def allowed(current: State, target: State) -> bool:
    """May a notification in ``current`` move to ``target``?"""
    return target in TRANSITIONS[current]


class Verdict(StrEnum):
    GO = "go"
    WAIT = "wait"
    PARK = "park"
    DEAD = "dead"


@dataclass(frozen=True, slots=True)
class Decision:
    """What a gate decided: go, wait ``wait_s`` (no attempt spent), park, or dead."""

    verdict: Verdict
    wait_s: float = 0.0
    why: str = ""

    @property
    def goes(self) -> bool:
        return self.verdict is Verdict.GO


GO = Decision(Verdict.GO)


def circuit_buries(*, now_s: float, deadline_s: float, waiting_since_s: float | None,
                   probe_failed_at_s: float | None) -> bool:
    """The circuit rule: dead only past the deadline and after a probe made since it began
    waiting on the circuit has failed (``waiting_since_s`` None: it had not waited yet, so
    no probe was made after it)."""
    if now_s < deadline_s or probe_failed_at_s is None or waiting_since_s is None:
        return False
    return waiting_since_s < probe_failed_at_s


def circuit_gate(*, open_: bool, ordered: bool, now_s: float, deadline_s: float,
                 waiting_since_s: float | None, probe_failed_at_s: float | None,
                 wait_s: float, reset_s: float, why_dead: str) -> Decision:
    """The circuit's decision for one notification: go when closed (or this is the probe);
    else dead by the circuit rule, else park (unordered) or wait (ordered: its recording
    must not be overtaken, so it stays the in-flight head and retries)."""
    if not open_:
        return GO
    if circuit_buries(now_s=now_s, deadline_s=deadline_s, waiting_since_s=waiting_since_s,
                      probe_failed_at_s=probe_failed_at_s):
        return Decision(Verdict.DEAD, why=why_dead)
    if not ordered:
        return Decision(Verdict.PARK, why="circuit open")
    return Decision(Verdict.WAIT, min(wait_s, max(1.0, reset_s)), "circuit open")


def rate_gate(token_wait_s: float) -> Decision:
    """The rate limit's decision: go with a token, else wait until one is due."""
    if token_wait_s <= 0:
        return GO
    return Decision(Verdict.WAIT, token_wait_s, "rate limit")


def slot_gate(slot_taken: bool, *, retry_s: float) -> Decision:
    """The in-flight cap's decision: go with a slot, else look again shortly."""
    return GO if slot_taken else Decision(Verdict.WAIT, retry_s, "max_in_flight reached")


#: How far past an entry's arm time the queue must have moved before its task counts as
#: lost: a task just taken off the queue may wait this long in its worker's memory for a
#: thread before its run re-arms the entry.
QUEUE_GRACE_S = 5.0


def watchdog_copy_bound(now_s: float, tail_enqueued_at_s: float | None, watchdog_s: float
                        ) -> float:
    """The highest watchdog score whose entries are lost tasks, to copy now.

    An entry's score is when it is due; it was armed ``watchdog_s`` before. The delivery
    queue is FIFO: when its oldest message was enqueued (``tail_enqueued_at_s``) more than
    ``QUEUE_GRACE_S`` after an entry was armed, the queue has moved past that task, so it
    was taken and then lost (else its run would have re-armed or removed the entry). When
    the queue is empty (``None``) every due entry was lost. An entry the queue has not
    reached is left as it is, with the score it was armed with: it is copied as soon as
    the queue passes it, however long the backlog, and a backlog gets no copies of
    healthy queued work.
    """
    if tail_enqueued_at_s is None:
        return now_s
    return min(now_s, tail_enqueued_at_s - QUEUE_GRACE_S + watchdog_s)


#: How a transition to *queued* is carried out: enqueue one delivery task per
#: (event id, destination name) pair, all in one call (the task queue supplies it:
#: :func:`workers.taskqueue.enqueue.make_enqueue`).
EnqueueMany = Callable[[Sequence[tuple[str, str]]], None]
