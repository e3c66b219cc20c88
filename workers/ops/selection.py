"""Which retained events a backfill sends (SPEC 7 ``recnotify replay``). Pure.

A :class:`Selection` names the destination and the filters of ``recnotify replay``
(``--since``/``--until``, ``--account``, ``--route``, ``--realm``, ``--ucid``,
``--event-id``, ``--type``). Whether an event then goes to the destination is decided by
routing as it stands now (the destination may be newer than the events): its scope,
event types, results and filters apply.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime

from producer.events import EVENT_TYPES, Event
from workers.errors import InvalidValue

__all__ = ["Selection", "parse_when"]

_RELATIVE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|m|h|d|w)\s*$")
_UNIT_S = {"s": 1, "m": 60, "h": 3600, "d": 86_400, "w": 604_800}


def parse_when(text: str, *, now_s: float, option: str = "--since") -> float:
    """Unix seconds from ISO 8601 (``2026-12-01T10:00:00Z``; no zone means UTC) or a
    relative age (``90s``, ``30m``, ``2h``, ``7d``, ``1w``: that long before ``now_s``)."""
    found = _RELATIVE.match(text)
    if found:
        return now_s - float(found.group(1)) * _UNIT_S[found.group(2)]
    try:
        moment = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise InvalidValue(
            f"{option} {text!r} is neither an ISO 8601 time (2026-12-01T10:00:00Z) nor an "
            "age such as 90s, 30m, 2h or 7d") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()


@dataclass(frozen=True, slots=True)
class Selection:
    """A backfill's destination and filters; unset filters select everything."""

    destination: str
    since_s: float | None = None
    until_s: float | None = None
    account: str | None = None
    route: str | None = None
    realm: str | None = None
    ucid: str | None = None
    event_id: str | None = None
    type: str | None = None
    #: The window as the operator wrote it (``2h``, an ISO time): the job's identity, so
    #: the same command resumes the same job even though ``2h`` resolves anew each time.
    since: str | None = None
    until: str | None = None

    def __post_init__(self) -> None:
        if self.type is not None and self.type not in EVENT_TYPES:
            raise InvalidValue(f"--type {self.type!r} is not an event type; use one of "
                               + ", ".join(sorted(EVENT_TYPES)))
        if (self.since_s is not None and self.until_s is not None
                and self.until_s < self.since_s):
            raise InvalidValue("--until is before --since: give a window that moves forward")

    @property
    def job_id(self) -> str:
        """The same selection, as written, is the same job: running it again resumes it.
        A window given as text counts as that text (its resolved times may move); one
        given only in seconds counts as the seconds."""
        given = asdict(self)
        for text, seconds in (("since", "since_s"), ("until", "until_s")):
            if given[text] is not None:
                given[seconds] = None
        return "bf_" + hashlib.sha256(json.dumps(given, sort_keys=True).encode()).hexdigest()[:16]

    def window_of(self, stored: Selection) -> Selection:
        """This selection with the window a checkpoint resolved (resuming keeps it)."""
        return replace(self, since_s=stored.since_s, until_s=stored.until_s)

    @property
    def first_entry(self) -> str:
        """The smallest stream entry id the window can hold (XRANGE's start)."""
        return "-" if self.since_s is None else f"{int(self.since_s * 1000)}-0"

    @property
    def last_entry(self) -> str:
        """The largest stream entry id the window can hold (XRANGE's end)."""
        return "+" if self.until_s is None else f"{int(self.until_s * 1000)}-{2**63 - 1}"

    def wants(self, event: Event) -> bool:
        """The event passes the selection's own filters (not yet the destination's)."""
        if self.event_id is not None and event.id != self.event_id:
            return False
        if self.type is not None and event.type != self.type:
            return False
        for name, wanted in (("account", self.account), ("route", self.route),
                             ("realm", self.realm)):
            if wanted is not None and getattr(event, name) != wanted:
                return False
        return self.ucid is None or str(event.params.get("UCID", "")) == self.ucid

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> Selection:
        return cls(**json.loads(text))
