"""Outbound address rules (SPEC section 6, "Outbound safety")."""

from __future__ import annotations

from ipaddress import ip_network

import pytest

from workers.http.netsafety import BUILTIN_DENY, AddressRules, check_address, parse_cidrs

NO_RULES = AddressRules()


@pytest.mark.parametrize(
    ("address", "rule"),
    [
        ("169.254.169.254", "169.254.0.0/16"),
        ("169.254.0.1", "169.254.0.0/16"),
        ("fe80::1", "fe80::/10"),
        ("fd00:ec2::254", "fd00:ec2::254/128"),
    ],
)
def test_builtin_ranges_are_refused_naming_the_rule(address: str, rule: str) -> None:
    assert check_address(address, NO_RULES) == rule


def test_builtin_ranges_apply_even_when_allow_list_contains_them() -> None:
    rules = AddressRules(allow=(parse_cidrs("0.0.0.0/0,::/0", where="test"),))
    assert check_address("169.254.169.254", rules) == "169.254.0.0/16"


@pytest.mark.parametrize(
    "address", ["127.0.0.1", "::1", "10.1.2.3", "192.168.1.1", "172.16.0.1", "8.8.8.8", "fd00::1"]
)
def test_loopback_private_and_public_addresses_are_allowed(address: str) -> None:
    assert check_address(address, NO_RULES) is None


@pytest.mark.parametrize(
    "address",
    ["::ffff:169.254.169.254", "::ffff:a9fe:a9fe", "64:ff9b::169.254.169.254"],
)
def test_ipv6_carrying_metadata_ipv4_is_refused(address: str) -> None:
    assert check_address(address, NO_RULES) == "169.254.0.0/16"


def test_ipv6_zone_id_does_not_hide_link_local() -> None:
    assert check_address("fe80::1%eth0", NO_RULES) == "fe80::/10"
    assert check_address("[fe80::1%25eth0]", NO_RULES) == "fe80::/10"


def test_mapped_ipv4_is_checked_against_ipv4_deny_and_allow() -> None:
    deny = AddressRules(deny=parse_cidrs("10.0.0.0/8", where="test"))
    assert check_address("::ffff:10.0.0.5", deny) == "10.0.0.0/8"
    allow = AddressRules(allow=(parse_cidrs("10.0.0.0/8", where="test"),))
    assert check_address("::ffff:10.0.0.5", allow) is None


def test_not_an_address_is_refused() -> None:
    assert check_address("example.com", NO_RULES) == "not an IP address"


def test_global_and_destination_deny_both_apply() -> None:
    global_rules = AddressRules(deny=parse_cidrs("10.0.0.0/8", where="RECNOTIFY_DENY_CIDRS"))
    rules = AddressRules.combine(global_rules, dest_deny=parse_cidrs("192.168.0.0/16", where="d"))
    assert check_address("10.9.9.9", rules) == "10.0.0.0/8"
    assert check_address("192.168.1.1", rules) == "192.168.0.0/16"
    assert check_address("172.16.0.1", rules) is None
    assert check_address("169.254.1.1", rules) == "169.254.0.0/16"


def test_address_outside_allow_list_is_refused_naming_the_list() -> None:
    rules = AddressRules(allow=(parse_cidrs("10.0.0.0/8,192.168.0.0/16", where="t"),))
    assert check_address("10.1.1.1", rules) is None
    assert check_address("8.8.8.8", rules) == "outside allow list 10.0.0.0/8,192.168.0.0/16"
    assert check_address("::1", rules) == "outside allow list 10.0.0.0/8,192.168.0.0/16"


def test_global_and_destination_allow_lists_each_tighten() -> None:
    global_rules = AddressRules(allow=(parse_cidrs("10.0.0.0/8", where="RECNOTIFY_ALLOW_CIDRS"),))
    rules = AddressRules.combine(
        global_rules, dest_allow=parse_cidrs("10.1.0.0/16,192.168.0.0/16", where="d")
    )
    assert check_address("10.1.2.3", rules) is None
    assert check_address("10.2.0.1", rules) == "outside allow list 10.1.0.0/16,192.168.0.0/16"
    assert check_address("192.168.0.1", rules) == "outside allow list 10.0.0.0/8"


def test_destination_allow_list_alone_applies() -> None:
    rules = AddressRules.combine(NO_RULES, dest_allow=parse_cidrs("127.0.0.0/8", where="d"))
    assert check_address("127.0.0.1", rules) is None
    assert check_address("10.0.0.1", rules) == "outside allow list 127.0.0.0/8"


def test_deny_wins_over_allow() -> None:
    rules = AddressRules.combine(
        AddressRules(allow=(parse_cidrs("10.0.0.0/8", where="g"),)),
        dest_deny=parse_cidrs("10.0.0.5", where="d"),
    )
    assert check_address("10.0.0.5", rules) == "10.0.0.5/32"
    assert check_address("10.0.0.6", rules) is None


def test_empty_destination_lists_leave_global_rules_unchanged() -> None:
    global_rules = AddressRules(allow=(parse_cidrs("10.0.0.0/8", where="g"),))
    assert AddressRules.combine(global_rules, (), ()) == global_rules


def test_parse_cidrs_accepts_string_list_bare_addresses_and_blanks() -> None:
    expected = (ip_network("10.0.0.0/8"), ip_network("fd00::/8"), ip_network("1.2.3.4/32"))
    assert parse_cidrs(" 10.0.0.0/8, fd00::/8 ,1.2.3.4,", where="w") == expected
    assert parse_cidrs(["10.0.0.0/8", "fd00::/8", "1.2.3.4"], where="w") == expected
    assert parse_cidrs("10.1.2.3/8", where="w") == (ip_network("10.0.0.0/8"),)
    assert parse_cidrs(None, where="w") == ()
    assert parse_cidrs("", where="w") == ()


@pytest.mark.parametrize("value", ["10.0.0.0/8,not-a-net", ["10.0.0.0/33"], "300.1.1.1"])
def test_parse_cidrs_names_where_and_bad_entry(value: str | list[str]) -> None:
    bad = (value if isinstance(value, str) else value[0]).split(",")[-1]
    with pytest.raises(ValueError, match=rf"^RECNOTIFY_DENY_CIDRS: '{bad}' is not an IP network"):
        parse_cidrs(value, where="RECNOTIFY_DENY_CIDRS")


def test_builtin_deny_constant_matches_spec() -> None:
    assert BUILTIN_DENY == ("169.254.0.0/16", "fe80::/10", "fd00:ec2::254/128")
