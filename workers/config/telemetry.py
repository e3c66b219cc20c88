"""OpenTelemetry tracing of the workers (issue 18): setup, and the spans of the hop.

Off by default, and free when off: with ``RECNOTIFY_OTEL`` unset the SDK is never
imported, no tracer provider is installed, and every hook below is one check that
returns a shared no-op object (no span, no context, no header beyond an event's own).

``RECNOTIFY_OTEL`` (read at the edge: workers/config/env.py, settings.py):

- ``otlp`` (or ``1``/``on``): spans go to an OTLP/HTTP collector, configured the
  standard way (``OTEL_EXPORTER_OTLP_ENDPOINT``, ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT``,
  ``OTEL_EXPORTER_OTLP_HEADERS``, ...; default ``http://localhost:4318``);
  ``OTEL_SERVICE_NAME`` names the service (default ``recnotify``);
- ``console``: each finished span printed as JSON on standard output;
- ``jsonl:PATH``: each finished span appended to ``PATH`` as one JSON line (for tests
  and for looking at one machine's spans without a collector).

The spans (one trace per event, from the event's ``traceparent``):
``recnotify publish`` (producer/tracing.py) -> ``recnotify consume`` (the stream
consumer) and ``recnotify deliver`` (one per attempt; its context is the ``traceparent``
header the receiver gets); ``recnotify records flush`` links to the attempts it writes.
"""

from __future__ import annotations

import json
import os
import threading
import uuid
from collections.abc import Iterable, MutableMapping, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

from producer.events import Event
from producer.tracing import TRACEPARENT_RE, parent_context, span_context_of, traceparent_of, tracer
from workers.errors import ConfigError

if TYPE_CHECKING:
    from opentelemetry.trace import Link, Span

# Nothing of OpenTelemetry is imported unless tracing is on (setup() imports it).

#: The ``RECNOTIFY_OTEL`` values meaning off / OTLP.
OFF = frozenset({"", "0", "off", "false", "no"})
OTLP = frozenset({"1", "on", "true", "yes", "otlp"})
T = TypeVar("T")
#: At most this many span links on one records flush span.
MAX_FLUSH_LINKS = 128

_setup_lock = threading.Lock()
_installed = False


def check_mode(value: str) -> str:
    """The normalised ``RECNOTIFY_OTEL`` value (``off``, ``otlp``, ``console``,
    ``jsonl:PATH``); ValueError naming what is accepted."""
    text = value.strip()
    if text.lower() in OFF:
        return "off"
    if text.lower() in OTLP:
        return "otlp"
    if text.lower() == "console":
        return "console"
    if text.startswith("jsonl:") and len(text) > len("jsonl:"):
        return text
    raise ValueError("give off, otlp (or 1), console or jsonl:PATH")


def setup(mode: str, *, service_name: str = "recnotify") -> bool:
    """Install the SDK tracer provider ``mode`` asks for (once per process).

    True when tracing is on. Off: nothing is imported or installed.
    """
    global _installed
    if mode == "off":
        return False
    with _setup_lock:
        if _installed:
            return True
        try:
            from opentelemetry.sdk.resources import SERVICE_NAME, Resource
            from opentelemetry.sdk.trace import TracerProvider
            from opentelemetry.sdk.trace.export import (
                BatchSpanProcessor,
                ConsoleSpanExporter,
                SimpleSpanProcessor,
                SpanExporter,
            )
        except ImportError:
            raise ConfigError(
                f"RECNOTIFY_OTEL={mode} needs the OpenTelemetry SDK: "
                "pip install 'recnotify[tracing]'") from None
        name = os.environ.get("OTEL_SERVICE_NAME") or service_name
        provider = TracerProvider(resource=Resource.create({SERVICE_NAME: name}))
        exporter: SpanExporter
        if mode == "otlp":
            try:
                from opentelemetry.exporter.otlp.proto.http.trace_exporter import (
                    OTLPSpanExporter,
                )
            except ImportError:
                raise ConfigError(
                    "RECNOTIFY_OTEL=otlp needs the OTLP exporter: "
                    "pip install 'recnotify[tracing]'") from None
            provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
        else:
            exporter = (ConsoleSpanExporter() if mode == "console"
                        else _json_lines_exporter(mode.removeprefix("jsonl:")))
            provider.add_span_processor(SimpleSpanProcessor(exporter))
        from opentelemetry import trace

        trace.set_tracer_provider(provider)
        _installed = True
        return True


def _json_lines_exporter(path: str) -> Any:
    """A span exporter appending one JSON object per finished span to ``path``."""
    from opentelemetry.sdk.trace import ReadableSpan
    from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

    class JsonLinesExporter(SpanExporter):
        def __init__(self) -> None:
            self.fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)

        def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
            for span in spans:
                # one write per line on an O_APPEND file: processes never interleave
                os.write(self.fd, (json.dumps(span_as_dict(span)) + "\n").encode())
            return SpanExportResult.SUCCESS

        def shutdown(self) -> None:
            os.close(self.fd)

    return JsonLinesExporter()


def span_as_dict(span: Any) -> dict[str, Any]:
    """A finished SDK span as plain data (ids in hex, as in a ``traceparent``)."""
    ctx = span.get_span_context()
    parent = span.parent
    return {
        "name": span.name,
        "trace_id": f"{ctx.trace_id:032x}",
        "span_id": f"{ctx.span_id:016x}",
        "parent_span_id": f"{parent.span_id:016x}" if parent is not None else None,
        "kind": span.kind.name,
        "attributes": dict(span.attributes or {}),
        "links": [{"trace_id": f"{link.context.trace_id:032x}",
                   "span_id": f"{link.context.span_id:016x}"} for link in span.links],
        "status": span.status.status_code.name,
        "start_ns": span.start_time,
        "end_ns": span.end_time,
        "pid": os.getpid(),
    }


