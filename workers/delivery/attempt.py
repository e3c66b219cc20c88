"""The pieces of one delivery attempt that need no Redis state of their own.

Value types (the notification's hold on its lock and circuit probe, a retry request,
an attempt's result), the error description a receiver's operator reads, the
per-destination outbound rules, and small helpers. ``workers.delivery.deliverer`` uses them.
"""

from __future__ import annotations

import functools
import random
import time
from dataclasses import dataclass, field
from enum import StrEnum

import redis
import urllib3.exceptions

from workers.destinations.backoff import parse_retry_after
from workers.destinations.expiry import Expiry
from workers.destinations.model import Destination, url_userinfo
from workers.errors import DeliveryError, RefusedAddress
from workers.http.netsafety import AddressRules, parse_cidrs
from workers.http.outcome import is_delivered, is_retryable_status
from workers.http.request import OutboundRequest
from workers.http.transport import Transport
from workers.state.circuit import Admission
from workers.state.notification import EnqueueMany

#: A notification's lock outlives its destination's timeout by this much (then it expires).
LOCK_MARGIN_S = 30.0
#: Re-queue wait of a task that met a Redis outage (it is not an attempt).
REDIS_OUTAGE_RETRY_S = 2.0
#: How long a task that met a Redis outage waits for Redis before re-queueing itself.
REDIS_OUTAGE_WAIT_S = 30.0
REDIS_DOWN = (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError,
               redis.exceptions.BusyLoadingError)
class Chore(StrEnum):
    """End-of-run work that a run's last pipeline may already have done."""

    #: The notification's watchdog entry is in step (moved, or removed).
    WATCHDOG = "watchdog"
    #: An ordered notification's recording went on (its next head was released).
    ORDER = "order"


@dataclass(slots=True)
class Lease:
    """What one task run holds, to give back by the end of the run: the notification's
    lock, the circuit's half-open probe lease, and a success the circuit must hear."""

    lock_key: str
    token: str
    lock: bool = False
    probe: bool = False
    success_due: bool = False


@dataclass(slots=True)
class Run:
    """The notification one task run is about, and what its last pipeline already did."""

    event_id: str
    destination: str
    nid: str
    lease: Lease
    #: Enqueues the next notification of an ordered recording (None: not asked to).
    enqueue: EnqueueMany | None = None
    raw_event: bytes | None = None
    #: This attempt's number (the attempts so far + 1).
    attempt: int = 1
    first_at: float = 0.0
    given: Given | None = None
    done: set[Chore] = field(default_factory=set)
    #: When an operator last replayed it (restarts the expiry clock: destinations/expiry.py).
    replayed_at: float | None = None
    #: Its destination's ``expire_after_s`` for its event (None: it never expires).
    expiry: Expiry | None = None
    #: This attempt's span context (its record links the flush span to it; None: off).
    traceparent: str | None = None
    #: The fields of its hash when this run took the lock (the conclude script skips the
    #: writes that would change nothing: attempt_conclude.lua ARGV[12..14]).
    fields: frozenset[bytes] | None = None
    #: When its task message was enqueued (its header; None: not known).
    enqueued_at_s: float | None = None


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
    #: The start of the receiver's answer (secrets of the destination masked).
    response: str = ""


@dataclass(frozen=True, slots=True)
class Given:
    """What the first pipeline learnt besides the event and the state: the destination it
    was read for, its circuit admission (None: not asked), the ordered sequence number."""

    dest: Destination | None
    admission: Admission | None
    seq: bytes | None
    #: Since when it has waited on its destination's open circuit (None: it does not).
    circuit_since: float | None = None
    #: How long it waited on open circuits before this attempt, in all: the retry span
    #: of its attempts is counted without those waits.
    circuit_waited_s: float = 0.0


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
    excerpt = mask_secrets(response.excerpt, dest)
    if is_delivered(status):
        return AttemptResult(status, None, response.latency_ms, retryable=False,
                             response=excerpt)
    retry_after = None
    if status in (429, 503):
        retry_after = parse_retry_after(header_value(response.headers, "retry-after"),
                                        time.time())
    return AttemptResult(status, f"HTTP {status}", response.latency_ms,
                         retryable=is_retryable_status(status), retry_after_s=retry_after,
                         disable=status == 410, response=excerpt)


def mask_secrets(text: str, dest: Destination) -> str:
    """``text`` with every secret of ``dest`` replaced by ``****``: a receiver that echoes
    the request (its headers, its URL) must not put a secret into a record or the page."""
    if not text or not dest.has_secrets:
        return text
    secrets = [s for s, _ in dest.old_secrets] + [h.value for h in dest.headers if h.secret]
    if dest.secret:
        secrets.append(dest.secret)
        secrets.append(dest.secret.removeprefix("whsec_"))
    if dest.auth is not None:
        secrets.append(dest.auth.credential)
    userinfo = url_userinfo(dest.url)
    if userinfo:
        secrets.extend(part for part in userinfo.split(":") if part)
    for secret in sorted({s for s in secrets if len(s) >= 4}, key=len, reverse=True):
        text = text.replace(secret, "****")
    return text
