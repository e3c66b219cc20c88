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

import functools
import json
import logging
import time
import uuid
from dataclasses import dataclass
from typing import Any

import redis
import urllib3.exceptions

from producer.events import Event, parse_event_json
from workers.backoff import compute_backoff_s, parse_retry_after
from workers.config import ConfigCache
from workers.destination_model import Destination
from workers.errors import DeliveryError, RefusedAddress
from workers.netsafety import AddressRules, parse_cidrs
from workers.metrics_keys import count_attempt
from workers.outcome import Outcome, is_delivered, is_retryable_status
from workers.records import attempt_record, dead_record
from workers.request import build_request, notification_id
from workers.schedule import Schedule
from workers.settings import Settings
from workers.transport import TlsConfig, Transport

log = logging.getLogger("recnotify.deliver")

NOTIFICATION_TTL_S = 3 * 24 * 3600


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


def describe(exc: BaseException) -> str:
    """A short, secret-free description of a transport error."""
    if isinstance(exc, urllib3.exceptions.ReadTimeoutError):
        return "timeout: no response in time"
    if isinstance(exc, urllib3.exceptions.ConnectTimeoutError):
        return "timeout: connecting"
    if isinstance(exc, urllib3.exceptions.SSLError):
        return f"TLS error: {exc}"
    if isinstance(exc, urllib3.exceptions.NewConnectionError):
        return "connection refused or unreachable"
    if isinstance(exc, urllib3.exceptions.ProtocolError):
        return "connection dropped: " + str(exc.args[0] if exc.args else exc)
    return f"{type(exc).__name__}: {exc}"


