"""Destinations (SPEC 4): validation messages, presets, masking, the YAML file format."""

from __future__ import annotations

from typing import Any

import pytest

from producer.events import EVENT_TYPES
from workers.destinations import (
    MASK,
    PRESETS,
    CircuitOptions,
    Destination,
    Header,
    InvalidDestination,
    TlsOptions,
    dump_file,
    join_secrets,
    load_file,
    parse_destination,
    split_secrets,
)
from workers.destinations.backoff import RetryPolicy
from workers.http.signing import generate_secret

STARTED = "RECORDING_STARTED_EVENT"
ENDED = "RECORDING_ENDED_EVENT"
SECRET = generate_secret()


def base(**overrides: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "name": "face-started",
        "events": [STARTED],
        "scope": "route:support-line",
        "url": "https://10.0.0.5:8443/Face/eventNotify",
        "params": "event=AudioRecordingStarted&calledAors=%CALLEDAORS%&ucid=%UCID%",
    }
    data.update(overrides)
    return data


def refusal(data: dict[str, Any], existing: Destination | None = None) -> InvalidDestination:
    with pytest.raises(InvalidDestination) as info:
        parse_destination(data, existing=existing)
    return info.value


def test_minimal_destination_gets_spec_defaults() -> None:
    dest = parse_destination(base())
    assert dest.events == (STARTED,)
    assert (dest.scope_kind, dest.scope_value) == ("route", "support-line")
    assert dest.method == "GET"
    assert dest.results == ("success", "failure")
    assert dest.timeout_s == 10.0
    assert dest.tls == TlsOptions(verify=True)
    assert dest.circuit == CircuitOptions(failures=5, reset_s=30.0)
    assert dest.retry == RetryPolicy(max_attempts=8, backoff_s=1.0, backoff_max_s=600.0)
    assert (dest.enabled, dest.ordered, dest.secret, dest.has_secrets) == (True, False, None, False)
    assert dest.on_dead_letter == "continue"


def test_global_scope_has_no_scope_value() -> None:
    dest = parse_destination(base(scope="global", params=""))
    assert (dest.scope_kind, dest.scope_value) == ("global", None)


@pytest.mark.parametrize(
    ("overrides", "field", "shown"),
    [
        (
            {"events": [STARTED, "RECORDING_START"]},
            "events",
            "unknown event type 'RECORDING_START'",
        ),
        ({"events": []}, "events", "[]"),
        ({"events": "some"}, "events", "'some'"),
        ({"scope": "route"}, "scope", "'route'"),
        ({"scope": "tenant:x"}, "scope", "'tenant:x'"),
        ({"scope": "route:"}, "scope", "'route:'"),
        ({"url": "ftp://host/x"}, "url", "'ftp://host/x'"),
        ({"url": "/relative/path"}, "url", "'/relative/path'"),
        ({"url": "https://host/x#frag"}, "url", "#fragment"),
        ({"url": "https://host:99999/"}, "url", "'https://host:99999/'"),
        ({"url": "https://host/a b"}, "url", "'https://host/a b'"),
        ({"preset": "nope"}, "preset", "'nope'"),
        ({"timeout_s": 0}, "timeout_s", "0 is not"),
        ({"timeout_s": 61}, "timeout_s", "61 is not"),
        ({"timeout_s": "5"}, "timeout_s", "'5' is not"),
        ({"evnts": [STARTED]}, "evnts", "did you mean 'events'"),
        ({"name": ""}, "name", "''"),
        ({"name": "x" * 101}, "name", "1-100 characters"),
        ({"method": "PUT"}, "method", "'PUT'"),
        ({"results": ["success", "ok"]}, "results", "'ok'"),
        ({"results": []}, "results", "[]"),
        ({"headers": {"Bad Name": "v"}}, "headers.Bad Name", "'Bad Name'"),
        ({"headers": {"X-A": "v\r\nInjected: 1"}}, "headers.X-A", "without CR, LF or NUL"),
        ({"headers": {"webhook-signature": "v"}}, "headers.webhook-signature", "cannot be"),
        ({"headers": {"X-A": "1", "x-a": "2"}}, "headers.x-a", "twice"),
        ({"allow_cidrs": ["10.0.0.0/33"]}, "allow_cidrs", "'10.0.0.0/33'"),
        ({"deny_cidrs": "nonsense"}, "deny_cidrs", "'nonsense'"),
        ({"retry": {"max_attempts": 0}}, "retry.max_attempts", "got 0"),
        ({"retry": {"backoff_s": 10, "backoff_max_s": 5}}, "retry.backoff_max_s", "got 5"),
        ({"retry": {"policy": "fast"}}, "retry.policy", "'fast'"),
        ({"retry": {"tries": 3}}, "retry.tries", "unknown field 'tries'"),
        ({"circuit": {"failures": 0}}, "circuit.failures", "0 is not"),
        ({"circuit": {"reset_s": -1}}, "circuit.reset_s", "-1 is not"),
        ({"tls": {"verify": "no"}}, "tls.verify", "'no' is not"),
        ({"tls": {"client_key": "/k.pem"}}, "tls.client_key", "needs client_cert"),
        ({"rate_limit_per_s": 0}, "rate_limit_per_s", "0 is not"),
        ({"max_in_flight": 1.5}, "max_in_flight", "1.5 is not"),
        ({"ordered": "yes"}, "ordered", "'yes' is not"),
        ({"enabled": None}, "enabled", "None is not"),
        ({"on_dead_letter": "drop"}, "on_dead_letter", "'drop' is not"),
        ({"params": 5}, "params", "5 is not"),
    ],
)
def test_refused_field_message_names_destination_field_and_value(
    overrides: dict[str, Any], field: str, shown: str
) -> None:
    error = refusal(base(**overrides))
    assert [e.field for e in error.errors] == [field]
    message = error.errors[0].message
    name = overrides.get("name", "face-started")
    label = repr(name) if name else "(unnamed)"
    assert message.startswith(f"destination {label}: {field}: ") or (
        field.startswith("retry.") and message.startswith(f"destination {label}: {field} ")
    )
    assert shown in message


