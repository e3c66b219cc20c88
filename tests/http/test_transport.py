"""The pinned-address transport against a real loopback receiver.

The resolver is injected (as httpx's transports are), so a made-up name such
as ``receiver.test`` resolves to whatever the test says: a request that reaches
the receiver proves the connection went to the address that was checked,
because nothing else could resolve that name.
"""

from __future__ import annotations

import dataclasses
import re
import time
from typing import Any

import pytest
import yaml

from producer.events import validate_event
from tests.receiver import Receiver
from workers.destinations import Destination, load_file
from workers.errors import DeliveryError, RefusedAddress
from workers.http.netsafety import AddressRules, parse_cidrs
from workers.http.request import OutboundRequest, build_request
from workers.http.transport import Transport

OPEN = AddressRules()


class CountingResolver:
    """Resolves every name to ``addresses`` and counts the lookups."""

    def __init__(self, *addresses: str) -> None:
        self.addresses = list(addresses)
        self.calls: list[tuple[str, int]] = []

    def __call__(self, host: str, port: int) -> list[str]:
        self.calls.append((host, port))
        return list(self.addresses)


def destination(url: str, params: str = "", **extra: Any) -> Destination:
    data = {"name": "t", "events": "all", "scope": "global", "url": url, "params": params,
            **extra}
    return load_file(yaml.safe_dump({"destinations": [data]}))[0]


def request_for(dest: Destination, **params: Any) -> OutboundRequest:
    event = validate_event({"type": "RECORDING_STARTED_EVENT", "params": params})
    return build_request(event, dest, nid="msg_test", now_s=time.time())


def test_name_is_resolved_once_per_send_and_the_checked_address_is_connected_to(
        receiver: Receiver) -> None:
    resolver = CountingResolver("127.0.0.1")
    transport = Transport(resolver=resolver)
    dest = destination(f"http://receiver.test:{receiver.port}/hook", "ucid=%UCID%")
    try:
        first = transport.send(request_for(dest, UCID="a"), timeout_s=5, rules=OPEN)
        second = transport.send(request_for(dest, UCID="b"), timeout_s=5, rules=OPEN)
    finally:
        transport.close()
    assert (first.status, first.address, second.status) == (200, "127.0.0.1", 200)
    assert resolver.calls == [("receiver.test", receiver.port)] * 2
    got = receiver.received()
    assert [r.target for r in got] == ["/hook?ucid=a", "/hook?ucid=b"]
    assert {r.header("Host") for r in got} == {f"receiver.test:{receiver.port}"}


def test_name_resolving_to_a_metadata_address_is_refused_before_connecting(
        receiver: Receiver) -> None:
    # One good address and one denied: every address is checked, so the send is refused.
    transport = Transport(resolver=CountingResolver("127.0.0.1", "169.254.169.254"))
    dest = destination(f"http://rebind.test:{receiver.port}/hook")
    with pytest.raises(RefusedAddress) as refused:
        transport.send(request_for(dest), timeout_s=5, rules=OPEN)
    assert refused.value.address == "169.254.169.254"
    assert refused.value.rule == "169.254.0.0/16"
    assert "169.254.169.254" in str(refused.value) and "169.254.0.0/16" in str(refused.value)
    assert receiver.received() == []


@pytest.mark.parametrize(("address", "rule"), [
    ("::ffff:169.254.169.254", "169.254.0.0/16"),
    ("::ffff:a9fe:a9fe", "169.254.0.0/16"),
    ("64:ff9b::a9fe:a9fe", "169.254.0.0/16"),
    ("fe80::1", "fe80::/10"),
    ("fd00:ec2::254", "fd00:ec2::254/128"),
])
def test_ipv6_forms_of_denied_addresses_are_refused(address: str, rule: str) -> None:
    transport = Transport(resolver=CountingResolver(address))
    dest = destination("http://sneaky.test/x")
    with pytest.raises(RefusedAddress) as refused:
        transport.send(request_for(dest), timeout_s=5, rules=OPEN)
    assert refused.value.rule == rule


def test_loopback_denied_by_configuration_is_refused_also_in_mapped_form(
        receiver: Receiver) -> None:
    rules = AddressRules(deny=parse_cidrs("127.0.0.0/8,::1/128", where="test"))
    for address in ("127.0.0.1", "::ffff:127.0.0.1", "::1"):
        transport = Transport(resolver=CountingResolver(address))
        with pytest.raises(RefusedAddress) as refused:
            transport.send(request_for(destination(f"http://localhost:{receiver.port}/")),
                           timeout_s=5, rules=rules)
        assert refused.value.rule in ("127.0.0.0/8", "::1/128")
    assert receiver.received() == []


