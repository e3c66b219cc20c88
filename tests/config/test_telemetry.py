"""Tracing setup and hooks (workers/config/telemetry.py): off by default and a no-op."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
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


def test_otlp_mode_sends_the_spans_to_the_collector_the_standard_variables_name(
        redis_url: str, key_prefix: str, tmp_path: Path) -> None:
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
        ExportTraceServiceRequest,
    )

    posted: list[tuple[str, bytes]] = []

    class Collector(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            posted.append((self.path, self.rfile.read(int(self.headers["Content-Length"]))))
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Collector)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    env = {"PATH": "/usr/bin:/bin", "RECNOTIFY_OTEL": "otlp", "OTEL_SERVICE_NAME": "rec-test",
           "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{server.server_port}",
           "RECNOTIFY_REDIS_URL": redis_url, "RECNOTIFY_KEY_PREFIX": key_prefix,
           "RECNOTIFY_DATA_DIR": str(tmp_path)}
    try:
        done = subprocess.run(
            [sys.executable, "-m", "workers", "publish", "RECORDING_STARTED_EVENT",
             "--traceparent", GOOD], cwd=ROOT, env=env, capture_output=True, text=True,
            timeout=60)
    finally:
        server.shutdown()
    assert done.returncode == 0, done.stderr
    [(path, body)] = posted
    assert path == "/v1/traces"
    request = ExportTraceServiceRequest.FromString(body)
    [resource_spans] = request.resource_spans
    service = {a.key: a.value.string_value for a in resource_spans.resource.attributes}
    assert service["service.name"] == "rec-test"
    [span] = [s for scope in resource_spans.scope_spans for s in scope.spans]
    assert span.name == "recnotify publish" and span.trace_id.hex() == GOOD[3:35]
    assert span.parent_span_id.hex() == GOOD[36:52]