# -- the hooks -------------------------------------------------------------------------------
class _NoSpan:
    """What every hook returns when tracing is off: does nothing, costs one call."""

    traceparent: str | None = None

    def __enter__(self) -> _NoSpan:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def done(self, status: int | None, concluded: T) -> T:
        return concluded

    def end(self) -> None:
        return None


NO_SPAN = _NoSpan()


class AttemptSpan:
    """``recnotify deliver``: one attempt (its context is the receiver's ``traceparent``)."""

    def __init__(self, span: Span) -> None:
        self.span = span
        self.traceparent: str | None = traceparent_of(span)

    def __enter__(self) -> AttemptSpan:
        return self

    def __exit__(self, kind: object, exc: BaseException | None, tb: object) -> None:
        if exc is not None:
            from opentelemetry.trace import Status, StatusCode

            self.span.set_status(Status(StatusCode.ERROR, type(exc).__name__))
        self.span.end()

    def done(self, status: int | None, concluded: T) -> T:
        """The attempt's answer: HTTP status (None: no answer) and where the notification
        stands (an Outcome; a short Retry is ``retrying``); returns ``concluded``."""
        from opentelemetry.trace import Status, StatusCode

        outcome = str(getattr(concluded, "value", "retrying"))
        if status is not None:
            self.span.set_attribute("http.response.status_code", status)
        self.span.set_attribute("recnotify.outcome", outcome)
        if outcome != "delivered":
            self.span.set_status(Status(StatusCode.ERROR))
        return concluded


def attempt_span(event: Event, destination: str, attempt: int, nid: str,
                 headers: MutableMapping[str, str]) -> AttemptSpan | _NoSpan:
    """Start the span of one delivery attempt, child of the event's ``traceparent``, and
    put its ``traceparent`` into the request ``headers`` (not signed: the signature covers
    the body or the target, workers/http/request.py).

    Only names and numbers go on the span: the destination's name, never its URL, headers,
    secrets or tokens. Off: the event's own ``traceparent`` (the recorder's), if any, is
    carried to the receiver unchanged (SPEC 1); else no header.
    """
    active = tracer()
    if active is None:
        if event.traceparent is not None and TRACEPARENT_RE.fullmatch(event.traceparent):
            _set_traceparent(headers, event.traceparent)
        return NO_SPAN
    from opentelemetry.trace import SpanKind

    span = active.start_span("recnotify deliver", _parent_of(event),
                             kind=SpanKind.CLIENT, attributes={
                                 "recnotify.destination": destination,
                                 "recnotify.attempt": attempt,
                                 "recnotify.event_id": event.id,
                                 "recnotify.event_type": event.type,
                                 "recnotify.notification_id": nid,
                             })
    traced = AttemptSpan(span)
    assert traced.traceparent is not None
    _set_traceparent(headers, traced.traceparent)
    return traced


def _parent_of(event: Event) -> Any:
    """The context an event's worker spans continue: its ``traceparent``; for an event that
    has none (published untraced), the event's own trace, derived from its id, so that its
    consume and attempt spans (any process, any time) are still one trace: trace id = the
    event id's 32 hex digits, parent = a span id made from it (a parent never exported)."""
    if event.traceparent is not None:
        return parent_context(event.traceparent)
    try:
        whole = uuid.UUID(event.id).int
    except ValueError:
        return None
    span_id = (whole & 0xFFFFFFFFFFFFFFFF) or 1
    return parent_context(f"00-{whole:032x}-{span_id:016x}-01")


def _set_traceparent(headers: MutableMapping[str, str], value: str) -> None:
    for name in [k for k in headers if k.lower() == "traceparent"]:
        del headers[name]  # a destination's own header of that name: ours is the trace
    headers["traceparent"] = value


class ConsumeSpans:
    """``recnotify consume``: one span per event of a stream batch, ended together."""

    def __init__(self, spans: list[Span]) -> None:
        self.spans = spans

    def end(self) -> None:
        """Once the batch's fan-out is written and acknowledged (a batch that fails is
        read again: its spans are never ended, so never exported)."""
        for span in self.spans:
            span.end()


def consume_spans(prepared: Iterable[tuple[str, Any, Event, Sequence[Any]]], stream: str
                  ) -> ConsumeSpans | _NoSpan:
    """Start one span per (entry id, raw, event, destinations) of a batch, each a child of
    its event's traceparent."""
    active = tracer()
    if active is None:
        return NO_SPAN
    from opentelemetry.trace import SpanKind

    return ConsumeSpans([
        active.start_span("recnotify consume", _parent_of(event),
                          kind=SpanKind.CONSUMER, attributes={
                              "messaging.system": "redis",
                              "messaging.operation.type": "process",
                              "messaging.destination.name": stream,
                              "messaging.message.id": entry_id,
                              "recnotify.event_id": event.id,
                              "recnotify.event_type": event.type,
                              "recnotify.notifications": len(destinations),
                          })
        for entry_id, _raw, event, destinations in prepared])


def flush_span(rows: Sequence[dict[str, Any]]) -> Any:
    """``recnotify records flush``: a span linked to the attempts whose records it writes
    (at most MAX_FLUSH_LINKS links); the rows' ``traceparent`` fields are dropped."""
    active = tracer()
    if active is None:
        return NO_SPAN
    from opentelemetry.trace import Link, SpanKind

    links: list[Link] = []
    for row in rows:
        remote = span_context_of(row.pop("traceparent", None))
        if remote is not None and len(links) < MAX_FLUSH_LINKS:
            links.append(Link(remote))
    return active.start_as_current_span("recnotify records flush", kind=SpanKind.INTERNAL,
                                        links=links, attributes={"recnotify.records": len(rows)})
