"""Destinations (SPEC section 4): the model, validation and the YAML file format.

Public surface of :mod:`workers.destination_model` (value objects) and
:mod:`workers.destination_rules` (``parse_destination``), plus the file
format of ``recnotify destinations import / export``::

    destinations:
      - name: face-started
        events: [RECORDING_STARTED_EVENT]
        scope: route:support-line
        url: https://10.0.0.5:8443/Face/eventNotify
        params: "event=AudioRecordingStarted&calledAors=%CALLEDAORS%&ucid=%UCID%"

A file is all or nothing: one bad entry refuses the whole file.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import replace
from typing import Any

import yaml

from workers.destination_model import (
    MASK,
    PRESETS,
    CircuitOptions,
    Destination,
    Header,
    SecretBundle,
    TlsOptions,
    mask_userinfo,
    split_secrets,
)
from workers.destination_rules import FIELDS, parse_destination
from workers.errors import FieldError, InvalidDestination

__all__ = [
    "FIELDS",
    "MASK",
    "PRESETS",
    "CircuitOptions",
    "Destination",
    "FieldError",
    "Header",
    "InvalidDestination",
    "SecretBundle",
    "TlsOptions",
    "dump_file",
    "join_secrets",
    "load_file",
    "parse_destination",
    "split_secrets",
]


def load_file(text: str, *, existing: Mapping[str, Destination] | None = None,
              progress: Callable[[int, int], None] | None = None) -> list[Destination]:
    """Every destination of a SPEC 4 YAML file, or InvalidDestination listing all problems.

    ``existing`` (by name) supplies the stored secrets that masked values keep;
    ``progress(done, total)`` is called after each entry (the CLI's progress bar).
    """
    existing = existing or {}
    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise _file_error(f"YAML syntax error{where}: {problem}") from None
    if doc is None:
        return []
    if not isinstance(doc, dict) or set(doc) - {"destinations"}:
        got = sorted(map(str, doc)) if isinstance(doc, dict) else type(doc).__name__
        raise _file_error(f"expected one key `destinations:` holding a list, got {got}")
    entries = doc.get("destinations") or []
    if not isinstance(entries, list):
        raise _file_error(f"`destinations:` must be a list, got {type(entries).__name__}")
    dests: list[Destination] = []
    errors: list[FieldError] = []
    first_entry: dict[str, int] = {}
    for number, entry in enumerate(entries, start=1):
        name = entry.get("name") if isinstance(entry, dict) else None
        if isinstance(name, str):
            if name in first_entry:
                errors.append(
                    FieldError(
                        "name",
                        name,
                        f"destination {name!r}: name: duplicate in this file "
                        f"(entries {first_entry[name]} and {number})",
                    )
                )
                continue
            first_entry[name] = number
        try:
            dests.append(parse_destination(entry, existing=existing.get(name or "")))
        except InvalidDestination as exc:
            errors.extend(
                FieldError(e.field, e.value, f"entry {number}: {e.message}") for e in exc.errors
            )
        if progress:
            progress(number, len(entries))
    if errors:
        raise InvalidDestination(None, errors)
    return dests


def _file_error(message: str) -> InvalidDestination:
    return InvalidDestination(None, [FieldError("", None, f"destinations file: {message}")])


def dump_file(dests: Iterable[Destination], *, include_secrets: bool = False) -> str:
    """The YAML file of ``dests``; secrets masked unless ``include_secrets``."""
    doc = {"destinations": [d.to_dict(include_secrets=include_secrets) for d in dests]}
    return yaml.safe_dump(doc, sort_keys=False, allow_unicode=True, width=1000)


def join_secrets(config: Mapping[str, Any], bundle: SecretBundle | None) -> Destination:
    """Inverse of :func:`split_secrets`: the masked dict plus its secrets as a Destination."""
    data: dict[str, Any] = dict(config)
    bundle = bundle or SecretBundle()
    if bundle.userinfo is not None:
        data["url"] = mask_userinfo(str(data["url"]), bundle.userinfo)
    if bundle.secret is not None:
        data["secret"] = bundle.secret
    else:
        data.pop("secret", None)
    header_values = dict(bundle.headers)
    headers = data.get("headers")
    if isinstance(headers, Mapping):
        data["headers"] = {
            name: {"value": header_values.get(name, MASK), "secret": True}
            if isinstance(spec, Mapping) and spec.get("secret") is True
            else spec
            for name, spec in headers.items()
        }
    dest = parse_destination(data)
    if bundle.old_secrets and dest.secret is not None:
        dest = replace(dest, old_secrets=bundle.old_secrets)
    return dest
