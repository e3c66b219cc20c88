""""Send test notification": one synthetic event, one attempt, sent right away.

The event is built with :func:`producer.events.validate_event` from sample
values valid for its type, on the destination's own scope; the request is
rendered, signed and sent exactly like a worker's (same request builder,
transport and outbound rules), but synchronously and without retries. The
attempt is recorded with the destination's other attempts.
"""

from __future__ import annotations

import time
from typing import Any

import urllib3.exceptions

from producer.events import LIST_PARAMS, RESERVED_PARAMS, Event, params_for, validate_event
from workers.admin.state import AdminState
from workers.deliver import describe, destination_rules
from workers.destination_model import Destination, mask_userinfo
from workers.errors import DeliveryError, RefusedAddress
from workers.outcome import is_delivered
from workers.request import build_request, notification_id
from workers.templates import render_url
from workers.transport import TlsConfig

#: Sample values by parameter name (every name of SPEC 2 that producers supply).
SAMPLE_PARAMS: dict[str, str | int] = {
    "UCID": "test-ucid-0001@recnotify",
    "CALLID": "test-call-0001@recnotify",
    "SESSIONID": "test-session-0001",
    "RECORDINGID": "test-recording-0001",
    "CALLINGAOR": "sip:caller@example.com",
    "RSS": "rss-test",
    "STARTTIME": "2026-01-01T12:00:00.000Z",
    "PAUSETIME": "2026-01-01T12:01:00.000Z",
    "RESUMETIME": "2026-01-01T12:01:05.000Z",
    "ENDTIME": "2026-01-01T12:02:00.000Z",
    "PAUSEDURATION": 5,
    "DURATION": 120,
    "SEGMENTCOUNT": 1,
    "SEGMENTID": "test-segment-0001",
    "SEQUENCE": 1,
    "FILENAME": "test-segment-0001.wav",
    "FILESIZE": 1920044,
}
SAMPLE_LIST = ["sip:called@example.com"]


def sample_event(event_type: str, dest: Destination) -> Event:
    """A valid event of ``event_type`` on ``dest``'s scope, with a sample for every param."""
    params: dict[str, Any] = {}
    for name in sorted(params_for(event_type) - RESERVED_PARAMS):
        params[name] = list(SAMPLE_LIST) if name in LIST_PARAMS else SAMPLE_PARAMS[name]
    data: dict[str, Any] = {"type": event_type, "params": params}
    kind, _, value = dest.scope.partition(":")
    if kind in ("route", "account", "realm"):
        data[kind] = value
    return validate_event(data)


def send_test(state: AdminState, dest: Destination, event_type: str) -> dict[str, Any]:
    """Send one test notification; returns the rendered URL (userinfo masked) and outcome."""
    event = sample_event(event_type, dest)
    nid = notification_id(event.id, dest.name)
    now = time.time()
    url = mask_userinfo(render_url(dest.url, dest.template_for(event.type), event.values()))
    status: int | None = None
    error: str | None = None
    started = time.perf_counter()
    try:
        request = build_request(event, dest, nid=nid, now_s=now)
        rules = destination_rules(state.global_rules, dest.allow_cidrs, dest.deny_cidrs)
        tls = TlsConfig(dest.tls.verify, dest.tls.ca_bundle, dest.tls.client_cert,
                        dest.tls.client_key)
        response = state.transport.send(request, timeout_s=dest.timeout_s, rules=rules, tls=tls)
        status = response.status
        latency_ms = response.latency_ms
        if not is_delivered(status):
            error = f"HTTP {status}"
    except (RefusedAddress, DeliveryError) as exc:
        error, latency_ms = str(exc), _ms(started)
    except (urllib3.exceptions.HTTPError, OSError) as exc:
        error, latency_ms = describe(exc), _ms(started)
    outcome = "delivered" if status is not None and is_delivered(status) else "failed"
    state.store.add_attempts([{
        "notification_id": nid, "event_id": event.id, "destination": dest.name, "attempt": 1,
        "at": now, "status": status, "error": error, "latency_ms": round(latency_ms, 2),
        "outcome": outcome,
    }])
    return {"url": url, "status": status, "error": error, "latency_ms": round(latency_ms, 2),
            "outcome": outcome, "event_id": event.id, "notification_id": nid,
            "type": event.type}


def _ms(started: float) -> float:
    return (time.perf_counter() - started) * 1000
