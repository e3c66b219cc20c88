"""A per-destination circuit breaker shared by every worker through Redis.

State lives in one hash per destination (``Keys.circuit(name)``):

- ``failures``: consecutive retryable failures (connection errors, timeouts,
  5xx, 408, 429); any answer that is not one of those resets it;
- ``opened_at``: set while the circuit is open (server time, seconds);
- ``probe_until``: while set, one worker holds the half-open probe lease;
- ``probe_at``: when the current (or last) probe was admitted;
- ``probe_failed_at``, ``probe_error``: when the last failed probe of this open period
  that counts was made, and how it failed (the parking lot buries only notifications
  parked before it: SPEC 6 "Circuit"). A probe counts when its notification had been
  attempted before: a receiver that refuses only first attempts (and accepts retries)
  must not have every parked notification buried because a fresh one was the probe;
- ``state``: ``open`` or ``half-open`` (absent: closed), read by /metrics.

The names of destinations whose circuit is open are also kept in the Redis set
``Keys.circuits_open`` (added when it opens, removed when it closes), so the stream consumer
can park their notifications at dispatch with one SMEMBERS (workers/state/parking.py).

``closed`` -> (``failures`` reaches the destination's ``circuit.failures``) ->
``open`` -> (``reset_s`` later) -> ``half-open``: exactly one attempt (the
probe) is let through, under a lease so a worker that dies mid-probe does not
wedge the circuit -> success closes it, a failure re-opens it for ``reset_s``.

Every transition runs in one Lua script (``workers/state/lua/circuit_*.lua``) on
Redis' own clock, so all workers see one state and no two probes run at once.
``queue_admit``/``queue_success`` put the admit and success scripts on a caller's
:class:`~workers.state.scripts.Batch`, so a delivery pays no round trip of its own
for them; ``admission``/``success_reply`` read their replies. ``queue_peek`` is the
delivery's first look (a closed circuit, the common case, is one ``HMGET``); only an
open or half-open one runs the admit script.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import redis

from workers.config.keys import Keys
from workers.state.codec import as_text
from workers.state.scripts import Batch, Scripts

log = logging.getLogger("recnotify.circuit")

#: Idle circuit hashes expire after this long (a closed circuit keeps no state).
STATE_TTL_S = 24 * 3600


class Verdict(StrEnum):
    CLOSED = "closed"  # send
    PROBE = "probe"  # send: the single half-open attempt
    OPEN = "open"  # do not send; wait


@dataclass(frozen=True, slots=True)
class Admission:
    verdict: Verdict
    wait_s: float = 0.0
    #: Closed with no failure counted: a success need not be reported (no round trip).
    clean: bool = False
    #: Open: when the last failed probe of this open period was made (None: none failed).
    probe_failed_at: float | None = None
    #: How that probe failed (secret-free, e.g. ``HTTP 503``).
    probe_error: str = ""

    @property
    def allowed(self) -> bool:
        return self.verdict is not Verdict.OPEN


class CircuitBreaker:
    """Circuit state of every destination, in Redis under ``key_for(name)``."""

    def __init__(self, client: redis.Redis, keys: Keys, *, probe_lease_s: float = 60.0
                 ) -> None:
        self.client = client
        self._key_for = keys.circuit
        self._open_set = keys.circuits_open
        self.probe_lease_s = probe_lease_s
        self.scripts = Scripts.of(client)

    def key(self, destination: str) -> str:
        return self._key_for(destination)

    def admit(self, destination: str, reset_s: float) -> Admission:
        """May an attempt to ``destination`` go now? (At most one probe when half-open.)"""
        return _admission(self.scripts.run("circuit_admit", [self.key(destination)],
                                           [reset_s, self.probe_lease_s]))

    def queue_admit(self, pipe: Batch, destination: str, reset_s: float) -> int:
        """Queue :meth:`admit` on ``pipe``; read its reply with :meth:`admission`."""
        return pipe.script("circuit_admit", [self.key(destination)],
                           [reset_s, self.probe_lease_s])

    def admission(self, reply: Any) -> Admission:
        """The :class:`Admission` of a reply to :meth:`queue_admit`."""
        return _admission(reply)

    def queue_peek(self, pipe: Batch, destination: str) -> int:
        """Queue a look at the circuit on ``pipe`` (one ``HMGET``, no script); read its
        reply with :meth:`peeked`. It answers for a closed circuit only, what
        ``circuit_admit.lua``'s first line would (that path changes nothing): an open or
        half-open one needs :meth:`admit` (its script decides on the probe)."""
        pipe.hmget(self.key(destination), "opened_at", "failures")
        return len(pipe) - 1

    def peeked(self, reply: Any) -> Admission | None:
        """A closed circuit's :class:`Admission` from a :meth:`queue_peek` reply; None when
        it is open or half-open (then ask :meth:`admit`)."""
        opened_at, failures = reply
        if opened_at:
            return None
        return Admission(Verdict.CLOSED, 0.0, clean=failures is None)

    def record_failure(self, destination: str, threshold: int, reset_s: float, *,
                       probe: bool = False, counts: bool = True, error: str = "") -> None:
        """A retryable failure: count it; open, or (``probe``: it was the half-open
        attempt) re-open. With ``counts`` (the probe had been attempted before: its failure
        is not merely a receiver refusing a first attempt), remember when that probe was
        made and how it failed: the parking lot buries only after such a probe."""
        opened = int(self.scripts.run(
            "circuit_failure", [self.key(destination), self._open_set],
            [threshold, int(max(reset_s * 4, STATE_TTL_S)), destination, 1 if probe else 0,
             error[:200], 1 if counts else 0]))
        if opened == 1:
            log.error("circuit of destination %s OPEN after %d consecutive failures; its "
                      "notifications wait (no attempts spent) and a probe goes in %g s",
                      destination, threshold, reset_s)
        elif opened == 2:
            log.warning("circuit of destination %s: probe failed, open for another %g s",
                        destination, reset_s)

    def record_success(self, destination: str) -> None:
        """The destination answered: close the circuit and reset the failure count."""
        self.success_reply(self.scripts.run("circuit_success",
                                            [self.key(destination), self._open_set],
                                            [destination]), destination)

    def queue_success(self, pipe: Batch, destination: str) -> int:
        """Queue :meth:`record_success` on ``pipe``; pass its reply to :meth:`success_reply`."""
        return pipe.script("circuit_success", [self.key(destination), self._open_set],
                           [destination])

    def success_reply(self, reply: Any, destination: str) -> None:
        if int(reply):
            log.warning("circuit of destination %s CLOSED: probe succeeded", destination)

    def release_probe(self, destination: str) -> None:
        """A probe lease taken but not used (no attempt made): let another worker probe."""
        self.scripts.run("circuit_release_probe", [self.key(destination)])


_VERDICTS = {0: Verdict.CLOSED, 1: Verdict.PROBE, 2: Verdict.OPEN}


def _admission(reply: Any) -> Admission:
    verdict = _VERDICTS[int(reply[0])]
    third = reply[2] if len(reply) > 2 else b""
    if verdict is Verdict.CLOSED:
        return Admission(verdict, float(reply[1]), clean=int(third) == 0)
    failed, why = as_text(third), as_text(reply[3]) if len(reply) > 3 else ""
    return Admission(verdict, float(reply[1]), probe_failed_at=float(failed) if failed else None,
                     probe_error=why)
