"""Hostile input and outbound safety, round two (issue 13).

Each test is one finding of the outside probe, shown stopped: a poison stream entry,
an event id reused for other content, loopback and embedded-IPv4 bypasses of the
address rules, unbounded configuration input, and four small ones. Real Redis, real
consumers and workers, real HTTP receivers and connections.
"""

from __future__ import annotations

import json
import socket
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
import redis
from click.testing import CliRunner
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from producer import Publisher
from producer.errors import InvalidEvent
from producer.events import EVENT_TYPES, validate_event
from tests.admin_server import AdminServer
from tests.helpers import TEST_SECRET_KEY, WorkerFactory, fast_retry
from tests.receiver import Receiver
from tests.stream.test_consumer import Captured, make
from workers.cli.main import main
from workers.config.settings import Settings
from workers.delivery.attempt import send_once
from workers.destinations import InvalidDestination, load_file, parse_destination
from workers.http.netsafety import AddressRules, check_address, parse_cidrs
from workers.http.request import build_request
from workers.http.transport import Transport

GLOBAL = {"name": "g", "events": "all", "scope": "global", "url": "http://127.0.0.1:9/x"}
OVERFLOWING = ["9999-12-31T23:59:59.000-14:00", "0001-01-01T00:00:00.000+14:00"]


@pytest.fixture
def settings(redis_url: str, key_prefix: str, tmp_path: Path) -> Settings:
    return Settings.from_env({}, redis_url=redis_url, key_prefix=key_prefix,
                             data_dir=tmp_path, claim_idle_s=0.2, node_name="h1")


def dead_letters(client: redis.Redis, settings: Settings) -> list[dict[str, Any]]:
    records = [json.loads(r) for r in client.lrange(settings.keys.records, 0, -1)]
    return [r for r in records if r.get("kind") == "dead"]


def pending(client: redis.Redis, settings: Settings) -> int:
    return int(client.xpending(settings.keys.events, settings.keys.group)["pending"])


def drain(consumer: Any) -> None:
    """Read until the stream has nothing new (the first read is the own-pending one)."""
    consumer.step()
    while consumer.step():
        pass


def valid_event(ucid: str, event_type: str = "RECORDING_STARTED_EVENT") -> dict[str, Any]:
    return validate_event({"type": event_type, "params": {"UCID": ucid}}).to_dict()


# -- 1. a poison entry never blocks its batch ----------------------------------------------

@pytest.mark.parametrize("occurred_at", OVERFLOWING)
def test_publish_refuses_an_occurred_at_outside_the_utc_range(
        settings: Settings, redis_client: redis.Redis, occurred_at: str) -> None:
    publisher = Publisher(settings.redis_url, key_prefix=settings.key_prefix)
    with pytest.raises(InvalidEvent, match="occurred_at") as refused:
        publisher.publish("RECORDING_STARTED_EVENT", occurred_at=occurred_at)
    assert isinstance(refused.value, ValueError) and refused.value.field == "occurred_at"
    moment = datetime(9999, 12, 31, 23, 59, tzinfo=timezone(timedelta(hours=-14)))
    with pytest.raises(InvalidEvent, match="occurred_at"):
        publisher.publish("RECORDING_STARTED_EVENT", occurred_at=moment)
    assert redis_client.xlen(settings.keys.events) == 0


def test_a_poison_entry_is_dead_lettered_alone_and_its_neighbours_flow(
        settings: Settings, redis_client: redis.Redis) -> None:
    enqueue = Captured()
    consumer = make(settings, enqueue, GLOBAL)
    first, last = valid_event("before"), valid_event("after")
    redis_client.xadd(settings.keys.events, {"event": json.dumps(first)})
    for when in OVERFLOWING:
        poison = {"type": "RECORDING_STARTED_EVENT", "occurred_at": when}
        redis_client.xadd(settings.keys.events, {"event": json.dumps(poison)})
    redis_client.xadd(settings.keys.events, {"event": json.dumps(last)})
    drain(consumer)
    assert sorted(enqueue.tasks) == sorted([(first["id"], "g"), (last["id"], "g")])
    assert pending(redis_client, settings) == 0
    letters = dead_letters(redis_client, settings)
    assert len(letters) == 2
    assert all("occurred_at" in d["reason"] for d in letters), letters


