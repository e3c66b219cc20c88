"""A per-destination circuit breaker shared by every worker through Redis.

State lives in one hash per destination (``Keys.circuit(name)``):

- ``failures``: consecutive retryable failures (connection errors, timeouts,
  5xx, 408, 429); any answer that is not one of those resets it;
- ``opened_at``: set while the circuit is open (server time, seconds);
- ``probe_until``: while set, one worker holds the half-open probe lease;
- ``state``: ``open`` or ``half-open`` (absent: closed), read by /metrics.

With ``open_set``, the names of destinations whose circuit is open are also kept in
that Redis set (added when it opens, removed when it closes), so the stream consumer
can park their notifications at dispatch with one SMEMBERS (workers/parking.py).

``closed`` -> (``failures`` reaches the destination's ``circuit.failures``) ->
``open`` -> (``reset_s`` later) -> ``half-open``: exactly one attempt (the
probe) is let through, under a lease so a worker that dies mid-probe does not
wedge the circuit -> success closes it, a failure re-opens it for ``reset_s``.

Every transition runs in one Lua script on Redis' own clock, so all workers
see one state and no two probes run at once. ``queue_admit``/``queue_success``
put the admit and success scripts on a caller's pipeline (EVALSHA, executed with
``raise_on_error=False``), so a delivery pays no round trip of its own for them;
``admission``/``success_reply`` read their replies (a NOSCRIPT reply, after Redis
lost its script cache, runs the script directly instead).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import redis
import redis.client
import redis.exceptions

log = logging.getLogger("recnotify.circuit")

#: Idle circuit hashes expire after this long (a closed circuit keeps no state).
STATE_TTL_S = 24 * 3600

_NOW = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
"""

# KEYS[1] circuit hash; ARGV[1] reset_s, ARGV[2] probe lease s.
# Returns {verdict, wait_s, failures}: verdict 0 closed (go), 1 probe (go), 2 open (wait);
# failures 0 when closed with no failure counted (a success then has nothing to reset).
_ADMIT = _NOW + """
local opened = tonumber(redis.call('HGET', KEYS[1], 'opened_at') or '')
if not opened then return {0, '0', redis.call('HEXISTS', KEYS[1], 'failures')} end
local reset = tonumber(ARGV[1])
if now < opened + reset then return {2, tostring(opened + reset - now)} end
local probe = tonumber(redis.call('HGET', KEYS[1], 'probe_until') or '')
if probe and probe > now then return {2, tostring(probe - now)} end
redis.call('HSET', KEYS[1], 'probe_until', now + tonumber(ARGV[2]), 'state', 'half-open')
return {1, '0'}
"""

# KEYS[1] circuit hash, KEYS[2] (optional) open set; ARGV[1] failures threshold, ARGV[2]
# ttl s, ARGV[3] destination. Returns 1 when this failure opened it, 2 when it re-opened.
_FAILURE = _NOW + """
local n = redis.call('HINCRBY', KEYS[1], 'failures', 1)
redis.call('EXPIRE', KEYS[1], tonumber(ARGV[2]))
local opened = redis.call('HGET', KEYS[1], 'opened_at')
if opened then
  if redis.call('HGET', KEYS[1], 'probe_until') then
    redis.call('HSET', KEYS[1], 'opened_at', now, 'state', 'open')
    redis.call('HDEL', KEYS[1], 'probe_until')
    if KEYS[2] then redis.call('SADD', KEYS[2], ARGV[3]) end
    return 2
  end
  return 0
end
if n >= tonumber(ARGV[1]) then
  redis.call('HSET', KEYS[1], 'opened_at', now, 'state', 'open')
  if KEYS[2] then redis.call('SADD', KEYS[2], ARGV[3]) end
  return 1
end
return 0
"""

# KEYS[1] circuit hash, KEYS[2] (optional) open set; ARGV[1] destination.
# Returns 1 when this success closed an open circuit.
_SUCCESS = """
local was_open = redis.call('HEXISTS', KEYS[1], 'opened_at')
if was_open == 1 or redis.call('HEXISTS', KEYS[1], 'failures') == 1 then
  redis.call('DEL', KEYS[1])
end
if was_open == 1 and KEYS[2] then redis.call('SREM', KEYS[2], ARGV[1]) end
return was_open
"""

