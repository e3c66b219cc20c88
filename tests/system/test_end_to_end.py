"""End to end on real parts: a real Redis, real `recnotify worker` processes and a
real HTTP receiver. Every check is made from the receiver's side."""

from __future__ import annotations

import json
import time
from urllib.parse import parse_qs, urlsplit

import pytest

from tests.helpers import WorkerFactory
from tests.receiver import Receiver
from workers.http.request import notification_id
from workers.http.signing import generate_secret, verify

pytestmark = pytest.mark.slow


def yaml_dest(
    name: str,
    url: str,
    scope: str = "global",
    events: str = "all",
    params: str = "",
    **extra: object,
) -> str:
    lines = [
        f"  - name: {name}",
        f"    events: {events}",
        f"    scope: '{scope}'",
        f"    url: '{url}'",
        f"    params: '{params}'",
    ]
    for key, value in extra.items():
        lines.append(f"    {key}: {json.dumps(value)}")
    return "\n".join(lines) + "\n"


def config(*dests: str) -> str:
    return "destinations:\n" + "".join(dests)


def test_face_preset_receives_the_spec_url_for_a_started_recording(
    workers: WorkerFactory, receiver: Receiver
) -> None:
    # Given a FACE destination on a route
    workers.configure(
        config(
            "  - name: face\n    preset: face\n    scope: route:support-line\n"
            f"    url: {receiver.url('/Face/eventNotify')}\n"
        )
    )
    workers.start()
    # When the recorder publishes RECORDING_STARTED_EVENT then RECORDING_ENDED_EVENT
    pub = workers.publisher()
    params = {"UCID": "13-23132@1.2.3.4", "CALLEDAORS": ["sip:7654321@1.2.3.1:5060"]}
    pub.publish("RECORDING_STARTED_EVENT", route="support-line", params=params)
    pub.publish("RECORDING_PAUSED_EVENT", route="support-line", params=params)
    pub.publish("RECORDING_ENDED_EVENT", route="support-line", params=params)
    # Then FACE gets exactly the SPEC 5 URL for each (and nothing for PAUSED)
    got = receiver.wait_for(2)
    time.sleep(0.5)
    targets = sorted(r.target for r in receiver.received())
    assert targets == sorted(
        [
            "/Face/eventNotify?event=AudioRecordingStarted&calledAors=sip%3A7654321%401.2.3.1%3A5060"
            "&ucid=13-23132%401.2.3.4",
            "/Face/eventNotify?event=AudioRecordingEnded&calledAors=sip%3A7654321%401.2.3.1%3A5060"
            "&ucid=13-23132%401.2.3.4",
        ]
    )
    assert all(
        r.method == "GET"
        and r.header(
            "User-Agent",
        ).startswith("recnotify/")
        for r in got
    )


def test_every_scope_and_redundant_sinks_each_get_one_notification(
    workers: WorkerFactory, receiver: Receiver
) -> None:
    workers.configure(
        config(
            yaml_dest("by-route", receiver.url("/route"), "route:r1"),
            yaml_dest("by-account", receiver.url("/account"), "account:a1"),
            yaml_dest("by-account-2", receiver.url("/account2"), "account:a1"),
            yaml_dest("by-realm", receiver.url("/realm"), "realm:x1"),
            yaml_dest("everything", receiver.url("/global"), "global"),
            yaml_dest("other-route", receiver.url("/other"), "route:r2"),
        )
    )
    workers.start()
    event_id = workers.publisher().publish(
        "SEGMENT_STARTED_EVENT", route="r1", account="a1", realm="x1", params={"UCID": "u1"}
    )
    got = receiver.wait_for(5)
    time.sleep(0.5)
    assert sorted(r.path for r in receiver.received()) == [
        "/account",
        "/account2",
        "/global",
        "/realm",
        "/route",
    ]
    ids = {r.header("webhook-id") for r in got}
    assert len(ids) == 5, "each destination gets its own notification id"
    assert notification_id(event_id, "by-route") in ids


def test_scope_matching_is_exact_and_case_sensitive(
    workers: WorkerFactory, receiver: Receiver
) -> None:
    workers.configure(config(yaml_dest("r", receiver.url("/r"), "route:Support")))
    workers.start()
    pub = workers.publisher()
    pub.publish("RECORDING_STARTED_EVENT", route="support")
    pub.publish("RECORDING_STARTED_EVENT", route="Support", params={"UCID": "yes"})
    got = receiver.wait_for(1)
    time.sleep(0.5)
    assert len(receiver.received()) == 1 and got[0].path == "/r"


def test_failure_result_reaches_failure_only_destination_and_not_success_only(
    workers: WorkerFactory, receiver: Receiver
) -> None:
    workers.configure(
        config(
            yaml_dest(
                "failures",
                receiver.url("/failures"),
                results=["failure"],
                params="result=%RESULT%&error=%ERROR%",
            ),
            yaml_dest("successes", receiver.url("/successes"), results=["success"]),
        )
    )
    workers.start()
    workers.publisher().publish(
        "RECORDING_PAUSED_EVENT",
        result="failure",
        error="disk full: /var/rec",
        params={"UCID": "u"},
    )
    got = receiver.wait_for(1)
    time.sleep(0.5)
    assert [r.path for r in receiver.received()] == ["/failures"]
    assert got[0].query == {"result": ["failure"], "error": ["disk full: /var/rec"]}


