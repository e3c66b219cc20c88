"""``/api/destinations``, ``/api/parameters`` and ``/api/presets`` (SPEC 8).

Bodies are the fields of SPEC 4, validated by the same ``parse_destination``
as ``recnotify destinations import`` (same messages); secrets come back masked,
and a missing or masked secret on update keeps the stored one. ``PUT``
replaces the whole destination (fields not sent go back to their defaults);
``PATCH`` merges (RFC 7396: fields not sent stay as they are). The pydantic
models of :mod:`workers.destinations.schema` document the bodies.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends

from producer.events import EVENT_TYPES, parameter_reference
from workers.admin.auth import Actor, require_token
from workers.admin.bodies import merge_patch, optional_object, required_object
from workers.admin.errors import ApiError
from workers.admin.openapi import body_doc, errors_doc, ok_doc
from workers.admin.sample import send_test
from workers.admin.state import AdminState, get_state
from workers.destinations import PRESETS, Destination, parse_destination
from workers.destinations.schema import DestinationIn, DestinationOut, DestinationPatch
from workers.errors import DestinationExists, FieldError

router = APIRouter(prefix="/api", tags=["destinations"])

State = Annotated[AdminState, Depends(get_state)]
Caller = Annotated[Actor, Depends(require_token)]
Body = Annotated[dict[str, Any], Depends(required_object)]
OptionalBody = Annotated[dict[str, Any] | None, Depends(optional_object)]

EXAMPLE = {"name": "face-started", "events": ["RECORDING_STARTED_EVENT"],
           "scope": "route:support-line", "url": "https://10.0.0.5:8443/Face/eventNotify",
           "params": "event=AudioRecordingStarted&calledAors=%CALLEDAORS%&ucid=%UCID%"}
ONE = ok_doc(DestinationOut, "The destination, secrets masked")


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


def _same_name(name: str, data: dict[str, Any]) -> None:
    given = data.get("name", name)
    if given != name:
        raise ApiError(422, "name", f"destination {name!r}: name: {given!r} differs from the "
                       "name in the path (to rename, create the new one and delete this one)")


def _save(state: AdminState, caller: Actor, existing: Destination,
          dest: Destination) -> dict[str, Any]:
    changed = _changed_fields(existing, dest)
    state.store.save(dest)
    if changed == ["enabled"]:
        audit(state, caller, "enable" if dest.enabled else "disable", dest.name)
    elif changed:
        audit(state, caller, "update", dest.name, "changed: " + ", ".join(changed))
    return dest.to_dict()


@router.get("/destinations", summary="List destinations (secrets masked)",
            response_model=None, responses={**ok_doc(list[DestinationOut], "Every destination"),
                                            **errors_doc(401)})
def list_destinations(state: State, _caller: Caller) -> list[dict[str, Any]]:
    return [d.to_dict() for d in state.store.list_destinations()]


@router.post("/destinations", status_code=201, summary="Create a destination (409: name taken)",
             response_model=None, openapi_extra=body_doc(DestinationIn, EXAMPLE),
             responses={201: {"model": DestinationOut, "description": "Created"},
                        **errors_doc(401, 409, 422)})
def create_destination(body: Body, state: State, caller: Caller) -> dict[str, Any]:
    name = body.get("name")
    if isinstance(name, str) and name in {d.name for d in state.store.list_destinations()}:
        message = f"destination {name!r}: name: already exists (update it instead)"
        raise DestinationExists(name, [FieldError("name", name, message)])
    dest = parse_destination(body)
    state.store.create(dest)
    audit(state, caller, "create", dest.name, f"scope={dest.scope} events={len(dest.events)}")
    return dest.to_dict()


@router.get("/destinations/{name}", summary="One destination (secrets masked)",
            response_model=None, responses={**ONE, **errors_doc(401, 404)})
def get_destination(name: str, state: State, _caller: Caller) -> dict[str, Any]:
    return state.store.get(name).to_dict()


@router.put("/destinations/{name}", summary="Replace a destination (fields not sent: defaults)",
            response_model=None, openapi_extra=body_doc(DestinationIn, EXAMPLE),
            responses={**ONE, **errors_doc(401, 404, 422)})
def replace_destination(name: str, body: Body, state: State, caller: Caller) -> dict[str, Any]:
    existing = state.store.get(name)
    _same_name(name, body)
    data = {"name": name, **body}
    data.setdefault("enabled", existing.enabled)
    return _save(state, caller, existing, parse_destination(data, existing=existing))


@router.patch("/destinations/{name}", summary="Change some fields (merge: the rest stay)",
              response_model=None,
              openapi_extra=body_doc(DestinationPatch, {"url": "https://10.0.0.6:8443/hook",
                                                        "circuit": {"failures": 3}},
                                     media_types=("application/json",
                                                  "application/merge-patch+json")),
              responses={**ONE, **errors_doc(401, 404, 422)})
def patch_destination(name: str, body: Body, state: State, caller: Caller) -> dict[str, Any]:
    existing = state.store.get(name)
    _same_name(name, body)
    merged = merge_patch(existing.to_dict(), body)
    return _save(state, caller, existing, parse_destination(merged, existing=existing))


@router.delete("/destinations/{name}", summary="Delete a destination", response_model=None,
               responses={**ok_doc(dict[str, str], '{"deleted": NAME}'), **errors_doc(401, 404)})
def delete_destination(name: str, state: State, caller: Caller) -> dict[str, Any]:
    state.store.get(name)  # 404 when unknown
    state.store.remove(name)
    audit(state, caller, "delete", name)
    return {"deleted": name}


@router.post("/destinations/{name}/enable", summary="Enable a destination",
             response_model=None, responses={**ONE, **errors_doc(401, 404)})
def enable_destination(name: str, state: State, caller: Caller) -> dict[str, Any]:
    if state.store.set_enabled(name, True):
        audit(state, caller, "enable", name)
    return state.store.get(name).to_dict()


@router.post("/destinations/{name}/disable", summary="Disable a destination",
             response_model=None, responses={**ONE, **errors_doc(401, 404)})
def disable_destination(name: str, state: State, caller: Caller) -> dict[str, Any]:
    if state.store.set_enabled(name, False):
        audit(state, caller, "disable", name)
    return state.store.get(name).to_dict()


@router.post("/destinations/{name}/test", summary="Send a test notification (one attempt)",
             response_model=None,
             openapi_extra=body_doc(None, {"type": "RECORDING_STARTED_EVENT"}, required=False,
                                    schema={"type": "object", "additionalProperties": False,
                                            "properties": {"type": {"enum": list(EVENT_TYPES)}}}),
             responses={**ok_doc(None, "The rendered URL (userinfo masked) and the outcome",
                                 schema={"type": "object", "required": ["url", "outcome"]}),
                        **errors_doc(401, 404, 422)})
def test_destination(name: str, state: State, caller: Caller,
                     body: OptionalBody = None) -> dict[str, Any]:
    dest = state.store.get(name)
    unknown = sorted(set(body or {}) - {"type"})
    if unknown:
        raise ApiError(422, unknown[0], f"unknown field {unknown[0]!r} (give "
                       '{"type": EVENT_TYPE} or no body)')
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


@router.get("/parameters", tags=["reference"], response_model=None,
            summary="SPEC 2: every URL parameter by event type, with a description",
            responses={**ok_doc(dict[str, dict[str, str]], "Parameter descriptions by type"),
                       **errors_doc(401)})
def parameters(_caller: Caller) -> dict[str, dict[str, str]]:
    return parameter_reference()


@router.get("/presets", tags=["reference"], summary="The fields each preset fills in",
            response_model=None,
            responses={**ok_doc(dict[str, dict[str, Any]], "Fields by preset"),
                       **errors_doc(401)})
def presets(_caller: Caller) -> dict[str, dict[str, Any]]:
    return {name: dict(fields) for name, fields in PRESETS.items()}
