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


def params_for(event_type: str) -> frozenset[str]:
    """Every placeholder name valid for ``event_type`` (common + its own)."""
    return frozenset(COMMON_PARAMS) | frozenset(TYPE_PARAMS[event_type])


def parameter_reference() -> dict[str, dict[str, str]]:
    """SPEC 2 as data: event type -> {parameter: description}, common ones first."""
    return {t: {**COMMON_PARAMS, **TYPE_PARAMS[t]} for t in EVENT_TYPES}
