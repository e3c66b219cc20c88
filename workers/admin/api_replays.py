"""``POST /api/replays`` and ``GET /api/replays/{id}``: the backfill of SPEC 7 ``replay``.

A replay runs in a thread of the admin service; its checkpoint in Redis is its status
(:func:`workers.ops.backfill.read_job`), so ``GET`` answers from any admin instance and
a replay that stopped (the service restarted) is resumed by posting the same body again.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from producer.events import EVENT_TYPES
from workers.admin.api_destinations import Body, Caller, State, audit
from workers.admin.errors import ApiError
from workers.admin.openapi import body_doc, errors_doc, ok_doc
from workers.errors import ConfigError, InvalidValue
from workers.ops.backfill import Backfill, read_job
from workers.ops.selection import Selection, parse_when

router = APIRouter(prefix="/api", tags=["replays"])
log = logging.getLogger("recnotify.admin")

TEXT_FIELDS = ("since", "until", "account", "route", "realm", "ucid", "event_id", "type")
REPLAY_SCHEMA: dict[str, Any] = {
    "type": "object", "additionalProperties": False, "required": ["destination"],
    "description": "Send retained events that match the destination now (SPEC 7 replay).",
    "properties": {
        "destination": {"type": "string"},
        **{name: {"type": "string"} for name in TEXT_FIELDS if name != "type"},
        "type": {"type": "string", "enum": list(EVENT_TYPES)},
        "dry_run": {"type": "boolean", "default": False},
        "rate_per_s": {"type": "number", "exclusiveMinimum": 0},
    }}
JOB = {"type": "object", "required": ["id", "state"],
       "properties": {"id": {"type": "string"}, "state": {"type": "string", "enum": [
           "running", "interrupted", "failed", "done"]}}}


def _selection(body: dict[str, Any]) -> tuple[Selection, bool, float | None]:
    unknown = sorted(set(body) - {"destination", "dry_run", "rate_per_s", *TEXT_FIELDS})
    if unknown:
        raise ApiError(422, unknown[0], f"unknown field {unknown[0]!r} (the fields are "
                       "destination, since, until, account, route, realm, ucid, event_id, "
                       "type, dry_run, rate_per_s)")
    for name in ("destination", *TEXT_FIELDS):
        value = body.get(name)
        if value is not None and not isinstance(value, str):
            raise ApiError(422, name, f"{name}: {value!r} is not a string")
    if not body.get("destination"):
        raise ApiError(422, "destination", "destination: give the destination's name")
    dry_run, rate = body.get("dry_run", False), body.get("rate_per_s")
    if not isinstance(dry_run, bool):
        raise ApiError(422, "dry_run", f"dry_run: {dry_run!r} is not true or false")
    if rate is not None and (isinstance(rate, bool) or not isinstance(rate, int | float)
                             or rate <= 0):
        raise ApiError(422, "rate_per_s", f"rate_per_s: {rate!r} is not a number > 0")
    now_s = time.time()
    try:
        return Selection(
            destination=body["destination"],
            since_s=parse_when(body["since"], now_s=now_s, option="since")
            if body.get("since") else None,
            until_s=parse_when(body["until"], now_s=now_s, option="until")
            if body.get("until") else None,
            account=body.get("account"), route=body.get("route"), realm=body.get("realm"),
            ucid=body.get("ucid"), event_id=body.get("event_id"), type=body.get("type"),
            since=body.get("since") or None, until=body.get("until") or None,
        ), dry_run, rate
    except InvalidValue as exc:
        field = next((f for f in ("since", "until", "type") if f in str(exc)), "body")
        raise ApiError(422, field, str(exc)) from None


@router.post("/replays", summary="Replay retained events to one destination (a backfill)",
             response_model=None, status_code=202,
             openapi_extra=body_doc(None, {"destination": "crm", "since": "2h"},
                                    schema=REPLAY_SCHEMA),
             responses={202: {"description": "Started; poll the url", "content": {
                 "application/json": {"schema": JOB}}},
                 **ok_doc(None, "dry_run: the counts per event type", schema={
                     "type": "object"}),
                 **errors_doc(401, 404, 409, 422)})
def start_replay(state: State, caller: Caller, body: Body) -> Any:
    selection, dry_run, rate = _selection(body)
    dest = state.store.get(selection.destination)  # DestinationNotFound -> 404
    try:
        job = Backfill(state.settings, state.redis, dest, selection, state.enqueue,
                       store=state.store, rate_per_s=rate)
    except ConfigError as exc:
        raise ApiError(409, "destination", str(exc)) from None
    if dry_run:
        return JSONResponse({"dry_run": True, **job.plan().as_dict()}, status_code=200)
    current = read_job(state.redis, state.settings, job.job_id)
    try:
        job.acquire()  # here, not in the thread: a second POST gets its 409 now
    except ConfigError as exc:
        raise ApiError(409, "destination", f"{exc}; poll /api/replays/{job.job_id}") from None
    state.redis.hset(state.settings.keys.backfill(job.job_id), "state", "running")

    def work() -> None:
        try:
            job.run(locked=True)
        except Exception:  # its checkpoint says failed, with the reason
            log.exception("replay %s failed", job.job_id)

    thread = threading.Thread(target=work, name=f"replay-{job.job_id}", daemon=True)
    state.backfills[job.job_id] = thread
    thread.start()
    audit(state, caller, "replay", selection.destination,
          f"backfill {job.job_id} {'resumed' if current else 'started'}")
    return JSONResponse({"id": job.job_id, "state": "running",
                         "url": f"/api/replays/{job.job_id}"}, status_code=202)


@router.get("/replays/{job_id}", summary="A replay's progress", response_model=None,
            responses={**ok_doc(None, "Its state and counts", schema=JOB),
                       **errors_doc(401, 404)})
def replay_status(job_id: str, state: State, _caller: Caller) -> dict[str, Any]:
    job = read_job(state.redis, state.settings, job_id)
    if job is None:
        raise ApiError(404, "id", f"no replay {job_id!r} (replays are kept for 7 days)")
    return job
