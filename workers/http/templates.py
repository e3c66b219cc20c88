"""URL parameter templates (SPEC section 5).

A template such as ``event=AudioRecordingStarted&ucid=%UCID%`` holds
placeholders ``%NAME%`` (``NAME`` matches ``[A-Z][A-Z_]{2,}``). Each becomes
its value percent-encoded with only the RFC 3986 unreserved characters left
as they are, so no value can add a parameter, end the URL or split the
request (``&``, ``#``, CR/LF are all encoded). Every other character of the
template and of the base URL, including any other ``%`` text such as
``%C3%A9``, is sent exactly as written.

Pure functions: plain values in, plain values out.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from urllib.parse import quote

from workers.errors import DeliveryError

__all__ = [
    "MAX_URL_BYTES",
    "PLACEHOLDER_RE",
    "build_url",
    "placeholders",
    "render_query",
    "render_url",
]

PLACEHOLDER_RE = re.compile(r"%([A-Z][A-Z_]{2,})%")

#: Longest final URL (in UTF-8 bytes) we send; most servers refuse longer request lines.
MAX_URL_BYTES = 8192


def placeholders(template: str) -> list[str]:
    """The placeholder names of ``template``, in order (repeats kept)."""
    return [m.group(1) for m in PLACEHOLDER_RE.finditer(template)]


def render_query(template: str, values: Mapping[str, str]) -> str:
    """Replace each placeholder by its percent-encoded value ("" when missing).

    ``values`` are already strings: the caller comma-joins lists and renders
    integers in decimal.
    """
    if "%" not in template:
        return template
    return PLACEHOLDER_RE.sub(lambda m: quote(values.get(m.group(1), ""), safe=""), template)


def build_url(base: str, query: str) -> str:
    """Join ``base`` and a rendered ``query`` with ``?`` or ``&`` as SPEC 5 says."""
    if not query:
        return base
    if base.endswith(("?", "&")):
        return base + query
    return f"{base}{'&' if '?' in base else '?'}{query}"


def render_url(base: str, template: str, values: Mapping[str, str]) -> str:
    """The final URL for one notification; :class:`DeliveryError` when over 8 KiB."""
    url = build_url(base, render_query(template, values))
    size = len(url.encode("utf-8"))
    if size > MAX_URL_BYTES:
        raise DeliveryError(
            f"rendered URL is {size} bytes, over the limit of {MAX_URL_BYTES} bytes "
            "(shorten the destination's params template or the event's parameter values)"
        )
    return url
