"""Log lines: JSON on request, with the notification id and destination as fields."""

from __future__ import annotations

import json
import logging

import pytest

from workers.logs import JsonFormatter, NotificationFields


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


@pytest.mark.parametrize("path", ["workers/deliver.py"])
def test_every_deliver_log_line_about_a_notification_follows_the_convention(path: str) -> None:
    import re
    from pathlib import Path

    source = (Path(__file__).resolve().parent.parent / path).read_text()
    messages = re.findall(r'log\.(?:info|warning|error|exception|debug)\(\s*"([^"]*)', source)
    about = [m for m in messages if "notification %s" in m]
    assert about, "found no log lines to check"
    assert all(m.startswith("notification %s to %s") for m in about), about
