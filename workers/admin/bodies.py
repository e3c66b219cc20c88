"""Request bodies of the admin API: strict JSON objects, and the merge of a PATCH.

FastAPI's own body parsing answers 400 for a body that is not UTF-8 and takes
``NaN``; here every malformed body answers 422 in the SPEC 8 shape, naming
what is wrong with it. :func:`merge_patch` is RFC 7396 (JSON Merge Patch):
objects merge per key, ``null`` removes a key (back to its default), anything
else replaces; the one exception is a top-level ``"secret": null``, which is
kept so that it clears the stored secret (a missing ``secret`` keeps it).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from fastapi import Request

from workers.admin.errors import ApiError

__all__ = ["MAX_BODY_BYTES", "merge_patch", "optional_object", "read_body", "required_object"]

#: The largest body the API reads (a destination is a few KiB).
MAX_BODY_BYTES = 1024 * 1024
#: Top-level fields whose ``null`` is a value (clear it), not "back to the default".
NULL_IS_A_VALUE = frozenset({"secret"})


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number (give a finite number)")


def parse_object(raw: bytes, *, required: bool) -> dict[str, Any] | None:
    """The JSON object in ``raw``; ApiError(422) naming the problem otherwise."""
    if not raw.strip():
        if required:
            raise ApiError(422, "", "the request body is empty: send a JSON object")
        return None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ApiError(422, "", f"the request body is not UTF-8 (byte {raw[exc.start]:#04x} "
                       f"at offset {exc.start}): send JSON encoded as UTF-8") from None
    try:
        value = json.loads(text, parse_constant=_refuse_constant)
    except json.JSONDecodeError as exc:
        raise ApiError(422, "", f"the request body is not valid JSON ({exc.msg} at line "
                       f"{exc.lineno}, column {exc.colno})") from None
    except ValueError as exc:
        raise ApiError(422, "", f"the request body is not valid JSON ({exc})") from None
    if not isinstance(value, dict):
        raise ApiError(422, "", "the request body must be a JSON object, got "
                       f"{type(value).__name__ if value is not None else 'null'}")
    return value


async def read_body(request: Request, limit_bytes: int = MAX_BODY_BYTES) -> bytes:
    """The request body, read until ``limit_bytes`` (413 beyond: never all of it in memory)."""
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit_bytes:
            raise ApiError(413, "", f"the request body is over the limit of {limit_bytes:,} "
                           "bytes: a destination is far smaller (send one at a time)")
        chunks.append(chunk)
    return b"".join(chunks)


async def required_object(request: Request) -> dict[str, Any]:
    """FastAPI dependency: the body, a JSON object (422 when missing or malformed)."""
    body = parse_object(await read_body(request), required=True)
    assert body is not None  # required=True never returns None
    return body


async def optional_object(request: Request) -> dict[str, Any] | None:
    """FastAPI dependency: the body as a JSON object, or None when there is none."""
    return parse_object(await read_body(request), required=False)


def _merge(target: Any, patch: Mapping[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = dict(target) if isinstance(target, Mapping) else {}
    for key, value in patch.items():
        if value is None:
            out.pop(key, None)
        elif isinstance(value, Mapping):
            out[key] = _merge(out.get(key), value)
        else:
            out[key] = value
    return out


def merge_patch(base: Mapping[str, Any], patch: Mapping[str, Any]) -> dict[str, Any]:
    """``base`` (a destination's SPEC 4 fields) with ``patch`` merged in (RFC 7396)."""
    out = _merge(base, {k: v for k, v in patch.items() if k not in NULL_IS_A_VALUE})
    for key in NULL_IS_A_VALUE & set(patch):
        out[key] = patch[key]
    return out