def test_placeholder_missing_from_the_event_type_is_refused_with_valid_names() -> None:
    error = refusal(base(params="a=%FOO%&b=%UCID%"))
    assert error.errors[0].message == (
        "destination 'face-started': params: placeholder %FOO% is not a parameter of "
        "RECORDING_STARTED_EVENT (valid: ACCOUNT, CALLEDAORS, CALLID, CALLINGAOR, ERROR, EVENT, "
        "EVENTID, REALM, RECORDINGID, RESULT, ROUTE, RSS, SESSIONID, STARTTIME, TIMESTAMP, UCID)"
    )


def test_single_template_placeholder_must_exist_in_every_event_type() -> None:
    error = refusal(base(events=[STARTED, "RECORDING_PAUSED_EVENT"], params="t=%STARTTIME%"))
    assert "%STARTTIME% is not a parameter of RECORDING_PAUSED_EVENT" in str(error)
    ok = parse_destination(base(events=[STARTED, ENDED], params="t=%STARTTIME%&u=%UCID%"))
    assert ok.template_for(ENDED) == "t=%STARTTIME%&u=%UCID%"


def test_literal_percent_escapes_are_not_placeholders() -> None:
    dest = parse_destination(base(params="name=Jos%C3%A9&x=%UCID%"))
    assert dest.params == "name=Jos%C3%A9&x=%UCID%"


def test_params_map_checks_each_template_against_its_own_event_type() -> None:
    params = {STARTED: "s=%STARTTIME%", ENDED: "d=%DURATION%"}
    dest = parse_destination(base(events=[STARTED, ENDED], params=params))
    assert dest.template_for(STARTED) == "s=%STARTTIME%"
    assert dest.template_for(ENDED) == "d=%DURATION%"
    error = refusal(base(events=[STARTED, ENDED], params={STARTED: "d=%DURATION%"}))
    assert error.errors[0].field == f"params.{STARTED}"
    assert "%DURATION% is not a parameter of RECORDING_STARTED_EVENT" in str(error)


def test_params_map_key_outside_the_destination_events_is_refused() -> None:
    error = refusal(base(events=[STARTED], params={ENDED: "x=%UCID%"}))
    assert error.errors[0].field == f"params.{ENDED}"
    assert f"'{ENDED}' is not one of this destination's events" in str(error)


def test_params_map_without_an_entry_sends_no_parameters_for_that_type() -> None:
    dest = parse_destination(base(events=[STARTED, ENDED], params={STARTED: "a=%UCID%"}))
    assert dest.template_for(ENDED) == ""


