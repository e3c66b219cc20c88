"""Tracing across the hop (issue 18): one event's spans, from publish to a receiver's 200,
form one trace; real workers (their spans as JSON lines: ``RECNOTIFY_OTEL=jsonl:PATH``),
a real receiver, and the SDK's in-memory exporter for the publishing test process."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from producer import tracing
from tests.helpers import WorkerFactory, fast_retry
from tests.receiver import Receiver
from workers.http.signing import generate_secret, verify

pytestmark = pytest.mark.slow

RECORDER_TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
RECORDER_SPAN = "00f067aa0ba902b7"


@pytest.fixture
def exporter(monkeypatch: pytest.MonkeyPatch) -> Iterator[InMemorySpanExporter]:
    """This process publishes with an SDK tracer (not installed globally)."""
    memory = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(memory))
    monkeypatch.setattr(tracing, "_tracer", provider.get_tracer("test"))
    yield memory
    provider.shutdown()


def destination(url: str, secret: str) -> str:
    return ("destinations:\n  - name: crm\n    preset: json\n    scope: global\n"
            f"    url: '{url}'\n    secret: {secret}\n"
            f"    retry: {json.dumps(fast_retry())}\n")


def spans_of(path: Path, want: int, event_id: str, timeout_s: float = 20) -> list[dict[str, Any]]:
    """The workers' spans about ``event_id`` (waits until ``want`` of them are written)."""
    deadline = time.monotonic() + timeout_s
    while True:
        lines = path.read_text().splitlines() if path.exists() else []
        spans = [json.loads(line) for line in lines]
        mine = [s for s in spans if s["attributes"].get("recnotify.event_id") == event_id]
        if len(mine) >= want or time.monotonic() > deadline:
            return mine
        time.sleep(0.1)


def flush_spans(path: Path, trace_id: str, timeout_s: float = 20) -> list[dict[str, Any]]:
    deadline = time.monotonic() + timeout_s
    while True:
        spans = [json.loads(line) for line in path.read_text().splitlines()]
        found = [s for s in spans if s["name"] == "recnotify records flush"
                 and any(link["trace_id"] == trace_id for link in s["links"])]
        if found or time.monotonic() > deadline:
            return found
        time.sleep(0.1)


def test_one_event_is_one_trace_from_publish_to_the_receivers_200(
    workers: WorkerFactory, receiver: Receiver, exporter: InMemorySpanExporter, tmp_path: Path
) -> None:
    # Given a signed JSON destination that answers 503 once, then 200, and traced workers
    secret = generate_secret()
    receiver.script("/hook", [503, 200])
    workers.configure(destination(receiver.url("/hook"), secret))
    spans_file = tmp_path / "spans.jsonl"
    workers.start(RECNOTIFY_OTEL=f"jsonl:{spans_file}")
    # When the test process publishes one event
    event_id = workers.publisher().publish("RECORDING_STARTED_EVENT", route="r1",
                                           params={"UCID": "trace-1"})
    got = receiver.wait_for(2)
    # Then its publish span (here) and its consume and two attempt spans (in the worker)...
    [publish] = exporter.get_finished_spans()
    assert publish.name == "recnotify publish"
    assert publish.attributes is not None and publish.attributes["recnotify.event_id"] == event_id
    trace_id = f"{publish.context.trace_id:032x}"
    publish_id = f"{publish.context.span_id:016x}"
    assert publish.parent is None
    spans = spans_of(spans_file, 3, event_id)
    by_name: dict[str, list[dict[str, Any]]] = {}
    for span in spans:
        by_name.setdefault(span["name"], []).append(span)
    [consume] = by_name["recnotify consume"]
    attempts = sorted(by_name["recnotify deliver"],
                      key=lambda s: s["attributes"]["recnotify.attempt"])
    # ...are one trace: consume and each attempt are children of publish
    assert {s["trace_id"] for s in spans} == {trace_id}
    assert consume["parent_span_id"] == publish_id and consume["kind"] == "CONSUMER"
    assert [s["parent_span_id"] for s in attempts] == [publish_id, publish_id]
    # the attempt spans say destination, attempt, status and outcome
    assert [(s["attributes"]["recnotify.destination"], s["attributes"]["recnotify.attempt"],
             s["attributes"]["http.response.status_code"], s["attributes"]["recnotify.outcome"])
            for s in attempts] == [("crm", 1, 503, "retrying"), ("crm", 2, 200, "delivered")]
    # and the receiver got each attempt's own context as `traceparent`, its body still signed
    headers = [r.header("traceparent") for r in got]
    assert headers == [f"00-{trace_id}-{s['span_id']}-01" for s in attempts]
    for request in got:
        assert verify(secret, request.header("webhook-id") or "",
                      int(request.header("webhook-timestamp") or 0), request.body,
                      request.header("webhook-signature") or "")
    # The records flush that wrote those attempts links to them (a span link per record)
    [flush, *_] = flush_spans(spans_file, trace_id)
    assert {link["span_id"] for link in flush["links"] if link["trace_id"] == trace_id} <= {
        s["span_id"] for s in attempts}
    # Never a URL, a secret or a token on a span
    text = spans_file.read_text()
    assert secret not in text and receiver.url("/hook") not in text
    assert f"127.0.0.1:{receiver.port}" not in text