def test_destination_allow_and_deny_lists_tighten_the_global_rules(receiver: Receiver) -> None:
    transport = Transport(resolver=CountingResolver("127.0.0.1"))
    request = request_for(destination(f"http://receiver.test:{receiver.port}/"))
    only_private = AddressRules.combine(OPEN, parse_cidrs(["10.0.0.0/8"], where="allow"))
    with pytest.raises(RefusedAddress, match=re.escape("outside allow list 10.0.0.0/8")):
        transport.send(request, timeout_s=5, rules=only_private)
    no_loopback = AddressRules.combine(OPEN, (), parse_cidrs(["127.0.0.1/32"], where="deny"))
    with pytest.raises(RefusedAddress, match=re.escape("127.0.0.1/32")):
        transport.send(request, timeout_s=5, rules=no_loopback)
    loopback_allowed = AddressRules.combine(OPEN, parse_cidrs(["127.0.0.0/8"], where="allow"))
    assert transport.send(request, timeout_s=5, rules=loopback_allowed).status == 200
    assert len(receiver.received()) == 1


def test_request_target_is_sent_exactly_as_rendered_and_signed(receiver: Receiver) -> None:
    # urllib3 would re-encode "[", "|" and lower-case escapes; the signed target must arrive.
    dest = destination(f"http://127.0.0.1:{receiver.port}/p", "f[x]=%UCID%&raw=%c3%a9|~")
    request = request_for(dest, UCID="a b")
    Transport().send(request, timeout_s=5, rules=OPEN)
    (got,) = receiver.wait_for(1)
    assert got.target == request.target == "/p?f[x]=a%20b&raw=%c3%a9|~"


def test_redirect_is_returned_not_followed(receiver: Receiver) -> None:
    receiver.script("/moved", [302], headers={"Location": "http://169.254.169.254/"})
    response = Transport().send(request_for(destination(receiver.url("/moved"))), timeout_s=5,
                                rules=OPEN)
    assert response.status == 302
    assert [r.path for r in receiver.received()] == ["/moved"]


def test_crlf_in_a_parameter_value_is_encoded_and_cannot_add_a_header(
        receiver: Receiver) -> None:
    value = "u1\r\nX-Injected: yes\r\n\r\nGET /evil HTTP/1.1"
    request = request_for(destination(receiver.url("/h"), "ucid=%UCID%"), UCID=value)
    assert Transport().send(request, timeout_s=5, rules=OPEN).status == 200
    time.sleep(0.2)
    (got,) = receiver.received()
    assert got.header("X-Injected") is None and got.query == {"ucid": [value]}


@pytest.mark.parametrize("bad", ["a\r\nX-Injected: 1", "a\nb", "a\rb", "a\x00b"])
def test_control_characters_in_a_header_value_are_refused_at_send_without_showing_it(
        bad: str) -> None:
    dest = destination("http://127.0.0.1:9/h")
    request = request_for(dest)
    hostile = OutboundRequest(request.method, request.scheme, request.host, request.port,
                              request.target, {**request.headers, "X-Api-Key": bad}, None)
    with pytest.raises(DeliveryError, match="header 'X-Api-Key' has a CR, LF") as refused:
        Transport(resolver=CountingResolver("127.0.0.1")).send(hostile, timeout_s=5, rules=OPEN)
    assert bad not in str(refused.value)


@pytest.mark.parametrize("target", ["/a\r\nHost: evil", "/a b", "/a\x7f", "no-slash"])
def test_a_request_target_that_could_split_the_request_line_is_refused(target: str) -> None:
    hostile = OutboundRequest("GET", "http", "127.0.0.1", 80, target, {}, None)
    with pytest.raises(DeliveryError, match="request target"):
        hostile.check()


def test_template_text_with_crlf_is_refused_when_building_the_request() -> None:
    # saving refuses such a template; this is the second line of defence at send time,
    # for a destination that reached a worker some other way
    dest = dataclasses.replace(destination("http://127.0.0.1:9/h"),
                               params="a=1\r\nX-Injected: 1")
    with pytest.raises(DeliveryError, match=r"'\\r' at position"):
        request_for(dest)


def test_unresolvable_name_is_a_delivery_error_naming_the_host() -> None:
    dest = destination("http://does-not-exist.invalid/h")
    with pytest.raises(DeliveryError, match=re.escape("does-not-exist.invalid")):
        Transport().send(request_for(dest), timeout_s=5, rules=OPEN)