class Deliverer:
    """Everything a delivery needs, built once per worker process."""

    def __init__(self, settings: Settings, client: redis.Redis, config: ConfigCache,
                 transport: Transport, global_rules: AddressRules, store: Any) -> None:
        self.settings = settings
        self.keys = settings.keys
        self.redis = client
        self.config = config
        self.transport = transport
        self.global_rules = global_rules
        self.store = store
        self.schedule = Schedule(client, self.keys.schedule)

    # -- the task body -------------------------------------------------------------------
    def run(self, event_id: str, destination: str) -> Outcome | Retry | None:
        """Deliver once. Returns the outcome, a Retry for the task, or None (duplicate)."""
        nid = notification_id(event_id, destination)
        lock_token = uuid.uuid4().hex
        lock_ms = int((self.settings.max_countdown_s + 90) * 1000)
        pipe = self.redis.pipeline(transaction=False)
        pipe.get(self.keys.event(event_id))
        pipe.hgetall(self.keys.notification(nid))
        pipe.set(self.keys.lock(nid), lock_token, nx=True, px=lock_ms)
        raw_event, state, locked = pipe.execute()
        if state.get(b"state") in (b"delivered", b"dead"):
            log.info("notification %s to %s already %s; duplicate skipped", nid, destination,
                     state[b"state"].decode())
            if locked:
                self.redis.delete(self.keys.lock(nid))
            return None
        if not locked:
            log.info("notification %s to %s is being sent by another worker; duplicate skipped",
                     nid, destination)
            return None
        attempts_so_far = int(state.get(b"attempts", 0))
        try:
            return self._attempt(nid, event_id, destination, raw_event, attempts_so_far + 1)
        except Exception as exc:  # noqa: BLE001 - a bug or poison message: dead-letter it
            log.exception("notification %s to %s: unexpected error, dead-lettered", nid,
                          destination)
            self._finish_dead(nid, event_id, destination, raw_event, attempts_so_far + 1,
                              f"internal error: {type(exc).__name__}: {exc}", record=True,
                              kind="internal")
            return Outcome.DEAD
        finally:
            self._release(nid, lock_token)

    def _release(self, nid: str, token: str) -> None:
        key = self.keys.lock(nid)
        if self.redis.get(key) == token.encode():
            self.redis.delete(key)

    def _attempt(self, nid: str, event_id: str, destination: str, raw_event: bytes | None,
                 attempt: int) -> Outcome | Retry:
        dest = self.config.get(destination)
        if raw_event is None:
            return self._finish_dead(nid, event_id, destination, None, attempt,
                                     "event data not found in Redis (expired or lost)")
        if dest is None:
            return self._finish_dead(nid, event_id, destination, raw_event, attempt,
                                     f"destination {destination!r} no longer exists")
        if not dest.enabled:
            return self._finish_dead(nid, event_id, destination, raw_event, attempt,
                                     f"destination {destination!r} is disabled")
        event = parse_event_json(raw_event)
        now = time.time()
        try:
            request = build_request(event, dest, nid=nid, now_s=now)
        except DeliveryError as exc:
            return self._finish_dead(nid, event_id, destination, raw_event, attempt, str(exc),
                                     record=True)
        result = self._send(dest, request)
        if result.disable:
            self._disable(dest, nid)
        return self._conclude(nid, event, dest, raw_event, attempt, result)

    def _send(self, dest: Destination, request: Any) -> AttemptResult:
        rules = destination_rules(self.global_rules, dest.allow_cidrs, dest.deny_cidrs)
        tls = TlsConfig(dest.tls.verify, dest.tls.ca_bundle, dest.tls.client_cert,
                        dest.tls.client_key)
        started = time.perf_counter()
        try:
            response = self.transport.send(request, timeout_s=dest.timeout_s, rules=rules, tls=tls)
        except RefusedAddress as exc:
            return AttemptResult(None, str(exc), _ms(started), retryable=False)
        except DeliveryError as exc:
            return AttemptResult(None, str(exc), _ms(started), retryable=True)
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            return AttemptResult(None, describe(exc), _ms(started), retryable=True)
        status = response.status
        if is_delivered(status):
            return AttemptResult(status, None, response.latency_ms, retryable=False)
        retry_after = None
        if status in (429, 503):
            retry_after = parse_retry_after(_header(response.headers, "retry-after"), time.time())
        return AttemptResult(status, f"HTTP {status}", response.latency_ms,
                             retryable=is_retryable_status(status), retry_after_s=retry_after,
                             disable=status == 410)

    def _conclude(self, nid: str, event: Event, dest: Destination, raw_event: bytes,
                  attempt: int, result: AttemptResult) -> Outcome | Retry:
        if result.status is not None and is_delivered(result.status):
            outcome = Outcome.DELIVERED
        elif result.retryable and attempt < dest.retry.max_attempts:
            outcome = Outcome.RETRYING
        else:
            outcome = Outcome.DEAD
        entry = {"attempt": attempt, "at": time.time(), "status": result.status,
                 "error": result.error, "latency_ms": round(result.latency_ms, 2)}
        pipe = self.redis.pipeline(transaction=False)
        nkey = self.keys.notification(nid)
        pipe.hset(nkey, mapping={"attempts": attempt, "state": outcome.value,
                                 "event": event.id, "destination": dest.name})
        pipe.rpush(nkey + ":log", json.dumps(entry))
        pipe.expire(nkey, NOTIFICATION_TTL_S)
        pipe.expire(nkey + ":log", NOTIFICATION_TTL_S)
        pipe.rpush(self.keys.records, attempt_record(
            notification_id=nid, event_id=event.id, destination=dest.name,
            outcome=outcome.value, **entry))
        count_attempt(pipe, self.keys.metric, dest.name, outcome.value,
                      result.latency_ms if result.status is not None else None)
        pipe.execute()
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
        history = [json.loads(item) for item in self.redis.lrange(nkey + ":log", 0, -1)]
        pipe = self.redis.pipeline(transaction=False)
        pipe.hset(nkey, mapping={"state": Outcome.DEAD.value, "attempts": attempt,
                                 "event": event_id, "destination": destination})
        pipe.expire(nkey, NOTIFICATION_TTL_S)
        pipe.hincrby(self.keys.metric("dead_letters"), f"{destination}|{kind}", 1)
        pipe.rpush(self.keys.records, dead_record(
            notification_id=nid, event_id=event_id, destination=destination,
            event_json=raw_event.decode("utf-8", "replace") if raw_event else None,
            attempts_json=json.dumps(history), reason=reason, created_at=time.time()))
        pipe.execute()
        log.error("notification %s to %s dead-lettered: %s", nid, destination, reason)
        return Outcome.DEAD

    def _disable(self, dest: Destination, nid: str) -> None:
        log.error("destination %s answered 410 Gone (notification %s): destination disabled; "
                  "enable it again with `recnotify destinations enable %s`", dest.name, nid,
                  dest.name)
        self.redis.hincrby(self.keys.metric("disabled"), f"{dest.name}|410", 1)
        try:
            self.store.set_enabled(dest.name, False)
        except Exception as exc:  # noqa: BLE001
            log.error("could not disable destination %s: %s", dest.name, exc)


@functools.lru_cache(maxsize=4096)
def destination_rules(global_rules: AddressRules, allow: tuple[str, ...], deny: tuple[str, ...]
                      ) -> AddressRules:
    """The global outbound rules tightened by one destination's own (cached)."""
    return AddressRules.combine(global_rules, parse_cidrs(list(allow), where="allow_cidrs"),
                                parse_cidrs(list(deny), where="deny_cidrs"))


def _ms(started: float) -> float:
    return (time.perf_counter() - started) * 1000


def _header(headers: dict[str, str], name: str) -> str | None:
    for key, value in headers.items():
        if key.lower() == name:
            return value
    return None
