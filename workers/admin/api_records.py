"""``/api/attempts``, ``/api/dead-letters``, ``/api/events/{id}`` and ``/api/audit``."""

from __future__ import annotations

import time
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query

from workers.admin.api_destinations import Caller, State, audit
from workers.admin.bodies import optional_object
from workers.admin.errors import ApiError
from workers.admin.openapi import body_doc, errors_doc, ok_doc
from workers.ops.replay import purge_dead_letters, replay_dead_letters
from workers.ops.tracing import trace_event

router = APIRouter(prefix="/api", tags=["records"])

ReplayBody = Annotated[dict[str, Any] | None, Depends(optional_object)]
REPLAY_DOC = body_doc(None, {"destination": "crm"}, required=False, schema={
    "type": "object", "additionalProperties": False,
    "description": '{"destination": NAME} for one destination\'s dead letters, {} for all.',
    "properties": {"destination": {"type": "string"}}})
ROWS = {"type": "array", "items": {"type": "object"}}
COUNT = {"type": "object", "additionalProperties": {"type": "integer"}}
#: Larger offsets overflow the database's integers (and page past any real table).
MAX_OFFSET = 1_000_000_000
#: Dead letters are paged in memory (the store reads the first offset + limit rows).
MAX_DEAD_LETTER_OFFSET = 100_000


def iso(at: float | None) -> str | None:
    if at is None:
        return None
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(at)) + f".{int(at % 1 * 1000):03d}Z"


def _attempt_out(row: dict[str, Any]) -> dict[str, Any]:
    return {**row, "time": iso(row.get("at"))}


def _dead_letter_out(row: dict[str, Any]) -> dict[str, Any]:
    out = {k: v for k, v in row.items() if k not in ("event_json", "attempts_json")}
    out["time"] = iso(row.get("created_at"))
    return out


@router.get("/attempts", summary="Delivery attempts, newest first", response_model=None,
            responses={**ok_doc(None, "Attempt records", schema=ROWS), **errors_doc(401, 422)})
def list_attempts(state: State, _caller: Caller,
                  destination: str | None = None, notification_id: str | None = None,
                  event_id: str | None = None,
                  limit: Annotated[int, Query(ge=1, le=1000)] = 50,
                  offset: Annotated[int, Query(ge=0, le=MAX_OFFSET)] = 0
                  ) -> list[dict[str, Any]]:
    rows = state.store.list_attempts(destination=destination, notification_id=notification_id,
                                     event_id=event_id, limit=limit, offset=offset)
    return [_attempt_out(r) for r in rows]


@router.get("/dead-letters", summary="Dead letters, oldest first", response_model=None,
            responses={**ok_doc(None, "Dead letters", schema=ROWS), **errors_doc(401, 422)})
def list_dead_letters(state: State, _caller: Caller, destination: str | None = None,
                      limit: Annotated[int, Query(ge=1, le=10000)] = 1000,
                      offset: Annotated[int, Query(ge=0, le=MAX_DEAD_LETTER_OFFSET)] = 0
                      ) -> list[dict[str, Any]]:
    rows = state.store.list_dead_letters(destination=destination, limit=offset + limit)
    return [_dead_letter_out(r) for r in rows[offset:]]


def _replay(state: State, destination: str | None = None,
            ids: list[int] | None = None) -> int:
    return replay_dead_letters(state.settings, state.store, state.redis, state.enqueue,
                               destination=destination, ids=ids)


@router.post("/dead-letters/replay", summary="Replay dead letters (one destination's, or all)",
             response_model=None, openapi_extra=REPLAY_DOC,
             responses={**ok_doc(None, '{"replayed": N}', schema=COUNT),
                        **errors_doc(401, 422)})
def replay_many(state: State, caller: Caller, body: ReplayBody = None) -> dict[str, Any]:
    body = body or {}
    unknown = sorted(set(body) - {"destination"})
    if unknown:
        raise ApiError(422, unknown[0], f"unknown field {unknown[0]!r} (give "
                       '{"destination": NAME} or {} for all)')
    destination = body.get("destination")
    if destination is not None and not isinstance(destination, str):
        raise ApiError(422, "destination", f"destination: {destination!r} is not a name")
    count = _replay(state, destination=destination)
    audit(state, caller, "replay", destination, f"{count} dead letter(s)")
    return {"replayed": count}


@router.post("/dead-letters/{letter_id}/replay", summary="Replay one dead letter",
             response_model=None,
             responses={**ok_doc(None, '{"replayed": N}', schema=COUNT),
                        **errors_doc(401, 404, 422)})
def replay_one(letter_id: int, state: State, caller: Caller) -> dict[str, Any]:
    letters = [d for d in state.store.list_dead_letters() if d["id"] == letter_id]
    if not letters:
        raise ApiError(404, "id", f"no dead letter with id {letter_id}")
    count = _replay(state, ids=[letter_id])
    audit(state, caller, "replay", letters[0].get("destination"), f"dead letter {letter_id}")
    return {"replayed": count}


@router.delete("/dead-letters", summary="Purge dead letters (one destination's, or all)",
               response_model=None,
               responses={**ok_doc(None, '{"purged": N}', schema=COUNT),
                          **errors_doc(401, 422)})
def purge(state: State, caller: Caller, destination: str | None = None) -> dict[str, Any]:
    count = purge_dead_letters(state.settings, state.store, state.redis, state.enqueue,
                               destination=destination)
    audit(state, caller, "purge", destination, f"{count} dead letter(s)")
    return {"purged": count}


@router.get("/events/{event_id}", summary="Trace an event: its notifications and attempts",
            response_model=None,
            responses={**ok_doc(None, "The trace of SPEC 7", schema={
                "type": "object", "required": ["event_id", "notifications"]}),
                **errors_doc(401, 404)})
def trace(event_id: str, state: State, _caller: Caller) -> dict[str, Any]:
    result = trace_event(state.settings, event_id, client=state.redis, store=state.store)
    if result["event"] is None and not result["notifications"]:
        raise ApiError(404, "event_id", f"no event {event_id!r} in Redis nor in the records")
    return result


@router.get("/audit", summary="The audit log of changes, newest first", response_model=None,
            responses={**ok_doc(None, "Audit entries", schema=ROWS), **errors_doc(401, 422)})
def audit_log(state: State, _caller: Caller,
              limit: Annotated[int, Query(ge=1, le=1000)] = 100) -> list[dict[str, Any]]:
    return [{**r, "time": iso(r.get("at"))} for r in state.store.list_audit(limit)]
