"""The event contract (SPEC sections 1 and 2): types, parameters, validation.

Pure: no Redis, no I/O. ``validate_event`` is the one gate every event passes,
whether it comes from :class:`producer.Publisher` or from a foreign producer's
``XADD`` read by a worker.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from producer.constants import MAX_EVENT_BYTES, SCHEMA_VERSION
from producer.errors import InvalidEvent

EVENT_TYPES: tuple[str, ...] = (
    "RECORDING_STARTED_EVENT",
    "RECORDING_PAUSED_EVENT",
    "RECORDING_RESUMED_EVENT",
    "RECORDING_ENDED_EVENT",
    "SEGMENT_STARTED_EVENT",
    "SEGMENT_ENDED_EVENT",
)

RESULTS: tuple[str, ...] = ("success", "failure")

#: Parameters every event type has (SPEC 2), with a one-line description.
COMMON_PARAMS: dict[str, str] = {
    "EVENT": "event type name, e.g. RECORDING_STARTED_EVENT",
    "EVENTID": "the event id (UUID)",
    "RESULT": "success or failure",
    "ERROR": "reason of a failure (empty on success)",
    "TIMESTAMP": "when it happened: ISO 8601 UTC, e.g. 2026-11-24T20:01:02.123Z",
    "UCID": "universal call id",
    "CALLID": "SIP Call-ID",
    "SESSIONID": "recording session id",
    "RECORDINGID": "recording id",
    "CALLINGAOR": "calling address of record",
    "CALLEDAORS": "called addresses of record (list; rendered comma-joined)",
    "ACCOUNT": "the event's account (scope key)",
    "ROUTE": "the event's route (scope key)",
    "REALM": "the event's realm (scope key)",
    "RSS": "recorder (Record and Store Server) id",
}

#: Parameters each event type adds to the common set (SPEC 2).
TYPE_PARAMS: dict[str, dict[str, str]] = {
    "RECORDING_STARTED_EVENT": {"STARTTIME": "recording start time"},
    "RECORDING_PAUSED_EVENT": {"PAUSETIME": "pause time"},
    "RECORDING_RESUMED_EVENT": {
        "RESUMETIME": "resume time",
        "PAUSEDURATION": "length of the pause (s)",
    },
    "RECORDING_ENDED_EVENT": {
        "STARTTIME": "recording start time",
        "ENDTIME": "recording end time",
        "DURATION": "recording length (s)",
        "SEGMENTCOUNT": "number of segments",
    },
    "SEGMENT_STARTED_EVENT": {
        "SEGMENTID": "segment id",
        "SEQUENCE": "segment sequence number",
        "FILENAME": "segment file name",
        "STARTTIME": "segment start time",
    },
    "SEGMENT_ENDED_EVENT": {
        "SEGMENTID": "segment id",
        "SEQUENCE": "segment sequence number",
        "FILENAME": "segment file name",
        "STARTTIME": "segment start time",
        "ENDTIME": "segment end time",
        "DURATION": "segment length (s)",
        "FILESIZE": "segment file size (bytes)",
    },
}

#: Filled from the event's own fields; producers may not give them in ``params``.
RESERVED_PARAMS: frozenset[str] = frozenset(
    {"EVENT", "EVENTID", "RESULT", "ERROR", "TIMESTAMP", "ACCOUNT", "ROUTE", "REALM"}
)

#: The only parameter that may be a list.
LIST_PARAMS: frozenset[str] = frozenset({"CALLEDAORS"})

#: Hostile-input limits: more parameters than this, or a longer CALLEDAORS list, is refused.
MAX_PARAMS = 64
MAX_LIST_ITEMS = 256
#: Bad values are quoted in messages up to this many characters.
_SHOWN_CHARS = 120


def params_for(event_type: str) -> frozenset[str]:
    """Every placeholder name valid for ``event_type`` (common + its own)."""
    return frozenset(COMMON_PARAMS) | frozenset(TYPE_PARAMS[event_type])


def parameter_reference() -> dict[str, dict[str, str]]:
    """SPEC 2 as data: event type -> {parameter: description}, common ones first."""
    return {t: {**COMMON_PARAMS, **TYPE_PARAMS[t]} for t in EVENT_TYPES}


ParamValue = str | int | list[str]

_UTC_MS_FORMAT = "%Y-%m-%dT%H:%M:%S.%fZ"
_SCOPE_FIELDS = ("route", "account", "realm")
_KNOWN_FIELDS = frozenset(
    {"schema", "type", "result", "error", "route", "account", "realm", "params", "id",
     "occurred_at", "traceparent"}
)
#: W3C trace context, version 00 (lowercase hex; ids not all zeros: checked below).
_TRACEPARENT_RE = re.compile(r"00-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}")


def format_timestamp(moment: datetime) -> str:
    """``2026-11-24T20:01:02.123Z``: UTC, milliseconds, ``Z``."""
    if moment.tzinfo is None:
        raise InvalidEvent("occurred_at", moment, f"occurred_at {_show(moment)} has no time zone")
    try:
        utc = moment.astimezone(UTC)
    except OverflowError:
        raise InvalidEvent(
            "occurred_at", moment,
            f"occurred_at {_show(moment.isoformat())} is outside the years 1-9999 once "
            "converted to UTC (give a real time, e.g. 2026-11-24T20:01:02.123Z)",
        ) from None
    return utc.strftime(_UTC_MS_FORMAT)[:-4] + "Z"


def now_timestamp() -> str:
    return format_timestamp(datetime.now(UTC))


@dataclass(frozen=True, slots=True)
class Event:
    """One validated recording event (SPEC 1)."""

    type: str
    id: str
    occurred_at: str
    result: str = "success"
    error: str | None = None
    route: str | None = None
    account: str | None = None
    realm: str | None = None
    params: dict[str, ParamValue] = field(default_factory=dict)
    #: W3C trace context (SPEC 1): the recorder's, or the publish span's (producer/tracing.py).
    traceparent: str | None = None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "schema": SCHEMA_VERSION,
            "id": self.id,
            "type": self.type,
            "result": self.result,
            "error": self.error,
            "occurred_at": self.occurred_at,
            "route": self.route,
            "account": self.account,
            "realm": self.realm,
            "params": dict(self.params),
        }
        if self.traceparent is not None:  # absent, not null: untraced events keep their bytes
            out["traceparent"] = self.traceparent
        return out

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), ensure_ascii=False, separators=(",", ":"))

    def values(self) -> dict[str, str]:
        """Every placeholder value as text (SPEC 2/5): lists comma-joined, ints decimal."""
        out: dict[str, str] = {
            "EVENT": self.type,
            "EVENTID": self.id,
            "RESULT": self.result,
            "ERROR": self.error or "",
            "TIMESTAMP": self.occurred_at,
            "ACCOUNT": self.account or "",
            "ROUTE": self.route or "",
            "REALM": self.realm or "",
        }
        for name, value in self.params.items():
            out[name] = ",".join(value) if isinstance(value, list) else str(value)
        return out

    def ordering_key(self) -> str | None:
        """The recording this event belongs to (UCID, else SESSIONID, else RECORDINGID)."""
        for name in ("UCID", "SESSIONID", "RECORDINGID"):
            value = self.params.get(name)
            if value not in (None, "", []):
                return f"{name}:{value}"
        return None


def _show(value: Any) -> str:
    """``repr(value)``, cut short: a hostile value must not flood a message or a log line."""
    try:
        text = repr(value)
    except RecursionError:
        text = f"<{type(value).__name__} nested too deeply>"
    if len(text) <= _SHOWN_CHARS:
        return text
    return f"{text[:_SHOWN_CHARS]}... ({len(text)} characters)"


def _check_text(field_name: str, value: Any, *, allow_none: bool = True) -> str | None:
    if value is None and allow_none:
        return None
    if not isinstance(value, str):
        raise InvalidEvent(
            field_name, value,
            f"{field_name} must be a string, got {type(value).__name__} {_show(value)}",
        )
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidEvent(
            field_name, value, f"{field_name} {_show(value)} is not valid UTF-8 text"
        ) from None
    return value


def _check_param(event_type: str, name: Any, value: Any) -> ParamValue:
    if not isinstance(name, str):
        raise InvalidEvent("params", name, f"params: parameter name {_show(name)} is not a string")
    where = f"params.{name}"
    if name in RESERVED_PARAMS:
        raise InvalidEvent(
            where, name, f"params: {_show(name)} comes from the event's own fields; do not give it"
        )
    if name not in params_for(event_type):
        valid = ", ".join(sorted(params_for(event_type) - RESERVED_PARAMS))
        raise InvalidEvent(
            where, name,
            f"params: {_show(name)} is not a parameter of {event_type} (valid: {valid})",
        )
    if isinstance(value, bool) or not isinstance(value, str | int | list):
        raise InvalidEvent(
            where, value,
            f"{where} must be a string or an integer, got {type(value).__name__} {_show(value)}",
        )
    if isinstance(value, list):
        if name not in LIST_PARAMS:
            raise InvalidEvent(
                where, value, f"{where}: only CALLEDAORS may be a list, got {_show(value)}"
            )
        if len(value) > MAX_LIST_ITEMS:
            raise InvalidEvent(
                where, len(value),
                f"{where} has {len(value)} items, over the limit of {MAX_LIST_ITEMS}",
            )
        for item in value:
            _check_text(where, item, allow_none=False)
        return list(value)
    if isinstance(value, str):
        _check_text(where, value)
    return value


def _check_occurred_at(value: Any) -> str:
    if isinstance(value, datetime):
        return format_timestamp(value)
    text = _check_text("occurred_at", value, allow_none=False)
    assert text is not None
    try:
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise InvalidEvent(
            "occurred_at", value,
            f"occurred_at {_show(value)} is not ISO 8601 (expected e.g. 2026-11-24T20:01:02.123Z)",
        ) from None
    if parsed.tzinfo is None:
        raise InvalidEvent(
            "occurred_at", value, f"occurred_at {_show(value)} has no time zone (add Z for UTC)"
        )
    return format_timestamp(parsed)


def _check_id(value: Any) -> str:
    text = _check_text("id", value, allow_none=False)
    assert text is not None
    try:
        return str(uuid.UUID(text))
    except ValueError:
        raise InvalidEvent("id", value, f"id {_show(value)} is not a UUID") from None


def _check_traceparent(value: Any) -> str | None:
    text = _check_text("traceparent", value)
    if text is None:
        return None
    if (not _TRACEPARENT_RE.fullmatch(text) or text[3:35] == "0" * 32
            or text[36:52] == "0" * 16):
        raise InvalidEvent(
            "traceparent", value,
            f"traceparent {_show(value)} is not a W3C trace context (expected "
            "00-<32 hex trace id>-<16 hex parent id>-<2 hex flags>, lowercase, ids not all "
            "zeros)",
        )
    return text


def validate_event(
    data: Mapping[str, Any],
    *,
    default_id: str | None = None,
    default_occurred_at: str | None = None,
) -> Event:
    """Check ``data`` against SPEC 1/2 and return the :class:`Event`.

    Raises :class:`InvalidEvent` (a ``ValueError``) naming the field and the bad value.
    ``default_id``/``default_occurred_at`` fill a missing ``id``/``occurred_at``; without
    them a fresh UUID and the current time are used.
    """
    if not isinstance(data, Mapping):
        raise InvalidEvent("event", data, f"an event must be a JSON object, got {_show(data)}")
    unknown = sorted(str(k) for k in data if k not in _KNOWN_FIELDS)
    if unknown:
        raise InvalidEvent(unknown[0], data[unknown[0]], f"unknown event field {_show(unknown[0])}")
    schema = data.get("schema", SCHEMA_VERSION)
    if type(schema) is not int or schema != SCHEMA_VERSION:  # not 1.0, "1" or true
        raise InvalidEvent(
            "schema", schema, f"schema {_show(schema)} is not supported (expected 1)"
        )
    event_type = data.get("type")
    if event_type not in EVENT_TYPES:
        raise InvalidEvent(
            "type", event_type,
            f"unknown event type {_show(event_type)} (expected one of {', '.join(EVENT_TYPES)})",
        )
    result = data.get("result")
    if result is None:  # absent or null: the default
        result = "success"
    if not isinstance(result, str) or result not in RESULTS:  # not false, 0 or ""
        raise InvalidEvent(
            "result", result, f"result {_show(result)} must be 'success' or 'failure'"
        )
    error = _check_text("error", data.get("error"))
    if result == "success" and error is not None:
        raise InvalidEvent(
            "error", error, f"error {_show(error)} given on a success result (use result='failure')"
        )
    scopes = {name: _check_text(name, data.get(name)) for name in _SCOPE_FIELDS}
    raw_params = data.get("params")
    if raw_params is None:
        raw_params = {}
    if not isinstance(raw_params, Mapping):
        raise InvalidEvent(
            "params", raw_params, f"params must be an object, got {_show(raw_params)}"
        )
    if len(raw_params) > MAX_PARAMS:
        raise InvalidEvent(
            "params", len(raw_params),
            f"params has {len(raw_params)} entries, over the limit of {MAX_PARAMS}",
        )
    params = {name: _check_param(event_type, name, v) for name, v in raw_params.items()}
    raw_id = data.get("id")
    event_id = _check_id(raw_id) if raw_id is not None else (default_id or str(uuid.uuid4()))
    raw_at = data.get("occurred_at")
    occurred_at = (
        _check_occurred_at(raw_at) if raw_at is not None
        else (default_occurred_at or now_timestamp())
    )
    event = Event(
        type=event_type,
        id=event_id,
        occurred_at=occurred_at,
        result=result,
        error=error,
        route=scopes["route"],
        account=scopes["account"],
        realm=scopes["realm"],
        params=params,
        traceparent=_check_traceparent(data.get("traceparent")),
    )
    size = len(event.to_json().encode("utf-8"))
    if size > MAX_EVENT_BYTES:
        raise InvalidEvent(
            "event", size, f"event is {size} bytes as JSON, over the {MAX_EVENT_BYTES}-byte limit"
        )
    return event


def load_stored_event(raw: bytes | str) -> Event:
    """An event recnotify stored itself (``Event.to_json`` of a validated event), rebuilt
    without validating it again: the delivery path reads one per notification.

    Anything else (a hand-written or damaged value) raises ``InvalidEvent``, or
    ``ValueError``/``KeyError``/``TypeError`` when it is not even an event's JSON.
    """
    data = json.loads(raw)
    if data.get("schema") != SCHEMA_VERSION:
        return parse_event_json(raw)  # another version wrote it: the full check
    return Event(type=data["type"], id=data["id"], occurred_at=data["occurred_at"],
                 result=data["result"], error=data["error"], route=data["route"],
                 account=data["account"], realm=data["realm"], params=data["params"],
                 traceparent=data.get("traceparent"))


def parse_event_json(raw: bytes | str, **defaults: str | None) -> Event:
    """Decode one stream entry's JSON and validate it.

    Whatever ``raw`` holds (bytes that are not UTF-8, megabytes of text, JSON
    nested thousands deep, a JSON array), the only error is :class:`InvalidEvent`.
    """
    # A valid event is at most MAX_EVENT_BYTES as compact JSON; allow for spacing and escapes.
    limit = MAX_EVENT_BYTES * 4
    if len(raw) > limit:
        raise InvalidEvent(
            "event", len(raw),
            f"event is {len(raw)} bytes, far over the {MAX_EVENT_BYTES}-byte limit",
        )
    if isinstance(raw, bytes):
        try:
            raw = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise InvalidEvent("event", raw[:64], f"event is not valid UTF-8: {exc}") from None
    try:
        data = json.loads(raw)
    except (ValueError, RecursionError) as exc:
        reason = str(exc)[:_SHOWN_CHARS]
        raise InvalidEvent("event", raw[:64], f"event is not valid JSON: {reason}") from None
    return validate_event(data, **defaults)