def test_json_preset_posts_the_signed_body(workers: WorkerFactory, receiver: Receiver) -> None:
    secret = generate_secret()
    workers.configure(
        config(
            f"  - name: hook\n    preset: json\n    scope: global\n    url: {receiver.url('/j')}\n"
            f"    secret: {secret}\n"
        )
    )
    workers.start()
    event_id = workers.publisher().publish(
        "SEGMENT_ENDED_EVENT",
        account="acme",
        params={"UCID": "u9", "FILESIZE": 1234, "FILENAME": "a b.wav"},
    )
    (got,) = receiver.wait_for(1)
    body = got.json()
    assert got.method == "POST" and got.header("Content-Type") == "application/json"
    assert body["id"] == event_id and body["type"] == "SEGMENT_ENDED_EVENT"
    assert body["params"] == {"UCID": "u9", "FILESIZE": 1234, "FILENAME": "a b.wav"}
    assert body["destination"] == "hook" and body["account"] == "acme"
    assert got.header("webhook-id") == notification_id(event_id, "hook")
    assert verify(
        secret,
        got.header("webhook-id") or "",
        int(got.header("webhook-timestamp") or 0),
        got.body,
        got.header("webhook-signature") or "",
    )
    assert got.header("X-Recnotify-Event") == "SEGMENT_ENDED_EVENT"


def test_get_signature_covers_the_request_target(
    workers: WorkerFactory, receiver: Receiver
) -> None:
    secret = generate_secret()
    workers.configure(
        config(yaml_dest("signed-get", receiver.url("/g"), params="ucid=%UCID%", secret=secret))
    )
    workers.start()
    workers.publisher().publish("RECORDING_STARTED_EVENT", params={"UCID": "é&x"})
    (got,) = receiver.wait_for(1)
    assert got.target == "/g?ucid=%C3%A9%26x"
    assert verify(
        secret,
        got.header("webhook-id") or "",
        int(got.header("webhook-timestamp") or 0),
        got.target.encode(),
        got.header("webhook-signature") or "",
    )


def test_503_503_200_is_retried_to_success_with_one_webhook_id(
    workers: WorkerFactory, receiver: Receiver
) -> None:
    receiver.script("/flaky", [503, 503, 200])
    workers.configure(
        config(
            yaml_dest(
                "flaky",
                receiver.url("/flaky"),
                retry={"max_attempts": 5, "backoff_s": 0.05, "backoff_max_s": 0.1},
            )
        )
    )
    workers.start()
    workers.publisher().publish("RECORDING_STARTED_EVENT")
    got = receiver.wait_for(3)
    time.sleep(1.0)
    assert len(receiver.received()) == 3, "no attempt after the 200"
    assert len({r.header("webhook-id") for r in got}) == 1
    assert workers.store.list_dead_letters() == []


def test_404_is_final_after_one_attempt_and_dead_lettered(
    workers: WorkerFactory, receiver: Receiver
) -> None:
    receiver.script("/gone", [404])
    workers.configure(
        config(
            yaml_dest(
                "missing", receiver.url("/gone"), retry={"max_attempts": 5, "backoff_s": 0.05}
            )
        )
    )
    workers.start()
    event_id = workers.publisher().publish("RECORDING_ENDED_EVENT")
    receiver.wait_for(1)
    letters = workers.wait_dead_letters(1)
    time.sleep(0.5)
    assert len(receiver.received()) == 1
    assert len(letters) == 1 and letters[0]["event_id"] == event_id
    assert letters[0]["destination"] == "missing"
    assert [a["status"] for a in letters[0]["attempts"]] == [404]


def test_dead_letter_after_exhausted_retries_is_replayed_with_the_same_id(
    workers: WorkerFactory, receiver: Receiver
) -> None:
    # Given a receiver that fails every attempt
    receiver.script("/down", [500])
    workers.configure(
        config(
            yaml_dest(
                "down",
                receiver.url("/down"),
                retry={"max_attempts": 3, "backoff_s": 0.05, "backoff_max_s": 0.1},
            )
        )
    )
    workers.start()
    workers.publisher().publish("RECORDING_STARTED_EVENT", params={"UCID": "r1"})
    # Then after 3 attempts it is a dead letter with each attempt's status
    (letter,) = workers.wait_dead_letters(1)
    assert [a["status"] for a in letter["attempts"]] == [500, 500, 500]
    assert "3 attempts" in letter["reason"]
    first_id = receiver.received()[0].header("webhook-id")
    # When the receiver recovers and the dead letter is replayed
    receiver.script("/down", [200])
    from workers.ops.replay import replay_dead_letters
    from workers.taskqueue.app import create_app
    from workers.taskqueue.enqueue import make_enqueue

    count = replay_dead_letters(
        workers.settings, workers.store, workers.redis, make_enqueue(create_app(workers.settings))
    )
    assert count == 1
    got = receiver.wait_for(4)
    assert got[-1].header("webhook-id") == first_id
    assert workers.store.list_dead_letters() == []


