"""The pieces of one delivery attempt that need no Redis state of their own.

Value types (the notification's hold on its lock and circuit probe, a retry request,
an attempt's result), the error description a receiver's operator reads, the
per-destination outbound rules, and small helpers. ``workers.deliver`` uses them.
"""

from __future__ import annotations

import functools
import json
import random
import time
from dataclasses import dataclass
from typing import Any

import redis
import urllib3.exceptions

from workers.backoff import max_span_s, parse_retry_after
from workers.circuit import Admission
from workers.destination_model import Destination
from workers.errors import DeliveryError, RefusedAddress
from workers.metrics_keys import count_attempt
from workers.netsafety import AddressRules, parse_cidrs
from workers.ordering import EnqueueMany
from workers.outcome import Outcome, is_delivered, is_retryable_status
from workers.records import dead_record
from workers.request import OutboundRequest
from workers.settings import Keys
from workers.transport import Transport

NOTIFICATION_TTL_S = 3 * 24 * 3600
#: A notification's lock outlives its destination's timeout by this much (then it expires).
LOCK_MARGIN_S = 30.0
#: Re-queue wait of a task that met a Redis outage (it is not an attempt).
REDIS_OUTAGE_RETRY_S = 2.0
#: How long a task that met a Redis outage waits for Redis before re-queueing itself.
REDIS_OUTAGE_WAIT_S = 30.0
REDIS_DOWN = (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError,
               redis.exceptions.BusyLoadingError)
# KEYS[1] lock; ARGV[1] token: release the lock only if this run still holds it.
UNLOCK_SCRIPT = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""

#: An attempt's outcome, written in one script call (13 commands as a pipeline cost the
#: client more than the delivery's HTTP request): the notification's state and log, the
#: attempt record, the counters (workers/metrics_keys.py), and when it is delivered, the
#: watchdog entry's removal and the lock's release.
#: KEYS: notification hash, its log, records list, metric notifications, metric latency,
#: schedule, lock. ARGV: attempts, state, event id, destination, first_at, log entry,
#: record, ttl_s, latency bucket ('' without an answer), latency ms, schedule member
#: ('' to keep it), lock token ('' to keep the lock). Returns 1 when it released the lock.
CONCLUDE_SCRIPT = """
redis.call('HSET', KEYS[1], 'attempts', ARGV[1], 'state', ARGV[2], 'event', ARGV[3],
           'destination', ARGV[4])
redis.call('HSETNX', KEYS[1], 'first_at', ARGV[5])
redis.call('RPUSH', KEYS[2], ARGV[6])
redis.call('EXPIRE', KEYS[1], ARGV[8])
redis.call('EXPIRE', KEYS[2], ARGV[8])
redis.call('RPUSH', KEYS[3], ARGV[7])
redis.call('HINCRBY', KEYS[4], ARGV[4] .. '|' .. ARGV[2], 1)
if ARGV[9] ~= '' then
  redis.call('HINCRBY', KEYS[5], ARGV[4] .. '|' .. ARGV[9], 1)
  redis.call('HINCRBYFLOAT', KEYS[5], ARGV[4] .. '|sum', ARGV[10])
  redis.call('HINCRBY', KEYS[5], ARGV[4] .. '|count', 1)
end
if ARGV[11] ~= '' then redis.call('ZREM', KEYS[6], ARGV[11]) end
if ARGV[12] ~= '' then
  if redis.call('GET', KEYS[7]) == ARGV[12] then redis.call('DEL', KEYS[7]) end
  return 1
end
return 0
"""


@dataclass(slots=True)
class Hold:
    """What one run of the task holds, and which of its chores a pipeline already did.

    Pipelines run with ``raise_on_error=False`` (see :func:`check_replies`), so a script
    queued as EVALSHA that Redis no longer knows (NOSCRIPT) is simply run again
    directly; ``finally`` does whatever is still owed.
    """

    destination: str
    lock_key: str
    token: str
    locked: bool = False
    #: The lock is released (or was never taken).
    released: bool = False
    #: Holds the circuit's half-open probe lease and has not used it yet.
    probing: bool = False
    #: The destination answered (not a retryable failure): the circuit must hear it.
    success_due: bool = False
    #: The circuit was closed with no failure counted when admitted: nothing to reset.
    circuit_clean: bool = False
    #: The schedule's watchdog entry is already in step (see Deliverer._watch).
    watched: bool = False
    #: Enqueues the next notification of an ordered recording (None: not asked to).
    enqueue: EnqueueMany | None = None
    #: An ordered notification's finish (workers.ordering) already ran in a pipeline.
    finished: bool = False


@dataclass(frozen=True, slots=True)
class Retry:
    """Tell the task to retry after ``countdown_s`` (short waits only)."""

    countdown_s: float


@dataclass(frozen=True, slots=True)
class AttemptResult:
    status: int | None
    error: str | None
    latency_ms: float
    retryable: bool
    retry_after_s: float | None = None
    disable: bool = False


@dataclass(frozen=True, slots=True)
class Given:
    """What the first pipeline learnt besides the event and the state: the destination it
    was read for, its circuit admission (None: not asked), the ordered sequence number."""

    dest: Destination | None
    admission: Admission | None
    seq: bytes | None