#: Any JSON at all, and event-shaped objects whose fields hold any JSON.
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False)
    | st.text(max_size=30),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner,
                                                                max_size=4),
    max_leaves=12)
#: Times at and past the edges of the calendar, with any offset, and any text at all.
timestamps = st.one_of(
    st.sampled_from(OVERFLOWING),
    st.datetimes(timezones=st.timezones()).map(lambda d: d.isoformat()),
    st.builds(lambda y, h: f"{y:04d}-{'12-31T23:59:59' if y > 5000 else '01-01T00:00:00'}"
              f"{'+' if y < 5000 else '-'}{h:02d}:00", st.sampled_from([1, 2, 9998, 9999]),
              st.integers(0, 23)),
    json_values,
)
field_values = st.one_of(json_values, st.sampled_from((*EVENT_TYPES, "success", "failure")),
                         st.uuids().map(str), timestamps)
param_values = st.dictionaries(
    st.sampled_from(["UCID", "CALLEDAORS", "SEQUENCE", "FILESIZE", "X"]), field_values,
    max_size=3)
event_like = st.fixed_dictionaries(
    {"type": st.sampled_from(EVENT_TYPES)},
    optional={"occurred_at": timestamps, "id": field_values, "params": param_values,
              "result": field_values, "error": field_values, "schema": field_values,
              "route": field_values, "account": field_values, "realm": field_values},
)
entries = st.one_of(
    json_values.map(lambda v: {"event": json.dumps(v)}),
    event_like.map(lambda v: {"event": json.dumps(v)}),
    st.binary(max_size=40).map(lambda b: {"event": b}),
    st.dictionaries(st.text(min_size=1, max_size=8), st.text(max_size=8), min_size=1,
                    max_size=3),
)