def test_all_errors_are_reported_at_once() -> None:
    error = refusal(base(events=["NOPE"], scope="bad", url="ftp://x", timeout_s=99))
    assert {e.field for e in error.errors} == {"events", "scope", "url", "timeout_s"}
    assert error.destination == "face-started"


def test_events_all_expands_and_is_remembered_for_export() -> None:
    dest = parse_destination(base(events="all", params="u=%UCID%"))
    assert dest.events == EVENT_TYPES
    assert dest.to_dict()["events"] == "all"


def test_face_preset_fills_fields_and_requires_url() -> None:
    dest = parse_destination(
        {"name": "face", "preset": "face", "url": "https://h:8443/Face/eventNotify"}
    )
    assert dest.events == (STARTED, ENDED)
    assert dest.results == ("success",)
    assert dest.ordered is True
    assert dest.template_for(STARTED) == (
        "event=AudioRecordingStarted&calledAors=%CALLEDAORS%&ucid=%UCID%"
    )
    assert (
        dest.template_for(ENDED) == "event=AudioRecordingEnded&calledAors=%CALLEDAORS%&ucid=%UCID%"
    )
    error = refusal({"name": "face", "preset": "face"})
    assert [e.field for e in error.errors] == ["url"]
    assert "url is required" in str(error)


def test_given_fields_override_the_preset() -> None:
    dest = parse_destination({"name": "j", "preset": "json", "url": "https://h/x", "method": "GET"})
    assert dest.method == "GET"
    assert dest.events == EVENT_TYPES and dest.all_events
    assert PRESETS["json"]["method"] == "POST"


def test_json_preset_posts_every_event_without_params() -> None:
    dest = parse_destination({"name": "j", "preset": "json", "url": "https://h/x"})
    assert (dest.method, dest.params, dest.events) == ("POST", "", EVENT_TYPES)


def test_bad_secret_is_refused_without_showing_it() -> None:
    bad = "whsec_not-base64!!-but-private"
    error = refusal(base(secret=bad))
    assert error.errors[0].field == "secret"
    assert error.errors[0].value == MASK
    assert bad not in str(error)


def test_bad_secret_header_value_is_not_shown() -> None:
    error = refusal(base(headers={"Authorization": {"value": "Bearer t0k\nx", "secret": True}}))
    assert "t0k" not in str(error)
    assert error.errors[0].value == MASK


def test_secrets_are_masked_in_to_dict_and_repr() -> None:
    dest = parse_destination(
        base(
            url="https://user:pa55@h:8443/Face",
            secret=SECRET,
            headers={"Authorization": {"value": "Bearer t0k", "secret": True}, "X-Plain": "v"},
        )
    )
    assert dest.has_secrets
    shown = dest.to_dict()
    assert shown["url"] == "https://********@h:8443/Face"
    assert shown["secret"] == MASK
    assert shown["headers"] == {"Authorization": {"value": MASK, "secret": True}, "X-Plain": "v"}
    for text in (str(shown), repr(dest), dump_file([dest])):
        assert "pa55" not in text and SECRET not in text and "t0k" not in text
    full = dest.to_dict(include_secrets=True)
    assert full["url"] == "https://user:pa55@h:8443/Face"
    assert full["secret"] == SECRET
    assert full["headers"]["Authorization"] == {"value": "Bearer t0k", "secret": True}


def test_unset_secret_is_omitted_from_to_dict() -> None:
    assert "secret" not in parse_destination(base()).to_dict()


def test_update_with_masked_or_missing_secrets_keeps_the_stored_ones() -> None:
    stored = parse_destination(
        base(
            url="https://u:p@h/x", secret=SECRET, headers={"Auth": {"value": "tok", "secret": True}}
        )
    )
    masked = parse_destination(stored.to_dict(), existing=stored)
    assert masked == stored
    data = stored.to_dict()
    del data["secret"]
    assert parse_destination(data, existing=stored).secret == SECRET


def test_explicit_null_secret_clears_it() -> None:
    stored = parse_destination(base(secret=SECRET))
    cleared = parse_destination({**stored.to_dict(), "secret": None}, existing=stored)
    assert cleared.secret is None
    assert cleared.active_secrets(0.0) == ()


def test_masked_url_credentials_are_not_kept_for_another_host() -> None:
    stored = parse_destination(base(url="https://u:p@h:8443/x"))
    moved = refusal(base(url="https://********@evil.example:8443/x"), existing=stored)
    assert "same host:port" in str(moved)
    kept = parse_destination(base(url="https://********@H:8443/other"), existing=stored)
    assert kept.url == "https://u:p@H:8443/other"


