"""Trace context across the hop (issue 18): W3C ``traceparent`` and the publish span.

opentelemetry-api only (it is a no-op without an SDK). Tracing is on in a process when
an OpenTelemetry SDK tracer provider is installed there: the recorder's own, or the one
``RECNOTIFY_OTEL`` sets up in recnotify's processes (workers/config/telemetry.py). Off
(the default), every hook here is one check and returns: no span, no context, no header.

The trace travels with the event: ``Publisher.publish`` starts the span ``recnotify
publish`` (a child of the event's ``traceparent`` when the recorder gave one, else of the
recorder's current span, if any) and writes that span's context into the event's
``traceparent``; the workers continue it from the stored event.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from producer.events import Event

if TYPE_CHECKING:
    from opentelemetry.context import Context
    from opentelemetry.trace import Span, SpanContext, Tracer

#: W3C trace context, version 00: ``00-<32 hex trace id>-<16 hex parent id>-<2 hex flags>``.
TRACEPARENT_RE = re.compile(r"00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})")

_tracer: Tracer | None = None
_UNKNOWN = object()


def tracer() -> Tracer | None:
    """recnotify's tracer when an SDK tracer provider is installed, else None (off).

    A process that never imported OpenTelemetry has none: then nothing is imported here
    either (``import producer`` stays as quick as without tracing).
    """
    global _tracer
    if _tracer is not None:
        return _tracer
    trace = sys.modules.get("opentelemetry.trace")
    if trace is None or getattr(trace, "_TRACER_PROVIDER", _UNKNOWN) is None:
        return None  # no provider was ever set (the API's own global: one attribute read)
    provider = trace.get_tracer_provider()
    if isinstance(provider, trace.ProxyTracerProvider | trace.NoOpTracerProvider):
        return None
    _tracer = provider.get_tracer("recnotify")
    return _tracer


def span_context_of(traceparent: str | None) -> SpanContext | None:
    """The remote span context a ``traceparent`` names (None: absent or not one)."""
    from opentelemetry.trace import SpanContext, TraceFlags

    match = TRACEPARENT_RE.fullmatch(traceparent or "")
    if match is None:
        return None
    trace_id, span_id = int(match.group(1), 16), int(match.group(2), 16)
    if not trace_id or not span_id:
        return None
    return SpanContext(trace_id, span_id, is_remote=True,
                       trace_flags=TraceFlags(int(match.group(3), 16) & 0x01))


def parent_context(traceparent: str | None) -> Context | None:
    """A context whose current span is ``traceparent``'s (None: use the current one)."""
    from opentelemetry import trace

    remote = span_context_of(traceparent)
    if remote is None:
        return None
    return trace.set_span_in_context(trace.NonRecordingSpan(remote))


def traceparent_of(span: Span) -> str:
    """The W3C ``traceparent`` of ``span`` (what goes into the event and the header)."""
    ctx = span.get_span_context()
    return f"00-{ctx.trace_id:032x}-{ctx.span_id:016x}-{int(ctx.trace_flags):02x}"


def publish_span(event: Event, stream: str) -> AbstractContextManager[Event]:
    """Around one publish: the event to write, carrying the span's ``traceparent``.

    Off: ``event`` itself (its own ``traceparent``, if any, is carried unchanged).
    """
    active = tracer()
    if active is None:
        return nullcontext(event)
    return _publish_span(active, event, stream)


@contextmanager
def _publish_span(active: Tracer, event: Event, stream: str) -> Iterator[Event]:
    from opentelemetry.trace import SpanKind

    attributes: dict[str, Any] = {
        "messaging.system": "redis", "messaging.operation.type": "send",
        "messaging.destination.name": stream, "recnotify.event_id": event.id,
        "recnotify.event_type": event.type,
    }
    with active.start_as_current_span("recnotify publish", parent_context(event.traceparent),
                                      kind=SpanKind.PRODUCER, attributes=attributes) as span:
        yield replace(event, traceparent=traceparent_of(span))
