"""Outbound address rules (SPEC section 6, "Outbound safety").

Every address a destination's host resolves to is checked before connecting:

- refused when inside a deny range: the built-in :data:`BUILTIN_DENY`
  (link-local and cloud metadata, always applied, whatever the rules say),
  then ``RECNOTIFY_DENY_CIDRS``, then the destination's ``deny_cidrs``;
- refused when outside an allow list. ``RECNOTIFY_ALLOW_CIDRS`` and the
  destination's ``allow_cidrs`` each tighten: when both are set the address
  must be inside both. :attr:`AddressRules.allow` is therefore a tuple of
  allow lists, every one of which must contain the address; an empty
  list is the same as no list.

Everything else (loopback, private ranges, public addresses) is allowed.

Spellings of one host are one host: an IPv4-mapped address (``::ffff:10.0.0.5``)
is also its IPv4 address, and loopback and the unspecified addresses (``0.0.0.0``,
``::``, which Linux connects to loopback) are loopback in both families: a
``127.0.0.0/8`` rule also covers ``::1``, ``::`` and ``0.0.0.0``, and a ``::1/128``
rule every ``127.x.y.z``. An IPv6 address
that carries an IPv4 address it may be delivered to (NAT64 ``64:ff9b::/96``, 6to4
``2002::/16``, Teredo ``2001::/32``'s server and client, IPv4-compatible
``::a.b.c.d``) is refused when that IPv4 address is denied; it passes an allow list
only as itself (it reaches a relay, not the IPv4 host). A zone id (``fe80::1%eth0``)
is ignored.

Pure functions: the caller resolves names and passes the addresses.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network, ip_address, ip_network

from workers.errors import InvalidValue

__all__ = [
    "BUILTIN_DENY",
    "AddressRules",
    "Network",
    "check_address",
    "parse_cidrs",
]

Network = IPv4Network | IPv6Network
IPAddress = IPv4Address | IPv6Address

BUILTIN_DENY: tuple[str, ...] = ("169.254.0.0/16", "fe80::/10", "fd00:ec2::254/128")
_BUILTIN_DENY_NETS: tuple[Network, ...] = tuple(ip_network(c) for c in BUILTIN_DENY)
_NAT64 = IPv6Network("64:ff9b::/96")
_COMPATIBLE = IPv6Network("::/96")
_LOOPBACK: tuple[IPAddress, ...] = (IPv4Address("127.0.0.1"), IPv6Address("::1"))


def parse_cidrs(value: str | Sequence[str] | None, *, where: str) -> tuple[Network, ...]:
    """Networks from ``"10.0.0.0/8, 192.168.1.5"`` or a list of such entries.

    A bare address is a single-address network; host bits are tolerated
    (``10.1.2.3/8`` is ``10.0.0.0/8``). ``where`` (e.g. ``"RECNOTIFY_DENY_CIDRS"``
    or ``"destination 'x' allow_cidrs"``) is named in the ValueError for a bad entry.
    """
    if value is None:
        return ()
    entries = value.split(",") if isinstance(value, str) else list(value)
    networks: list[Network] = []
    for entry in entries:
        if not isinstance(entry, str):
            raise InvalidValue(f"{where}: CIDR entries must be strings, got {entry!r}")
        text = entry.strip()
        if not text:
            continue
        try:
            networks.append(ip_network(text, strict=False))
        except ValueError:
            raise InvalidValue(
                f"{where}: {text!r} is not an IP network (expected e.g. 10.0.0.0/8 or fd00::/8)"
            ) from None
    return tuple(networks)


@dataclass(frozen=True)
class AddressRules:
    """Allow lists (each must contain the address) and extra deny ranges."""

    allow: tuple[tuple[Network, ...], ...] = ()
    deny: tuple[Network, ...] = ()

    @classmethod
    def combine(
        cls,
        global_rules: AddressRules,
        dest_allow: Sequence[Network] = (),
        dest_deny: Sequence[Network] = (),
    ) -> AddressRules:
        """The rules for one destination: the global rules tightened by its own."""
        allow = global_rules.allow + ((tuple(dest_allow),) if dest_allow else ())
        return cls(allow=allow, deny=global_rules.deny + tuple(dest_deny))


def _same_host(parsed: IPAddress) -> tuple[IPAddress, ...]:
    """``parsed`` and the other spellings of the host a connection to it reaches.

    An IPv4-mapped address is its IPv4 address. Loopback is one host in both families:
    an IPv4 loopback address is also ``::1`` and ``::1`` is also ``127.0.0.1``; the
    unspecified addresses (``0.0.0.0``, ``::``, which Linux connects to this host) are
    both. So a ``127.0.0.0/8`` rule covers ``::1``, ``::`` and ``0.0.0.0``, and a
    ``::1/128`` rule covers every ``127.x.y.z``.
    """
    forms: list[IPAddress] = [parsed]
    if isinstance(parsed, IPv6Address) and parsed.ipv4_mapped is not None:
        forms.append(parsed.ipv4_mapped)
    if any(a.is_unspecified for a in forms):
        forms.extend(_LOOPBACK)
    elif any(a.is_loopback and a.version == 4 for a in forms):
        forms.append(_LOOPBACK[1])
    elif any(a.is_loopback for a in forms):
        forms.append(_LOOPBACK[0])
    return tuple(forms)


def _tunnelled_ipv4(address: IPv6Address) -> tuple[IPv4Address, ...]:
    """The IPv4 addresses a translated or tunnelled IPv6 form carries (packets to it may
    end there): NAT64, 6to4, Teredo (server and client) and IPv4-compatible."""
    if address in _NAT64:
        return (IPv4Address(int(address) & 0xFFFFFFFF),)
    if address.sixtofour is not None:
        return (address.sixtofour,)
    if address.teredo is not None:
        return address.teredo
    if address in _COMPATIBLE and int(address) > 1:  # not :: or ::1
        return (IPv4Address(int(address) & 0xFFFFFFFF),)
    return ()


def _forms(address: str) -> tuple[tuple[IPAddress, ...], tuple[IPv4Address, ...]] | None:
    """(the spellings of the host itself, the IPv4 addresses it carries); None when
    ``address`` is not an IP address. A zone id (``%eth0``) is ignored."""
    text = address.strip().removeprefix("[").removesuffix("]").split("%", 1)[0]
    try:
        parsed = ip_address(text)
    except ValueError:
        return None
    carried = _tunnelled_ipv4(parsed) if isinstance(parsed, IPv6Address) else ()
    return _same_host(parsed), carried


def check_address(address: str, rules: AddressRules) -> str | None:
    """None when ``address`` may be connected to, else the text of the rule refusing it."""
    found = _forms(address)
    if found is None:
        return "not an IP address"
    same_host, carried = found
    every_form = same_host + carried
    for network in _BUILTIN_DENY_NETS + rules.deny:
        if any(a in network for a in every_form):
            return str(network)
    # a tunnelled form reaches a relay or translator, not the IPv4 host it names: only
    # the address itself (or another spelling of the same host) can be on an allow list
    for allow_list in rules.allow:
        if allow_list and not any(a in n for a in same_host for n in allow_list):
            return "outside allow list " + ",".join(str(n) for n in allow_list)
    return None


def global_rules(allow_cidrs: str | Sequence[str], deny_cidrs: str | Sequence[str]) -> AddressRules:
    """The service-wide rules of ``RECNOTIFY_ALLOW_CIDRS`` / ``RECNOTIFY_DENY_CIDRS``."""
    return AddressRules(
        allow=(parse_cidrs(allow_cidrs, where="RECNOTIFY_ALLOW_CIDRS"),) if allow_cidrs else (),
        deny=parse_cidrs(deny_cidrs, where="RECNOTIFY_DENY_CIDRS"),
    )