def test_masked_secret_without_a_stored_one_is_refused() -> None:
    error = refusal(base(secret=MASK, url="https://********@h/x"))
    assert {e.field for e in error.errors} == {"secret", "url"}


def test_active_secrets_lists_current_then_unexpired_old_ones() -> None:
    old1, old2 = generate_secret(), generate_secret()
    dest = Destination(
        name="d",
        events=(STARTED,),
        scope="global",
        url="https://h/",
        secret=SECRET,
        old_secrets=((old1, 100.0), (old2, 50.0)),
    )
    assert dest.active_secrets(40.0) == (SECRET, old1, old2)
    assert dest.active_secrets(60.0) == (SECRET, old1)
    assert dest.active_secrets(100.0) == (SECRET,)


def test_header_secret_flag_and_plain_headers_are_parsed() -> None:
    dest = parse_destination(base(headers={"X-A": "1", "Auth": {"value": "t", "secret": True}}))
    assert dest.headers == (Header("X-A", "1"), Header("Auth", "t", secret=True))


def test_cidrs_are_normalised() -> None:
    dest = parse_destination(base(allow_cidrs=["10.1.2.3/8", "192.168.1.5"], deny_cidrs="fd00::/8"))
    assert dest.allow_cidrs == ("10.0.0.0/8", "192.168.1.5/32")
    assert dest.deny_cidrs == ("fd00::/8",)


def test_split_and_join_secrets_round_trip() -> None:
    dest = parse_destination(
        base(url="https://u:p@h/x", secret=SECRET, headers={"Auth": {"value": "t", "secret": True}})
    )
    config, bundle = split_secrets(dest)
    assert "p@" not in str(config) and SECRET not in str(config)
    assert repr(bundle) == "SecretBundle(********)"
    assert join_secrets(config, bundle) == dest


FILE = """
destinations:
  - name: face-started
    events: [RECORDING_STARTED_EVENT]
    scope: route:support-line
    url: https://10.0.0.5:8443/Face/eventNotify
    params: "event=AudioRecordingStarted&calledAors=%CALLEDAORS%&ucid=%UCID%"
  - name: modern
    preset: json
    url: https://hooks.example.com/recnotify
"""


def test_load_file_reads_the_spec_example() -> None:
    dests = load_file(FILE)
    assert [d.name for d in dests] == ["face-started", "modern"]
    assert dests[0].scope == "route:support-line"
    assert dests[1].method == "POST"


def test_empty_file_has_no_destinations() -> None:
    assert load_file("") == []
    assert load_file("destinations: []\n") == []


def test_one_bad_entry_refuses_the_whole_file() -> None:
    text = FILE + "  - name: broken\n    events: [NOPE]\n    url: https://h/\n"
    with pytest.raises(InvalidDestination) as info:
        load_file(text)
    assert [e.field for e in info.value.errors] == ["events"]
    assert info.value.errors[0].message.startswith("entry 3: destination 'broken': events:")


def test_duplicate_names_in_one_file_are_refused() -> None:
    text = FILE + "  - name: modern\n    url: https://h/\n    events: all\n"
    with pytest.raises(InvalidDestination, match=r"'modern': name: duplicate .*entries 2 and 3"):
        load_file(text)


def test_yaml_syntax_error_names_the_line() -> None:
    with pytest.raises(InvalidDestination, match="YAML syntax error at line 3"):
        load_file("destinations:\n  - name: x\n    events: all: x\n")


def test_file_without_a_destinations_list_is_refused() -> None:
    with pytest.raises(InvalidDestination, match="expected one key `destinations:`"):
        load_file("- name: x\n")
    with pytest.raises(InvalidDestination, match="must be a list"):
        load_file("destinations: {name: x}\n")


def _rich() -> Destination:
    return parse_destination(
        base(
            name="rich",
            preset="face",
            scope="account:acme",
            url="https://u:p@h:8443/Face/eventNotify",
            ordered=False,
            results=["success", "failure"],
            secret=SECRET,
            headers={"Auth": {"value": "tok", "secret": True}, "X-A": "1"},
            timeout_s=2.5,
            tls={"verify": False, "ca_bundle": "/ca.pem"},
            allow_cidrs=["10.0.0.0/8"],
            deny_cidrs=["10.9.0.0/16"],
            circuit={"failures": 3, "reset_s": 5},
            retry={"max_attempts": 3, "backoff_s": 0.5, "backoff_max_s": 2, "policy": "standard"},
            rate_limit_per_s=5,
            max_in_flight=2,
            on_dead_letter="hold",
            enabled=False,
            events=[STARTED, ENDED],
            params={STARTED: "a=%UCID%"},
        )
    )


