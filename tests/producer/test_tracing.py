"""The trace context of an event (SPEC 1 ``traceparent``) and the publish span."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
import redis
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from producer import InvalidEvent, Publisher, tracing
from producer.constants import events_key
from producer.events import load_stored_event, validate_event

GOOD = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


@pytest.fixture
def traced(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[TracerProvider,
                                                              InMemorySpanExporter]]:
    memory = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(memory))
    monkeypatch.setattr(tracing, "_tracer", provider.get_tracer("test"))
    yield provider, memory
    provider.shutdown()


@pytest.mark.parametrize("bad", [
    "", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",  # no flags
    "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",  # another version
    "00-4BF92F3577B34DA6A3CE929D0E0E4736-00F067AA0BA902B7-01",  # upper case
    "00-00000000000000000000000000000000-00f067aa0ba902b7-01",  # zero trace id
    "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",  # zero parent id
    f"{GOOD}\n", f" {GOOD}", 42, ["x"],
])
def test_a_malformed_traceparent_is_refused_naming_the_field(bad: object) -> None:
    with pytest.raises(InvalidEvent) as caught:
        validate_event({"type": "RECORDING_STARTED_EVENT", "traceparent": bad})
    assert caught.value.field == "traceparent" and "traceparent" in str(caught.value)


def test_a_traceparent_is_kept_and_stored_and_an_untraced_event_keeps_its_bytes() -> None:
    event = validate_event({"type": "RECORDING_STARTED_EVENT", "traceparent": GOOD})
    assert event.traceparent == GOOD and json.loads(event.to_json())["traceparent"] == GOOD
    assert load_stored_event(event.to_json()) == event
    plain = validate_event({"type": "RECORDING_STARTED_EVENT", "traceparent": None})
    assert "traceparent" not in plain.to_dict()
    assert load_stored_event(plain.to_json()) == plain


def test_off_publish_makes_no_span_and_carries_a_given_traceparent_unchanged(
        redis_url: str, key_prefix: str, redis_client: redis.Redis) -> None:
    assert tracing.tracer() is None
    publisher = Publisher(redis_url, key_prefix=key_prefix)
    publisher.publish("RECORDING_STARTED_EVENT")
    publisher.publish("RECORDING_STARTED_EVENT", traceparent=GOOD)
    first, second = (json.loads(f[b"event"]) for _, f in
                     redis_client.xrange(events_key(key_prefix)))
    assert "traceparent" not in first and second["traceparent"] == GOOD


def test_on_publish_is_a_span_whose_context_the_event_carries(
        redis_url: str, key_prefix: str, redis_client: redis.Redis,
        traced: tuple[TracerProvider, InMemorySpanExporter]) -> None:
    provider, memory = traced
    publisher = Publisher(redis_url, key_prefix=key_prefix)
    # a child of the recorder's traceparent, when given
    publisher.publish("RECORDING_STARTED_EVENT", traceparent=GOOD)
    # else of the recorder's current span
    with provider.get_tracer("recorder").start_as_current_span("recorder work") as outer:
        publisher.publish("RECORDING_ENDED_EVENT")
    given, current = (json.loads(f[b"event"]) for _, f in
                      redis_client.xrange(events_key(key_prefix)))
    spans = [s for s in memory.get_finished_spans() if s.name == "recnotify publish"]
    assert len(spans) == 2
    for event, span in zip((given, current), spans, strict=True):
        assert event["traceparent"] == tracing.traceparent_of(span)
        assert span.attributes is not None and span.attributes["recnotify.event_id"] == event["id"]
    assert spans[0].context.trace_id == int(GOOD[3:35], 16)
    assert spans[0].parent is not None and spans[0].parent.span_id == int(GOOD[36:52], 16)
    assert spans[1].context.trace_id == outer.get_span_context().trace_id


def test_a_refused_event_makes_no_span(
        redis_url: str, key_prefix: str,
        traced: tuple[TracerProvider, InMemorySpanExporter]) -> None:
    with pytest.raises(InvalidEvent):
        Publisher(redis_url, key_prefix=key_prefix).publish("RECORDING_STARTED_EVENT",
                                                            traceparent="00-bad")
    assert traced[1].get_finished_spans() == ()