def test_fuzz_no_stream_entry_can_block_another(settings: Settings,
                                                redis_client: redis.Redis) -> None:
    enqueue = Captured()
    consumer = make(settings, enqueue, GLOBAL)
    consumer.block_ms = 1
    drain(consumer)
    seen = {"dispatched": 0, "dead": 0}

    @given(entry=entries)
    @hsettings(max_examples=300, deadline=None, database=None,
               suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
    def one(entry: dict[str, Any]) -> None:
        before, after = valid_event("fuzz-before"), valid_event("fuzz-after")
        tasks_before = len(enqueue.tasks)
        letters_before = len(dead_letters(redis_client, settings))
        redis_client.xadd(settings.keys.events, {"event": json.dumps(before)})
        odd_id = redis_client.xadd(settings.keys.events, entry)
        redis_client.xadd(settings.keys.events, {"event": json.dumps(after)})
        drain(consumer)
        new_tasks = enqueue.tasks[tasks_before:]
        assert (before["id"], "g") in new_tasks and (after["id"], "g") in new_tasks, entry
        assert pending(redis_client, settings) == 0, entry
        odd_tasks = len(new_tasks) - 2
        odd_letters = len(dead_letters(redis_client, settings)) - letters_before
        assert (odd_tasks, odd_letters) in ((1, 0), (0, 1)), (entry, odd_id)
        seen["dispatched" if odd_tasks else "dead"] += 1

    one()
    assert seen["dispatched"] > 0 and seen["dead"] > 0, seen


# -- 2. one event id, one content ----------------------------------------------------------

@pytest.mark.parametrize("same_batch", [False, True])
def test_an_id_reused_for_other_content_is_dead_lettered_and_the_first_keeps_its_content(
        settings: Settings, redis_client: redis.Redis, same_batch: bool) -> None:
    enqueue = Captured()
    consumer = make(settings, enqueue, GLOBAL)
    first = valid_event("ucid-A")
    second = {**valid_event("ucid-B", "RECORDING_ENDED_EVENT"), "id": first["id"]}
    redis_client.xadd(settings.keys.events, {"event": json.dumps(first)})
    if not same_batch:
        drain(consumer)
    redis_client.xadd(settings.keys.events, {"event": json.dumps(second)})
    drain(consumer)
    assert enqueue.tasks == [(first["id"], "g")]
    stored = json.loads(redis_client.get(settings.keys.event(first["id"])) or b"{}")
    assert stored == first
    letters = dead_letters(redis_client, settings)
    assert len(letters) == 1, letters
    assert letters[0]["reason"].startswith("id reused with different content"), letters
    assert first["id"] in letters[0]["reason"]
    assert json.loads(letters[0]["event_json"]) == json.dumps(second)
    assert pending(redis_client, settings) == 0


def test_a_resend_of_the_same_content_stays_a_harmless_duplicate(
        settings: Settings, redis_client: redis.Redis) -> None:
    enqueue = Captured()
    consumer = make(settings, enqueue, GLOBAL)
    first = valid_event("ucid-A")
    redis_client.xadd(settings.keys.events, {"event": json.dumps(first)})
    drain(consumer)
    respelled = json.dumps(dict(reversed(list(first.items()))), indent=2)
    redis_client.xadd(settings.keys.events, {"event": json.dumps(first)})
    redis_client.xadd(settings.keys.events, {"event": respelled})
    drain(consumer)
    assert enqueue.tasks == [(first["id"], "g")] * 3
    assert dead_letters(redis_client, settings) == []
    assert json.loads(redis_client.get(settings.keys.event(first["id"])) or b"{}") == first


@pytest.mark.slow
def test_a_reused_id_never_swaps_the_content_of_a_notification_in_flight(
        workers: WorkerFactory, receiver: Receiver) -> None:
    receiver.script("/hook", [503, 200])
    workers.configure("destinations:\n  - " + json.dumps({
        "name": "crm", "events": "all", "scope": "global", "method": "POST",
        "url": receiver.url("/hook"),
        "retry": fast_retry(backoff_s=1.5, backoff_max_s=1.5)}) + "\n")
    workers.start(concurrency=2)
    first = valid_event("ucid-A")
    client = workers.redis
    client.xadd(workers.settings.keys.events, {"event": json.dumps(first)})
    receiver.wait_for(1)
    second = {**valid_event("ucid-B", "RECORDING_ENDED_EVENT"), "id": first["id"]}
    client.xadd(workers.settings.keys.events, {"event": json.dumps(second)})
    letters = workers.wait_dead_letters(1, timeout_s=20)
    receiver.wait_for(2)
    bodies = [r.json() for r in receiver.received()]
    assert [(b["type"], b["params"]["UCID"]) for b in bodies] == [
        ("RECORDING_STARTED_EVENT", "ucid-A")] * 2
    assert [d["reason"].split(":")[0] for d in letters] == ["id reused with different content"]


# -- 3. loopback and embedded-IPv4 bypasses --------------------------------------------------

LOOPBACK_DENIED = AddressRules(deny=parse_cidrs("127.0.0.0/8", where="test"))


@pytest.mark.parametrize("address", ["0.0.0.0", "::", "::1", "::ffff:0.0.0.0",
                                     "::ffff:127.0.0.1", "127.1.2.3"])
def test_a_127_rule_covers_the_unspecified_addresses_and_ipv6_loopback(address: str) -> None:
    assert check_address(address, LOOPBACK_DENIED) == "127.0.0.0/8"


def test_an_ipv6_loopback_rule_covers_ipv4_loopback_and_the_unspecified_addresses() -> None:
    rules = AddressRules(deny=parse_cidrs("::1/128", where="test"))
    for address in ("127.0.0.1", "127.9.9.9", "0.0.0.0", "::"):
        assert check_address(address, rules) == "::1/128", address


def test_loopback_aliases_cross_families_but_not_addresses_within_127() -> None:
    one = AddressRules(deny=parse_cidrs("127.0.0.1", where="test"))
    assert check_address("::1", one) == "127.0.0.1/32"
    assert check_address("127.0.0.2", one) is None
    allow = AddressRules(allow=(parse_cidrs("127.0.0.0/8", where="test"),))
    assert check_address("::1", allow) is None and check_address("0.0.0.0", allow) is None
    assert check_address("10.0.0.1", allow) == "outside allow list 127.0.0.0/8"


@pytest.mark.parametrize("address", [
    "::169.254.169.254",                         # IPv4-compatible
    "2002:a9fe:a9fe::1",                         # 6to4
    "2001:0:4136:e378:8000:63bf:5601:5601",      # Teredo, client 169.254.169.254
    "2001:0:a9fe:a9fe:8000:63bf:3fff:fdd2",      # Teredo, server 169.254.169.254
    "64:ff9b::a9fe:a9fe",                        # NAT64
])
def test_ipv6_forms_embedding_the_metadata_ipv4_are_refused(address: str) -> None:
    assert check_address(address, AddressRules()) == "169.254.0.0/16"


def test_embedded_ipv4_is_checked_against_configured_deny_rules() -> None:
    rules = AddressRules(deny=parse_cidrs("10.0.0.0/8", where="test"))
    for address in ("::10.1.2.3", "2002:a01:203::1", "64:ff9b::10.1.2.3"):
        assert check_address(address, rules) == "10.0.0.0/8", address
    assert check_address("2002:808:808::1", rules) is None


def test_tunnelled_ipv4_does_not_pass_an_allow_list_made_for_ipv4() -> None:
    # a 6to4 or Teredo address is a relay on the internet, not the private host it names
    rules = AddressRules(allow=(parse_cidrs("10.0.0.0/8", where="test"),))
    assert check_address("::ffff:10.1.2.3", rules) is None
    for address in ("2002:a01:203::1", "::10.1.2.3"):
        assert check_address(address, rules) == "outside allow list 10.0.0.0/8", address


@pytest.mark.slow
def test_unspecified_address_urls_are_refused_by_a_loopback_rule(
        workers: WorkerFactory, receiver: Receiver) -> None:
    hosts = {"zero": "0.0.0.0", "short": "0", "six": "[::]"}
    workers.configure("destinations:\n" + "".join(
        "  - " + json.dumps({"name": name, "events": "all", "scope": "global",
                             "url": f"http://{host}:{receiver.port}/{name}"}) + "\n"
        for name, host in hosts.items()))
    workers.start(concurrency=2, RECNOTIFY_DENY_CIDRS="127.0.0.0/8")
    workers.publisher().publish("RECORDING_STARTED_EVENT", params={"UCID": "zero"})
    letters = workers.wait_dead_letters(3, timeout_s=30)
    got = {str(d["destination"]): str(d["reason"]) for d in letters}
    assert sorted(got) == sorted(hosts), got
    assert all("matches rule 127.0.0.0/8" in reason for reason in got.values()), got
    assert receiver.received() == []


# -- 4. bounded configuration input ---------------------------------------------------------

def alias_bomb(field: str, levels: int = 6) -> str:
    """A "billion laughs" (10**levels leaves) in one destination's ``field``."""
    head = ('destinations:\n  - name: bomb\n    events: all\n    url: http://10.0.0.5/x\n'
            f'    {field}:\n      l0: &a0 ["lol","lol","lol","lol","lol","lol","lol","lol",'
            '"lol","lol"]\n')
    body = "".join(f"      l{n}: &a{n} [" + ",".join([f"*a{n - 1}"] * 10) + "]\n"
                   for n in range(1, levels + 1))
    return head + body


@pytest.mark.parametrize("field", ["params", "headers"])
def test_an_alias_bomb_is_refused_naming_the_expansion_limit(field: str) -> None:
    with pytest.raises(InvalidDestination, match=r"aliases expand to more than [\d,]+ nodes"):
        load_file(alias_bomb(field))


def test_a_few_aliases_are_still_fine() -> None:
    text = ('x-url: &u http://10.0.0.5/x\ndestinations:\n'
            '  - {name: a, events: all, url: *u}\n  - {name: b, events: all, url: *u}\n')
    with pytest.raises(InvalidDestination, match="expected one key `destinations:`"):
        load_file(text)
    shared = ('destinations:\n  - &d {name: a, events: all, url: http://10.0.0.5/x,'
              ' headers: &h {X-A: "1", X-B: "2"}}\n'
              '  - {name: b, events: all, url: http://10.0.0.6/x, headers: *h}\n')
    assert [d.name for d in load_file(shared)] == ["a", "b"]


def test_a_file_over_the_size_limit_is_refused_before_parsing() -> None:
    from workers.destinations import MAX_FILE_BYTES

    text = "destinations:\n" + "#" * MAX_FILE_BYTES + "\n"
    with pytest.raises(InvalidDestination, match=f"over the limit of {MAX_FILE_BYTES:,} bytes"):
        load_file(text)


def test_a_file_with_too_many_entries_is_refused_naming_the_limit() -> None:
    from workers.destinations import MAX_ENTRIES

    text = "destinations:\n" + "".join(
        f"  - {{name: d{n}, events: all, url: http://10.0.0.5/x}}\n"
        for n in range(MAX_ENTRIES + 1))
    with pytest.raises(InvalidDestination, match=f"more than {MAX_ENTRIES:,} entries"):
        load_file(text)


@pytest.mark.parametrize(("field", "value"), [
    ("params", "a=" + "x" * 9000),
    ("url", "http://10.0.0.5/" + "x" * 9000),
    ("scope", "route:" + "x" * 9000),
    ("headers", {"X-Big": "v" * 9000}),
    ("params", {"RECORDING_STARTED_EVENT": "a=" + "x" * 50_000_000}),
])
def test_a_field_over_its_length_limit_is_refused_naming_the_limit(
        field: str, value: Any) -> None:
    data = {"name": "long", "events": "all", "url": "http://10.0.0.5/x", field: value}
    with pytest.raises(InvalidDestination) as refused:
        parse_destination(data)
    message = str(refused.value)
    assert "characters, over the limit of 8,192" in message, message[:300]
    assert len(message) < 600


def test_a_list_over_its_length_limit_is_refused_naming_the_limit() -> None:
    data = {"name": "many", "events": list(EVENT_TYPES) * 1000, "url": "http://10.0.0.5/x"}
    with pytest.raises(InvalidDestination, match="over the limit of 256"):
        parse_destination(data)


@pytest.fixture
def cli(redis_url: str, key_prefix: str, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> CliRunner:
    monkeypatch.setenv("RECNOTIFY_REDIS_URL", redis_url)
    monkeypatch.setenv("RECNOTIFY_KEY_PREFIX", key_prefix)
    monkeypatch.setenv("RECNOTIFY_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("RECNOTIFY_SECRET_KEY", TEST_SECRET_KEY)
    monkeypatch.delenv("RECNOTIFY_DATABASE_URL", raising=False)
    runner = CliRunner()
    assert runner.invoke(main, ["db", "upgrade"]).exit_code == 0
    return runner


def test_import_of_an_alias_bomb_or_a_huge_file_is_one_line_naming_the_limit(
        cli: CliRunner, tmp_path: Path) -> None:
    from workers.destinations import MAX_FILE_BYTES

    bomb = tmp_path / "bomb.yaml"
    bomb.write_text(alias_bomb("params"))
    huge = tmp_path / "huge.yaml"
    with huge.open("w") as out:
        out.write("destinations:\n")
        out.write("#" * (MAX_FILE_BYTES + 1) + "\n")
    for path, limit in ((bomb, "aliases expand to more than"),
                        (huge, f"over the limit of {MAX_FILE_BYTES:,} bytes")):
        result = cli.invoke(main, ["destinations", "import", str(path)])
        assert result.exit_code == 1, result.output
        lines = [line for line in result.output.splitlines() if line.startswith("error:")]
        assert len(lines) == 1 and limit in lines[0], result.output
        assert "Traceback" not in result.output


def test_admin_api_refuses_an_oversized_body_naming_the_limit(admin: AdminServer) -> None:
    from workers.admin.bodies import MAX_BODY_BYTES

    body = {"name": "big", "events": "all", "url": "http://10.0.0.5/x",
            "params": "a=" + "x" * (MAX_BODY_BYTES + 10)}
    for method, path in (("POST", "/api/destinations"), ("PUT", "/api/destinations/big")):
        answer = admin.call(method, path, json=body)
        assert answer.status_code == 413, answer.text[:300]
        message = answer.json()["errors"][0]["message"]
        assert f"over the limit of {MAX_BODY_BYTES:,} bytes" in message, message
    chunked = admin.call("POST", "/api/destinations",
                         data=iter([b'{"name": "big", "params": "', b"x" * (MAX_BODY_BYTES + 1),
                                    b'"}']),
                         headers={"Content-Type": "application/json"})
    assert chunked.status_code == 413, chunked.text[:300]
    assert admin.call("GET", "/api/destinations").json() == []


# -- 5. small ones ----------------------------------------------------------------------------

def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def attempt(url: str) -> Any:
    dest = parse_destination({"name": "d", "events": "all", "url": url, "timeout_s": 5})
    event = validate_event({"type": "RECORDING_STARTED_EVENT"})
    request = build_request(event, dest, nid="msg_x", now_s=time.time())
    transport = Transport()
    try:
        return send_once(transport, AddressRules(), dest, request)
    finally:
        transport.close()


def test_a_refused_connection_is_reported_as_refused_not_as_a_timeout() -> None:
    result = attempt(f"http://127.0.0.1:{closed_port()}/x")
    assert result.status is None and result.retryable
    assert result.error.startswith("connection refused or unreachable"), result.error
    assert "timeout" not in result.error


@pytest.mark.parametrize("result", [False, 0, "", True, 1, None, "SUCCESS"])
def test_result_must_be_exactly_success_or_failure(result: Any) -> None:
    data = {"type": "RECORDING_STARTED_EVENT", "result": result}
    if result is None:
        assert validate_event(data).result == "success"  # null is the same as absent
        return
    with pytest.raises(InvalidEvent, match="result") as refused:
        validate_event(data)
    assert refused.value.field == "result"


@pytest.mark.parametrize("schema", [1.0, "1", True, 2, None])
def test_schema_must_be_exactly_the_supported_integer(schema: Any) -> None:
    with pytest.raises(InvalidEvent, match="schema") as refused:
        validate_event({"type": "RECORDING_STARTED_EVENT", "schema": schema})
    assert refused.value.field == "schema"
    assert validate_event({"type": "RECORDING_STARTED_EVENT", "schema": 1}).to_dict()["schema"] == 1


def test_a_link_local_literal_with_a_zone_id_is_refused_naming_the_rule() -> None:
    result = attempt("http://[fe80::1%25lo]/x")
    assert result.retryable is False
    assert "matches rule fe80::/10" in result.error, result.error


@pytest.mark.parametrize("url", ["https://user:pa/ss@crm.example.com/hook",
                                 "https://user:p?w#d@crm.example.com/hook"])
def test_a_password_with_an_unencoded_delimiter_is_masked_in_the_refusal(url: str) -> None:
    with pytest.raises(InvalidDestination) as refused:
        parse_destination({"name": "crm", "events": "all", "url": url})
    message = str(refused.value)
    assert "********" in message and "%2F" in message, message
    for secret in ("pa/ss", "p?w#d", "user:"):
        assert secret not in message and secret not in repr(refused.value.errors), message


def test_the_admin_api_422_masks_a_password_with_a_slash(admin: AdminServer) -> None:
    body = {"name": "crm", "events": "all", "url": "https://user:pa/ss@crm.example.com/hook"}
    answer = admin.call("POST", "/api/destinations", json=body)
    assert answer.status_code == 422, answer.text
    assert "pa/ss" not in answer.text and "********" in answer.text, answer.text
