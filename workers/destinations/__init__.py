"""Destinations (SPEC section 4): the model, validation and the YAML file format.

Public surface of :mod:`workers.destinations.model` (value objects) and
:mod:`workers.destinations.rules` (``parse_destination``), plus the file
format of ``recnotify destinations import / export``::

    destinations:
      - name: face-started
        events: [RECORDING_STARTED_EVENT]
        scope: route:support-line
        url: https://10.0.0.5:8443/Face/eventNotify
        params: "event=AudioRecordingStarted&calledAors=%CALLEDAORS%&ucid=%UCID%"

A file is all or nothing: one bad entry refuses the whole file.

Hostile or careless files are refused at once, naming the limit: over
:data:`MAX_FILE_BYTES`, over :data:`MAX_ENTRIES` destinations, or over
:data:`MAX_NODES` values once its aliases are expanded (a "billion laughs" alias
bomb), before anything is built from it. The C YAML parser is used where PyYAML
has it. Each destination's own bounds (text length, list length, nesting) are
:func:`parse_destination`'s.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

import yaml

from workers.destinations.auth import AUTH_TYPES, credential_key
from workers.destinations.model import (
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
from workers.destinations.rules import FIELDS, parse_destination
from workers.errors import FieldError, InvalidDestination

__all__ = [
    "FIELDS",
    "MASK",
    "MAX_ENTRIES",
    "MAX_FILE_BYTES",
    "MAX_NODES",
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
    "read_file",
    "split_secrets",
]


#: A destinations file larger than this is refused before it is parsed.
MAX_FILE_BYTES = 4 * 1024 * 1024
#: More destinations than this in one file are refused (split the file).
MAX_ENTRIES = 5_000
#: Values (scalars, lists, maps) a file may hold, counting each alias as the values it
#: repeats: a few thousand full destinations fit, an alias bomb does not.
MAX_NODES = 250_000
_YAML_LOADER: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def read_file(path: Path) -> str:
    """The text of a destinations file; InvalidDestination when it is over
    :data:`MAX_FILE_BYTES` (checked before reading) or not UTF-8."""
    try:
        size = path.stat().st_size
        if size > MAX_FILE_BYTES:
            raise _too_big(size)
        with path.open("rb") as handle:
            data = handle.read(MAX_FILE_BYTES + 1)
    except OSError as exc:
        raise _file_error(f"cannot read {str(path)!r}: {exc.strerror or exc}") from None
    if len(data) > MAX_FILE_BYTES:  # grew while being read
        raise _too_big(len(data))
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise _file_error(f"{str(path)!r} is not UTF-8 text (byte {exc.start}: "
                          f"{data[exc.start:exc.start + 1]!r}); save it as UTF-8") from None


def _too_big(size: int) -> InvalidDestination:
    return _file_error(f"{size:,} bytes, over the limit of {MAX_FILE_BYTES:,} bytes "
                       "(split it into several files and import each)")


def _check_shape(text: str) -> None:
    """Refuse, before anything is built, a file over :data:`MAX_ENTRIES` destinations or
    :data:`MAX_NODES` values with its aliases expanded (from the parser's event stream,
    which holds no values: memory stays flat whatever the file)."""
    # per open collection: [anchor, expanded size, is a sequence]
    stack: list[list[Any]] = []
    sizes: dict[str, int] = {}
    total = written = entries = 0

    def done(size: int, anchor: str | None) -> None:
        nonlocal total
        if anchor is not None:
            sizes[anchor] = size
        if stack:
            stack[-1][1] += size
        else:
            total += size
        if size > MAX_NODES or total > MAX_NODES:
            if written > MAX_NODES:
                raise _file_error(f"more than {MAX_NODES:,} values (the limit): split it "
                                  "into several files and import each")
            raise _file_error(f"its aliases expand to more than {MAX_NODES:,} nodes (the "
                              "limit; an alias bomb?): repeat less through aliases")

    for event in yaml.parse(text, Loader=_YAML_LOADER):
        if not isinstance(event, yaml.NodeEvent):
            if isinstance(event, yaml.CollectionEndEvent) and stack:
                anchor, size, _ = stack.pop()
                done(size, anchor)
            continue
        written += 1
        if len(stack) == 2 and stack[1][2] and not stack[0][2]:
            entries += 1  # an item of the list under the top-level key
            if entries > MAX_ENTRIES:
                raise _file_error(f"more than {MAX_ENTRIES:,} entries (the limit): split it "
                                  "into several files and import each")
        if isinstance(event, yaml.AliasEvent):
            done(sizes.get(str(event.anchor), 1), None)
        elif isinstance(event, yaml.CollectionStartEvent):
            stack.append([event.anchor, 1, isinstance(event, yaml.SequenceStartEvent)])
        else:
            done(1, event.anchor)


def load_file(text: str, *, existing: Mapping[str, Destination] | None = None,
              progress: Callable[[int, int], None] | None = None) -> list[Destination]:
    """Every destination of a SPEC 4 YAML file, or InvalidDestination listing all problems.

    ``existing`` (by name) supplies the stored secrets that masked values keep;
    ``progress(done, total)`` is called after each entry (the CLI's progress bar).
    """
    existing = existing or {}
    size = len(text) if len(text) * 4 <= MAX_FILE_BYTES else len(text.encode("utf-8", "replace"))
    if size > MAX_FILE_BYTES:
        raise _too_big(size)
    try:
        _check_shape(text)
        doc = yaml.load(text, Loader=_YAML_LOADER)  # the C or Python *safe* loader
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
    auth = data.get("auth")
    if isinstance(auth, Mapping) and auth.get("type") in AUTH_TYPES:
        data["auth"] = {**auth, credential_key(auth["type"]): bundle.auth or MASK}
    dest = parse_destination(data)
    if bundle.old_secrets and dest.secret is not None:
        dest = replace(dest, old_secrets=bundle.old_secrets)
    return dest