def test_an_event_with_the_recorders_traceparent_stays_in_the_recorders_trace(
    workers: WorkerFactory, receiver: Receiver, exporter: InMemorySpanExporter, tmp_path: Path
) -> None:
    workers.configure(destination(receiver.url("/hook"), generate_secret()))
    spans_file = tmp_path / "spans.jsonl"
    workers.start(RECNOTIFY_OTEL=f"jsonl:{spans_file}")
    recorder = f"00-{RECORDER_TRACE}-{RECORDER_SPAN}-01"
    event_id = workers.publisher().publish("RECORDING_STARTED_EVENT", route="r1",
                                           traceparent=recorder)
    [got] = receiver.wait_for(1)
    [publish] = exporter.get_finished_spans()
    assert f"{publish.context.trace_id:032x}" == RECORDER_TRACE
    assert publish.parent is not None and f"{publish.parent.span_id:016x}" == RECORDER_SPAN
    spans = spans_of(spans_file, 2, event_id)
    assert {s["trace_id"] for s in spans} == {RECORDER_TRACE}
    header = got.header("traceparent") or ""
    assert header.startswith(f"00-{RECORDER_TRACE}-") and header != recorder
    # the event as stored carries the publish span's context
    stored = json.loads(workers.redis.get(workers.settings.keys.event(event_id)) or b"{}")
    assert stored["traceparent"] == f"00-{RECORDER_TRACE}-{publish.context.span_id:016x}-01"


def test_with_tracing_off_no_traceparent_is_sent_and_no_span_is_made(
    workers: WorkerFactory, receiver: Receiver, tmp_path: Path
) -> None:
    assert tracing.tracer() is None  # this process: no SDK tracer provider installed
    workers.configure(destination(receiver.url("/hook"), generate_secret()))
    workers.start()
    event_id = workers.publisher().publish("RECORDING_STARTED_EVENT", route="r1")
    [got] = receiver.wait_for(1)
    assert got.header("traceparent") is None
    stored = json.loads(workers.redis.get(workers.settings.keys.event(event_id)) or b"{}")
    assert "traceparent" not in stored
    # the recorder's own traceparent is carried to the receiver unchanged (SPEC 1)
    recorder = f"00-{RECORDER_TRACE}-{RECORDER_SPAN}-01"
    workers.publisher().publish("RECORDING_ENDED_EVENT", route="r1", traceparent=recorder)
    later = receiver.wait_for(2)
    assert later[1].header("traceparent") == recorder


def test_an_event_published_untraced_still_makes_one_trace_in_the_workers(
    workers: WorkerFactory, receiver: Receiver, tmp_path: Path
) -> None:
    # Given traced workers and a recorder without OpenTelemetry (this process: no tracer)
    assert tracing.tracer() is None
    receiver.script("/hook", [503, 200])
    workers.configure(destination(receiver.url("/hook"), generate_secret()))
    spans_file = tmp_path / "spans.jsonl"
    workers.start(RECNOTIFY_OTEL=f"jsonl:{spans_file}")
    event_id = workers.publisher().publish("RECORDING_STARTED_EVENT", route="r1")
    got = receiver.wait_for(2)
    # Then its consume and attempt spans are one trace, whose id is the event's id
    spans = spans_of(spans_file, 3, event_id)
    trace_id = event_id.replace("-", "")
    assert sorted(s["name"] for s in spans) == [
        "recnotify consume", "recnotify deliver", "recnotify deliver"]
    assert {s["trace_id"] for s in spans} == {trace_id}
    assert len({s["parent_span_id"] for s in spans}) == 1
    assert [r.header("traceparent") for r in got] == [
        f"00-{trace_id}-{s['span_id']}-01" for s in sorted(
            (s for s in spans if s["name"] == "recnotify deliver"),
            key=lambda s: s["attributes"]["recnotify.attempt"])]
