"""Log lines: JSON on request, with the notification id and destination as fields."""

from __future__ import annotations

import json
import logging
from typing import Any

import pytest

from workers.config.logs import JsonFormatter, NotificationFields


def render(logger_name: str, msg: str, *args: object) -> dict[str, object]:
    record = logging.LogRecord(logger_name, logging.INFO, __file__, 1, msg, args, None)
    NotificationFields().filter(record)
    return dict(json.loads(JsonFormatter().format(record)))


def test_a_line_about_a_notification_carries_its_id_and_destination_as_fields() -> None:
    out = render("recnotify.deliver", "notification %s to %s delivered: HTTP %s", "msg_1",
                 "crm", 200)
    assert out["notification_id"] == "msg_1" and out["destination"] == "crm"
    assert out["message"] == "notification msg_1 to crm delivered: HTTP 200"
    assert out["level"] == "info" and str(out["ts"]).endswith("Z")


def test_other_lines_have_no_notification_fields() -> None:
    out = render("recnotify.consumer", "created consumer group %s on %s", "g", "s")
    assert "notification_id" not in out and "destination" not in out


@pytest.mark.parametrize("path", ["workers/delivery/deliverer.py"])
def test_every_deliver_log_line_about_a_notification_follows_the_convention(path: str) -> None:
    import re
    from pathlib import Path

    source = (Path(__file__).resolve().parents[2] / path).read_text()
    messages = re.findall(r'log\.(?:info|warning|error|exception|debug)\(\s*"([^"]*)', source)
    about = [m for m in messages if "notification %s" in m]
    assert about, "found no log lines to check"
    assert all(m.startswith("notification %s to %s") for m in about), about


def test_a_real_workers_json_lines_about_a_notification_carry_every_field(
        workers: Any, receiver: Any) -> None:
    """Issue 15: event_id, notification_id, destination, attempt, status, latency_ms, node
    and the Celery task id on every line about a notification (a Flower task id and a
    receiver's webhook-id both lead to the lines)."""
    import time
    import uuid

    from workers.http.request import notification_id

    receiver.script("/logs", [503, 200])
    workers.configure("destinations:\n  - name: crm\n    events: all\n    scope: global\n"
                      f"    url: {receiver.url('/logs')}\n"
                      "    retry: {max_attempts: 3, backoff_s: 0.1, backoff_max_s: 0.1}\n")
    proc = workers.start(RECNOTIFY_LOG_FORMAT="json")
    event_id = workers.publisher().publish("RECORDING_STARTED_EVENT")
    got = receiver.wait_for(2)
    nid = notification_id(event_id, "crm")
    assert {r.header("webhook-id") for r in got} == {nid}
    deadline = time.monotonic() + 10
    while True:
        lines = [json.loads(line) for line in workers.log(proc).splitlines()
                 if line.startswith("{")]
        mine = [line for line in lines if line.get("notification_id") == nid]
        if any("delivered" in line["message"] for line in mine) or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    failed = next(line for line in mine if "failed" in line["message"])
    delivered = next(line for line in mine if "delivered" in line["message"])
    for line, attempt, status in ((failed, 1, 503), (delivered, 2, 200)):
        assert line["event_id"] == event_id and line["destination"] == "crm"
        assert line["attempt"] == attempt and line["status"] == status
        assert isinstance(line["latency_ms"], float) and line["node"].endswith("-w0")
        uuid.UUID(line["task_id"])  # the Celery task's id, as Flower shows it