# KEYS[1]: give the probe lease back (the circuit stays open, another worker may probe).
_RELEASE = """
if redis.call('HDEL', KEYS[1], 'probe_until') == 1 then
  redis.call('HSET', KEYS[1], 'state', 'open')
end
return 0
"""


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

    @property
    def allowed(self) -> bool:
        return self.verdict is not Verdict.OPEN


class CircuitBreaker:
    """Circuit state of every destination, in Redis under ``key_for(name)``."""

    def __init__(self, client: redis.Redis, key_for: Callable[[str], str],
                 *, probe_lease_s: float = 60.0, open_set: str | None = None) -> None:
        self.client = client
        self._key_for = key_for
        self._open_set = [open_set] if open_set else []
        self.probe_lease_s = probe_lease_s
        self._admit = client.register_script(_ADMIT)
        self._failure = client.register_script(_FAILURE)
        self._success = client.register_script(_SUCCESS)
        self._release = client.register_script(_RELEASE)

    def key(self, destination: str) -> str:
        return self._key_for(destination)

    def admit(self, destination: str, reset_s: float) -> Admission:
        """May an attempt to ``destination`` go now? (At most one probe when half-open.)"""
        return _admission(self._admit(keys=[self.key(destination)],
                                      args=[reset_s, self.probe_lease_s]))

    def queue_admit(self, pipe: redis.client.Pipeline, destination: str, reset_s: float
                    ) -> None:
        """Queue :meth:`admit` on ``pipe``; read its reply with :meth:`admission`."""
        pipe.evalsha(self._admit.sha, 1, self.key(destination), reset_s, self.probe_lease_s)

    def admission(self, reply: Any, destination: str, reset_s: float) -> Admission:
        """The :class:`Admission` of a reply to :meth:`queue_admit`."""
        if isinstance(reply, redis.exceptions.NoScriptError):
            return self.admit(destination, reset_s)  # not run: Redis lost its scripts
        if isinstance(reply, Exception):
            raise reply
        return _admission(reply)

    def record_failure(self, destination: str, threshold: int, reset_s: float) -> None:
        """A retryable failure: count it; open (or re-open after a failed probe)."""
        opened = int(self._failure(keys=[self.key(destination), *self._open_set],
                                   args=[threshold, int(max(reset_s * 4, STATE_TTL_S)),
                                         destination]))
        if opened == 1:
            log.error("circuit of destination %s OPEN after %d consecutive failures; its "
                      "notifications wait (no attempts spent) and a probe goes in %g s",
                      destination, threshold, reset_s)
        elif opened == 2:
            log.warning("circuit of destination %s: probe failed, open for another %g s",
                        destination, reset_s)

    def record_success(self, destination: str) -> None:
        """The destination answered: close the circuit and reset the failure count."""
        if int(self._success(keys=[self.key(destination), *self._open_set],
                             args=[destination])):
            log.warning("circuit of destination %s CLOSED: probe succeeded", destination)

    def queue_success(self, pipe: redis.client.Pipeline, destination: str) -> None:
        """Queue :meth:`record_success` on ``pipe``; pass its reply to :meth:`success_reply`."""
        pipe.evalsha(self._success.sha, 1 + len(self._open_set), self.key(destination),
                     *self._open_set, destination)

    def success_reply(self, reply: Any, destination: str) -> None:
        if isinstance(reply, redis.exceptions.NoScriptError):
            self.record_success(destination)  # not run: Redis lost its scripts
            return
        if isinstance(reply, Exception):
            raise reply
        if int(reply):
            log.warning("circuit of destination %s CLOSED: probe succeeded", destination)

    def release_probe(self, destination: str) -> None:
        """A probe lease taken but not used (no attempt made): let another worker probe."""
        self._release(keys=[self.key(destination)])

    def state(self, destination: str) -> str:
        """``closed``, ``open`` or ``half-open`` (for tests and the admin surface)."""
        raw: bytes | None = self.client.hget(self.key(destination), "state")  # type: ignore[assignment]
        return raw.decode() if raw else "closed"


_VERDICTS = {0: Verdict.CLOSED, 1: Verdict.PROBE, 2: Verdict.OPEN}


def _admission(reply: Any) -> Admission:
    verdict = _VERDICTS[int(reply[0])]
    clean = verdict is Verdict.CLOSED and len(reply) > 2 and int(reply[2]) == 0
    return Admission(verdict, float(reply[1]), clean)
