"""``/api/status`` and ``/api/events?ucid=``: what an operator asks first (issue 15).

Per destination: its circuit state (``closed``, ``half-open``, ``open``), how many
notifications are parked behind an open circuit and how many wait (for a retry, a rate
limit, the in-flight cap, or parked: ``Keys.waiting``), the success rate of the last
hour's attempts and the last error. Redis is read in one pipelined round trip
for all destinations; the attempts come from the records (at most
:data:`RATE_WINDOW_ROWS` per destination).
"""

from __future__ import annotations

import time
from typing import Annotated, Any

from fastapi import APIRouter, Query

from workers.admin.api_destinations import Caller, State
from workers.admin.api_records import iso
from workers.admin.errors import ApiError
from workers.admin.openapi import errors_doc, ok_doc
from workers.admin.state import AdminState
from workers.ops.tracing import event_ids_for_ucid
from workers.state.codec import as_text

router = APIRouter(prefix="/api", tags=["status"])

RATE_WINDOW_S = 3600.0
RATE_WINDOW_ROWS = 1000
CIRCUIT_NAMES = {"0": "closed", "1": "half-open", "2": "open"}
STATUS_ROW = {"type": "object", "required": ["destination", "circuit", "parked"], "properties": {
    "destination": {"type": "string"},
    "circuit": {"enum": ["closed", "half-open", "open"]},
    "parked": {"type": "integer"},
    "waiting": {"type": "integer"},
    "attempts_1h": {"type": "integer"},
    "success_rate_1h": {"type": ["number", "null"]},
    "last_error": {"type": ["object", "null"]},
}}

def _circuit(raw: Any) -> str:
    """The breaker's state as stored (a name, or 0/1/2); no key means closed."""
    text = as_text(raw).lower() if raw is not None else "closed"
    return CIRCUIT_NAMES.get(text, text if text in CIRCUIT_NAMES.values() else "closed")


def _circuits_and_parked(state: AdminState, names: list[str]
                         ) -> list[tuple[str, int, int]]:
    """Two pipelined round trips for every destination: key types, parked and waiting
    counts, then the breakers' states (a hash with ``state``, or a plain string)."""
    if not names:
        return []
    keys = state.settings.keys
    pipe = state.redis.pipeline(transaction=False)
    for name in names:
        pipe.type(keys.circuit(name))
        pipe.zcard(keys.parked(name))
        pipe.scard(keys.waiting(name))
    raw = pipe.execute()
    kinds, parked = [as_text(k) for k in raw[0::3]], [int(n) for n in raw[1::3]]
    waiting = [int(n) for n in raw[2::3]]
    read = state.redis.pipeline(transaction=False)
    for name, kind in zip(names, kinds, strict=True):
        if kind == "hash":
            read.hget(keys.circuit(name), "state")
        elif kind == "string":
            read.get(keys.circuit(name))
        else:
            read.echo("closed")
    return [(_circuit(v), n, w)
            for v, n, w in zip(read.execute(), parked, waiting, strict=True)]


def _last_error(rows: list[dict[str, Any]]) -> dict[str, Any] | None:
    row = next((r for r in rows if r.get("outcome") != "delivered"), None)
    if row is None:
        return None
    return {"time": iso(row.get("at")), "status": row.get("status"), "error": row.get("error"),
            "outcome": row.get("outcome"), "notification_id": row.get("notification_id"),
            "event_id": row.get("event_id")}


@router.get("/status", summary="Per destination: circuit, parked, success rate (1 h), last error",
            response_model=None,
            responses={**ok_doc(None, "One row per destination", schema={
                "type": "array", "items": STATUS_ROW}), **errors_doc(401)})
def status(state: State, _caller: Caller) -> list[dict[str, Any]]:
    names = [d.name for d in state.store.list_destinations()]
    since = time.time() - RATE_WINDOW_S
    out = []
    for name, (circuit, parked, waiting) in zip(names, _circuits_and_parked(state, names),
                                                strict=True):
        recent = state.store.list_attempts(destination=name, limit=RATE_WINDOW_ROWS)
        hour = [r for r in recent if (r.get("at") or 0) >= since]
        delivered = sum(1 for r in hour if r.get("outcome") == "delivered")
        out.append({
            "destination": name, "circuit": circuit, "parked": parked, "waiting": waiting,
            "attempts_1h": len(hour),
            "success_rate_1h": round(delivered / len(hour), 4) if hour else None,
            "last_error": _last_error(recent),
        })
    return out


@router.get("/events", summary="Event ids of a recording (by UCID), newest retained",
            response_model=None,
            responses={**ok_doc(None, "The event ids", schema={
                "type": "array", "items": {"type": "string"}}), **errors_doc(401, 404, 422)})
def events_by_ucid(state: State, _caller: Caller,
                   ucid: Annotated[str, Query(min_length=1, max_length=1000)]) -> list[str]:
    ids = event_ids_for_ucid(state.settings, ucid, store=state.store, client=state.redis)
    if not ids:
        raise ApiError(404, "ucid", f"no retained event has UCID {ucid!r} (the database "
                       "keeps events for RECNOTIFY_EVENT_RETENTION_DAYS)")
    return ids
