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

from producer.events import LIST_PARAMS, RESERVED_PARAMS, Event, params_for, validate_event
from workers.admin.state import AdminState
from workers.delivery.attempt import AttemptResult, send_once
from workers.delivery.authed import send_authed
from workers.delivery.tokens import TokenCache
from workers.destinations.model import Destination, mask_userinfo
from workers.errors import DeliveryError
from workers.http.outcome import is_delivered
from workers.http.request import build_request, notification_id
from workers.http.templates import render_url

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
#: Tokens of destinations with auth, in the admin process's memory only.
TOKENS = TokenCache()


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
    try:
        request = build_request(event, dest, nid=nid, now_s=now)
    except DeliveryError as exc:  # e.g. the rendered URL is over 8 KiB
        result = AttemptResult(None, str(exc), 0.0, retryable=False)
    else:
        result = (send_once(state.transport, state.global_rules, dest, request)
                  if dest.auth is None else
                  send_authed(state.transport, state.global_rules, dest, request, TOKENS,
                              event.to_json().encode("utf-8")))
    status, error, latency_ms = result.status, result.error, result.latency_ms
    outcome = "delivered" if status is not None and is_delivered(status) else "failed"
    state.store.add_attempts([{
        "notification_id": nid, "event_id": event.id, "destination": dest.name, "attempt": 1,
        "at": now, "status": status, "error": error, "latency_ms": round(latency_ms, 2),
        "outcome": outcome,
    }])
    answer = {"url": url, "status": status, "error": error, "latency_ms": round(latency_ms, 2),
              "outcome": outcome, "event_id": event.id, "notification_id": nid,
              "type": event.type}
    if dest.filter is not None:  # sent either way: the test is of the receiver
        answer["filter_passes"] = dest.filter.matches(event)
    return answer