def test_event_xadded_with_plain_redis_commands_is_delivered(
    workers: WorkerFactory, receiver: Receiver
) -> None:
    workers.configure(
        config(yaml_dest("any", receiver.url("/x"), params="id=%EVENTID%&u=%UCID%&t=%TIMESTAMP%"))
    )
    workers.start()
    client = workers.redis
    entry_id = client.xadd(
        workers.settings.keys.events,
        {"event": json.dumps({"type": "RECORDING_STARTED_EVENT", "params": {"UCID": "x@y"}})},
    )
    (got,) = receiver.wait_for(1)
    query = got.query
    assert query["u"] == ["x@y"]
    assert len(query["id"][0]) == 36, "an id is derived from the stream entry"
    millis = int(entry_id.decode().split("-")[0])
    assert query["t"][0].endswith("Z") and str(millis)[-3:] in query["t"][0]


def test_garbage_stream_entries_are_dead_lettered_and_do_not_stop_the_worker(
    workers: WorkerFactory, receiver: Receiver
) -> None:
    workers.configure(config(yaml_dest("any", receiver.url("/ok"))))
    proc = workers.start()
    client = workers.redis
    stream = workers.settings.keys.events
    client.xadd(stream, {"event": b"{not json"})
    client.xadd(stream, {"event": json.dumps({"type": "NO_SUCH_EVENT"})})
    client.xadd(stream, {"event": b"\xff\xfe"})
    client.xadd(stream, {"other": "field"})
    client.xadd(stream, {"event": "[" * 100_000})
    workers.publisher().publish("RECORDING_STARTED_EVENT")
    receiver.wait_for(1)
    letters = workers.wait_dead_letters(5)
    assert proc.poll() is None
    reasons = " | ".join(d["reason"] for d in letters)
    assert "not valid JSON" in reasons and "NO_SUCH_EVENT" in reasons
    assert "UTF-8" in reasons and "no 'event' field" in reasons
    assert len(letters) == 5


def test_destination_added_while_the_worker_runs_applies_within_two_seconds(
    workers: WorkerFactory, receiver: Receiver
) -> None:
    workers.configure(config(yaml_dest("first", receiver.url("/first"))))
    workers.start()
    workers.configure(config(yaml_dest("second", receiver.url("/second"))))
    time.sleep(2.0)
    workers.publisher().publish("RECORDING_RESUMED_EVENT")
    receiver.wait_for(2)
    assert sorted(r.path for r in receiver.received()) == ["/first", "/second"]


def test_events_published_before_any_worker_started_are_delivered(
    workers: WorkerFactory, receiver: Receiver
) -> None:
    workers.configure(config(yaml_dest("early", receiver.url("/early"), params="u=%UCID%")))
    pub = workers.publisher()
    for i in range(5):
        pub.publish("RECORDING_STARTED_EVENT", params={"UCID": f"u{i}"})
    workers.start()
    got = receiver.wait_for(5)
    assert sorted(r.query["u"][0] for r in got) == [f"u{i}" for i in range(5)]


def test_postgresql_store_drives_delivery(
    workers: WorkerFactory, receiver: Receiver, postgres_url: str
) -> None:
    workers.use_database(postgres_url)
    workers.configure(config(yaml_dest("pg", receiver.url("/pg"), params="u=%UCID%")))
    workers.start()
    workers.publisher().publish("RECORDING_STARTED_EVENT", params={"UCID": "pg-1"})
    (got,) = receiver.wait_for(1)
    assert got.query == {"u": ["pg-1"]}
    deadline = time.time() + 10
    while time.time() < deadline and not workers.store.list_attempts(destination="pg"):
        time.sleep(0.1)
    (attempt,) = workers.store.list_attempts(destination="pg")
    assert attempt["status"] == 200 and attempt["outcome"] == "delivered"


def test_rendered_url_round_trips_hostile_values(
    workers: WorkerFactory, receiver: Receiver
) -> None:
    workers.configure(
        config(
            yaml_dest("rt", receiver.url("/rt"), params="a=%CALLINGAOR%&c=%CALLEDAORS%&lit=%C3%A9")
        )
    )
    workers.start()
    hostile = '"José Müller" <sip:jm@ex.com>&x=1#frag?q\r\nInjected: yes'
    workers.publisher().publish(
        "RECORDING_STARTED_EVENT", params={"CALLINGAOR": hostile, "CALLEDAORS": ["a@b", "c d"]}
    )
    (got,) = receiver.wait_for(1)
    query = parse_qs(urlsplit(got.target).query)
    assert query["a"] == [hostile]
    assert query["c"] == ["a@b,c d"]
    assert query["lit"] == ["é"]
    assert got.header("Injected") is None
