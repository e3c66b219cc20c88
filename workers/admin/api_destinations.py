"""``/api/destinations``, ``/api/parameters`` and ``/api/presets`` (SPEC 8).

Bodies are the fields of SPEC 4, validated by the same ``parse_destination``
as ``recnotify destinations import`` (same messages); secrets come back masked,
and a missing or masked secret on update keeps the stored one.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends

from producer.events import EVENT_TYPES, parameter_reference
from workers.admin.auth import Actor, require_token
from workers.admin.errors import ApiError
from workers.admin.state import AdminState, get_state
from workers.admin.test_send import send_test
from workers.destinations import PRESETS, Destination, parse_destination
from workers.errors import DestinationExists, FieldError

router = APIRouter(prefix="/api", tags=["destinations"])

State = Annotated[AdminState, Depends(get_state)]
Caller = Annotated[Actor, Depends(require_token)]
DestinationBody = Annotated[dict[str, Any], Body(
    description="The fields of SPEC section 4 (name, events, scope, url, params, ...).",
    examples=[{"name": "face-started", "events": ["RECORDING_STARTED_EVENT"],
               "scope": "route:support-line", "url": "https://10.0.0.5:8443/Face/eventNotify",
               "params": "event=AudioRecordingStarted&calledAors=%CALLEDAORS%&ucid=%UCID%"}])]
TestBody = Annotated[dict[str, Any] | None, Body(
    description='{"type": EVENT_TYPE}; default: the destination\'s first event type.',
    examples=[{"type": "RECORDING_STARTED_EVENT"}])]


def audit(state: AdminState, caller: Actor, action: str, target: str | None,
          detail: str | None = None) -> None:
    """Record one change in the audit log (never with secret values)."""
    state.store.add_audit(action, actor=caller.name, remote_addr=caller.remote_addr,
                          target=target, detail=detail)


def _changed_fields(old: Destination, new: Destination) -> list[str]:
    before, after = old.to_dict(), new.to_dict()
    changed = sorted(k for k in set(before) | set(after) if before.get(k) != after.get(k))
    if old.secret != new.secret and "secret" not in changed:
        changed.append("secret")
    return changed


@router.get("/destinations", summary="List destinations (secrets masked)")
def list_destinations(state: State, _caller: Caller) -> list[dict[str, Any]]:
    return [d.to_dict() for d in state.store.list_destinations()]


@router.post("/destinations", status_code=201, summary="Create a destination (409: name taken)")
def create_destination(body: DestinationBody, state: State, caller: Caller) -> dict[str, Any]:
    name = body.get("name")
    if isinstance(name, str) and name in {d.name for d in state.store.list_destinations()}:
        message = f"destination {name!r}: name: already exists (update it instead)"
        raise DestinationExists(name, [FieldError("name", name, message)])
    dest = parse_destination(body)
    state.store.create(dest)
    audit(state, caller, "create", dest.name, f"scope={dest.scope} events={len(dest.events)}")
    return dest.to_dict()


@router.get("/destinations/{name}", summary="One destination (secrets masked)")
def get_destination(name: str, state: State, _caller: Caller) -> dict[str, Any]:
    return state.store.get(name).to_dict()


@router.put("/destinations/{name}", summary="Replace a destination's fields")
def update_destination(name: str, body: DestinationBody, state: State,
                       caller: Caller) -> dict[str, Any]:
    existing = state.store.get(name)
    data = dict(body)
    given = data.setdefault("name", name)
    if given != name:
        raise ApiError(422, "name", f"destination {name!r}: name: {given!r} differs from the "
                       "name in the path (to rename, create the new one and delete this one)")
    data.setdefault("enabled", existing.enabled)
    dest = parse_destination(data, existing=existing)
    changed = _changed_fields(existing, dest)
    state.store.save(dest)
    if changed == ["enabled"]:
        audit(state, caller, "enable" if dest.enabled else "disable", name)
    elif changed:
        audit(state, caller, "update", name, "changed: " + ", ".join(changed))
    return dest.to_dict()


@router.delete("/destinations/{name}", summary="Delete a destination")
def delete_destination(name: str, state: State, caller: Caller) -> dict[str, Any]:
    state.store.get(name)  # 404 when unknown
    state.store.remove(name)
    audit(state, caller, "delete", name)
    return {"deleted": name}


@router.post("/destinations/{name}/enable", summary="Enable a destination")
def enable_destination(name: str, state: State, caller: Caller) -> dict[str, Any]:
    if state.store.set_enabled(name, True):
        audit(state, caller, "enable", name)
    return state.store.get(name).to_dict()


@router.post("/destinations/{name}/disable", summary="Disable a destination")
def disable_destination(name: str, state: State, caller: Caller) -> dict[str, Any]:
    if state.store.set_enabled(name, False):
        audit(state, caller, "disable", name)
    return state.store.get(name).to_dict()


@router.post("/destinations/{name}/test", summary="Send a test notification (one attempt)")
def test_destination(name: str, state: State, caller: Caller,
                     body: TestBody = None) -> dict[str, Any]:
    dest = state.store.get(name)
    event_type = (body or {}).get("type", dest.events[0] if dest.events else None)
    if event_type not in EVENT_TYPES:
        raise ApiError(422, "type", f"unknown event type {event_type!r} (expected one of "
                       f"{', '.join(EVENT_TYPES)})")
    if event_type not in dest.events:
        raise ApiError(422, "type", f"destination {name!r} does not take {event_type} "
                       f"(its events: {', '.join(dest.events)})")
    result = send_test(state, dest, event_type)
    audit(state, caller, "test", name, f"{event_type}: {result['outcome']}")
    return result


@router.get("/parameters", tags=["reference"],
            summary="SPEC 2: every URL parameter by event type, with a description")
def parameters(_caller: Caller) -> dict[str, dict[str, str]]:
    return parameter_reference()


@router.get("/presets", tags=["reference"], summary="The fields each preset fills in")
def presets(_caller: Caller) -> dict[str, dict[str, Any]]:
    return {name: dict(fields) for name, fields in PRESETS.items()}