def test_dump_then_load_gives_equal_destinations() -> None:
    dests = [_rich(), *load_file(FILE)]
    assert load_file(dump_file(dests, include_secrets=True)) == dests
    masked = dump_file(dests)
    assert "tok" not in masked and SECRET not in masked and "u:p@" not in masked
    assert load_file(masked, existing={d.name: d for d in dests}) == dests


def test_preset_overrides_survive_the_round_trip() -> None:
    dest = _rich()
    assert dest.ordered is False and dest.results == ("success", "failure")
    assert load_file(dump_file([dest], include_secrets=True))[0].ordered is False


def test_control_characters_in_url_parameters_are_refused_at_save() -> None:
    with pytest.raises(InvalidDestination) as info:
        parse_destination({"name": "crlf", "events": "all", "scope": "global",
                           "url": "http://h.example/x", "params": "a=1\r\nX-Injected: 1"})
    (error,) = info.value.errors
    assert error.field == "params" and "0x0d" in error.message and "'crlf'" in error.message


@pytest.mark.parametrize("url", ["HTtp://\ud9fc{x[[/y", "https://u:secretpw@[::1/x"])
def test_an_unclosed_ipv6_bracket_is_a_refused_url_not_a_crash(url: str) -> None:
    """Found by the schema fuzzer (tests/test_admin_openapi.py): a 500 before."""
    with pytest.raises(InvalidDestination) as caught:
        parse_destination({"name": "d", "events": "all", "url": url})
    (error,) = caught.value.errors
    assert error.field == "url" and "is not a valid URL" in str(error)
    assert "secretpw" not in str(error)
    stored = parse_destination({"name": "d", "events": "all", "url": "https://u:pw@h/x"})
    with pytest.raises(InvalidDestination, match="url: masked credentials"):
        parse_destination({"name": "d", "events": "all", "url": "https://********@[::1/x"},
                          existing=stored)
def test_a_stray_bracket_in_the_url_is_refused_with_the_password_masked() -> None:
    # urlsplit raises "Invalid IPv6 URL" on these; it once escaped as a bare 500 (schemathesis)
    for url, shown in [("https://h]x/", "'https://h]x/'"),
                       ("https://user:pa]ss@host/x", "'https://********@host/x'")]:
        with pytest.raises(InvalidDestination) as info:
            parse_destination({"name": "b", "events": "all", "url": url})
        (error,) = info.value.errors
        assert error.field == "url" and f"{shown} is not a valid URL" in error.message
        assert "pa]ss" not in str(info.value)


def test_an_integer_too_large_for_a_float_is_refused_not_a_crash() -> None:
    # math.isfinite(10**400) raises OverflowError; JSON and YAML both allow such integers
    with pytest.raises(InvalidDestination) as info:
        parse_destination({"name": "big", "events": "all", "url": "http://h.example/",
                           "timeout_s": 10**400})
    (error,) = info.value.errors
    assert error.field == "timeout_s" and "is not a number of seconds" in error.message
    with pytest.raises(InvalidDestination) as info:
        parse_destination({"name": "big", "events": "all", "url": "http://h.example/",
                           "retry": {"backoff_s": 10**400}})
    assert [e.field for e in info.value.errors] == ["retry.backoff_s"]


def test_the_published_model_checks_every_destination_too() -> None:
    """A body the rules would take but the published pydantic model refuses is refused, so
    the OpenAPI document and `recnotify destinations schema` cannot drift from the service."""
    from workers.destinations import rules

    good = {"name": "d", "events": "all", "url": "https://h.example/x",
            "allow_cidrs": "10.0.0.0/8, fd00::/8"}  # a comma string: in the model since
    assert parse_destination(good).allow_cidrs
    checker = rules.Checker("'d'")
    rules.model_errors(checker, {**good, "timeout_s": "10"})  # the model wants a number
    (error,) = checker.errors
    assert error.field == "timeout_s"
    assert error.message.startswith("destination 'd': timeout_s: '10' does not fit the "
                                    "published schema (")
    assert error.message.endswith("see `recnotify destinations schema`)")
