"""Tracing setup and hooks (workers/config/telemetry.py): off by default and a no-op."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from producer import tracing
from producer.events import validate_event
from tests.helpers import ROOT
from workers.config import telemetry
from workers.config.env import read_env
from workers.config.settings import Settings
from workers.errors import ConfigError

GOOD = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


@pytest.mark.parametrize(("given", "mode"), [
    ("", "off"), ("0", "off"), ("OFF", "off"), ("1", "otlp"), ("otlp", "otlp"),
    ("console", "console"), ("jsonl:/tmp/s.jsonl", "jsonl:/tmp/s.jsonl"),
])
def test_the_modes(given: str, mode: str) -> None:
    assert Settings.from_env({"RECNOTIFY_OTEL": given}, discover=False).otel == mode


def test_off_is_the_default_and_a_bad_mode_is_one_line() -> None:
    assert Settings.from_env({}, discover=False).otel == "off"
    with pytest.raises(ConfigError) as caught:
        read_env({"RECNOTIFY_OTEL": "jaeger"})
    assert str(caught.value) == ("RECNOTIFY_OTEL='jaeger' is not valid: give "
                                 "off, otlp (or 1), console or jsonl:PATH")


def test_off_every_hook_is_the_shared_no_op_and_only_an_events_own_header_goes() -> None:
    assert telemetry.setup("off") is False and tracing.tracer() is None
    plain = validate_event({"type": "RECORDING_STARTED_EVENT"})
    headers: dict[str, str] = {}
    span = telemetry.attempt_span(plain, "crm", 1, "msg_x", headers)
    assert span is telemetry.NO_SPAN and headers == {} and span.traceparent is None
    assert span.done(200, "x") == "x"
    carried = validate_event({"type": "RECORDING_STARTED_EVENT", "traceparent": GOOD})
    assert telemetry.attempt_span(carried, "crm", 1, "msg_x", headers) is telemetry.NO_SPAN
    assert headers == {"traceparent": GOOD}
    assert telemetry.consume_spans([("1-0", b"", plain, [])], "s") is telemetry.NO_SPAN
    rows = [{"kind": "attempt", "traceparent": GOOD}]
    assert telemetry.flush_span(rows) is telemetry.NO_SPAN


def test_jsonl_mode_writes_each_finished_span_as_one_line(tmp_path: Path) -> None:
    path = tmp_path / "spans.jsonl"
    code = (
        "from workers.config import telemetry\n"
        "from producer.events import validate_event\n"
        f"assert telemetry.setup('jsonl:{path}')\n"
        f"event = validate_event({{'type': 'RECORDING_STARTED_EVENT', 'traceparent': '{GOOD}'}})\n"
        "headers = {'Traceparent': 'theirs'}\n"
        "with telemetry.attempt_span(event, 'crm', 2, 'msg_x', headers) as span:\n"
        "    span.done(503, 'retrying')\n"
        "assert list(headers) == ['traceparent'] and headers['traceparent'] == span.traceparent\n"
        "with telemetry.flush_span([{'traceparent': span.traceparent}, {}]):\n"
        "    pass\n"
    )
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True)
    deliver, flush = (json.loads(line) for line in path.read_text().splitlines())
    assert deliver["name"] == "recnotify deliver" and deliver["kind"] == "CLIENT"
    assert deliver["trace_id"] == GOOD[3:35] and deliver["parent_span_id"] == GOOD[36:52]
    assert deliver["attributes"]["recnotify.attempt"] == 2
    assert deliver["attributes"]["http.response.status_code"] == 503
    assert deliver["status"] == "ERROR"
    assert flush["links"] == [{"trace_id": deliver["trace_id"], "span_id": deliver["span_id"]}]
    assert flush["attributes"]["recnotify.records"] == 2