def describe(exc: BaseException) -> str:
    """A short, secret-free description of a transport error."""
    if isinstance(exc, urllib3.exceptions.ReadTimeoutError):
        return "timeout: no response in time"
    # before ConnectTimeoutError, which urllib3 makes it subclass: a refusal is no timeout
    if isinstance(exc, urllib3.exceptions.NewConnectionError):
        reason = getattr(exc, "__cause__", None) or getattr(exc, "__context__", None)
        detail = getattr(reason, "strerror", None)
        return "connection refused or unreachable" + (f" ({detail})" if detail else "")
    if isinstance(exc, urllib3.exceptions.ConnectTimeoutError):
        return "timeout: connecting"
    if isinstance(exc, urllib3.exceptions.SSLError):
        return f"TLS error: {exc}"
    if isinstance(exc, urllib3.exceptions.ProtocolError):
        return "connection dropped: " + str(exc.args[0] if exc.args else exc)
    return f"{type(exc).__name__}: {exc}"



@functools.lru_cache(maxsize=4096)
def destination_rules(global_rules: AddressRules, allow: tuple[str, ...], deny: tuple[str, ...]
                      ) -> AddressRules:
    """The global outbound rules tightened by one destination's own (cached)."""
    return AddressRules.combine(global_rules, parse_cidrs(list(allow), where="allow_cidrs"),
                                parse_cidrs(list(deny), where="deny_cidrs"))


def span_s(dest: Destination) -> float:
    """How long a notification may take from its first try to delivered or dead.

    The retry policy's span; at least one circuit reset period, so even a
    single-attempt destination gets one probe after its circuit opened.
    """
    return max(max_span_s(dest.retry), dest.circuit.reset_s)


def check_replies(replies: list[Any]) -> list[Any]:
    """A pipeline's replies (executed with ``raise_on_error=False``): raise its first error,
    except NOSCRIPT, which the reader of that EVALSHA's reply handles."""
    for reply in replies:
        if isinstance(reply, redis.exceptions.ResponseError) and not isinstance(
                reply, redis.exceptions.NoScriptError):
            raise reply
    return replies


def event_json_text(raw_event: bytes | None) -> str | None:
    """The event for a dead letter: its JSON, or (a poison entry) its text as a JSON string."""
    if raw_event is None:
        return None
    text = raw_event.decode("utf-8", "replace")
    try:
        json.loads(text)
    except ValueError:
        return json.dumps(text[:65536])
    return text


def queue_waiting(pipe: redis.client.Pipeline, keys: Keys, *, nid: str, event_id: str,
                  destination: str, first_at: float, why: str) -> None:
    """Queue on ``pipe`` what marks a notification as waiting (no attempt spent): its
    state with the reason, its first try's time, and the ``waiting`` counter."""
    nkey = keys.notification(nid)
    pipe.hset(nkey, mapping={"state": Outcome.WAITING.value, "event": event_id,
                             "destination": destination, "waiting": why})
    pipe.hsetnx(nkey, "first_at", first_at)
    pipe.expire(nkey, NOTIFICATION_TTL_S)
    count_attempt(pipe, keys.metric, destination, Outcome.WAITING.value, None)


def queue_dead_letter(pipe: redis.client.Pipeline, keys: Keys, *, nid: str, event_id: str,
                      destination: str, raw_event: bytes | None, attempts: int,
                      history: list[bytes], reason: str, kind: str) -> None:
    """Queue on ``pipe`` what makes a notification a dead letter: its state, the
    ``dead_letters`` counter (``kind``: final, exhausted, circuit, ...) and the record
    with the event and every attempt (``history``: its log's entries)."""
    nkey = keys.notification(nid)
    pipe.hset(nkey, mapping={"state": Outcome.DEAD.value, "attempts": attempts,
                             "event": event_id, "destination": destination})
    pipe.expire(nkey, NOTIFICATION_TTL_S)
    pipe.hincrby(keys.metric("dead_letters"), f"{destination}|{kind}", 1)
    pipe.rpush(keys.records, dead_record(
        notification_id=nid, event_id=event_id, destination=destination,
        event_json=event_json_text(raw_event),
        attempts_json=json.dumps([json.loads(h) for h in history]), reason=reason,
        created_at=time.time()))


def jitter(wait_s: float) -> float:
    """``wait_s`` plus up to 20 %, so parked notifications do not all wake at once."""
    return wait_s * random.uniform(1.0, 1.2)


def elapsed_ms(started: float) -> float:
    return (time.perf_counter() - started) * 1000


def header_value(headers: dict[str, str], name: str) -> str | None:
    for key, value in headers.items():
        if key.lower() == name:
            return value
    return None


def send_once(transport: Transport, global_rules: AddressRules, dest: Destination,
              request: OutboundRequest) -> AttemptResult:
    """Send ``request`` once and classify the answer (SPEC 6).

    2xx delivered; connection errors, timeouts, 5xx, 408 and 429 retryable (with a
    ``Retry-After`` on 429/503); a refused address and every other status final; 410
    asks for the destination to be disabled.
    """
    rules = destination_rules(global_rules, dest.allow_cidrs, dest.deny_cidrs)
    started = time.perf_counter()
    try:
        response = transport.send(request, timeout_s=dest.timeout_s, rules=rules, tls=dest.tls)
    except RefusedAddress as exc:
        return AttemptResult(None, str(exc), elapsed_ms(started), retryable=False)
    except DeliveryError as exc:
        return AttemptResult(None, str(exc), elapsed_ms(started), retryable=True)
    except (urllib3.exceptions.HTTPError, OSError) as exc:
        return AttemptResult(None, describe(exc), elapsed_ms(started), retryable=True)
    status = response.status
    if is_delivered(status):
        return AttemptResult(status, None, response.latency_ms, retryable=False)
    retry_after = None
    if status in (429, 503):
        retry_after = parse_retry_after(header_value(response.headers, "retry-after"),
                                        time.time())
    return AttemptResult(status, f"HTTP {status}", response.latency_ms,
                         retryable=is_retryable_status(status), retry_after_s=retry_after,
                         disable=status == 410)
