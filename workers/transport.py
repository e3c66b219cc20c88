"""Sending one request to a checked address (SPEC 6 "Outbound safety", TLS).

The host is resolved once, every address is checked against the outbound rules,
and the connection goes to the first checked address: urllib3 connects to that
IP while ``Host``, SNI and certificate verification use the host name, so no
second lookup can swap the address (DNS rebinding). Redirects are not followed.
Pools are kept per (address, port, host, TLS options) and reused across attempts;
each process builds its own (they are never shared across ``fork``).
"""

from __future__ import annotations

import ipaddress
import logging
import socket
import ssl
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import certifi
import urllib3
from urllib3.util.ssl_ import create_urllib3_context

from workers.errors import DeliveryError, RefusedAddress
from workers.netsafety import AddressRules, check_address
from workers.request import OutboundRequest

log = logging.getLogger(__name__)

Resolver = Callable[[str, int], list[str]]


def system_resolver(host: str, port: int) -> list[str]:
    """Every address ``host`` resolves to (an IP literal resolves to itself)."""
    try:
        return [str(ipaddress.ip_address(host))]
    except ValueError:
        pass
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise DeliveryError(f"cannot resolve host {host!r}: {exc}") from None
    seen: list[str] = []
    for info in infos:
        address = str(info[4][0])
        if address not in seen:
            seen.append(address)
    return seen


@dataclass(frozen=True, slots=True)
class TlsConfig:
    verify: bool = True
    ca_bundle: str | None = None
    client_cert: str | None = None
    client_key: str | None = None


@dataclass(frozen=True, slots=True)
class Response:
    status: int
    headers: dict[str, str]
    latency_ms: float
    address: str


class Transport:
    """Connection pools per checked address; thread-safe."""

    def __init__(self, *, pool_maxsize: int = 64, resolver: Resolver = system_resolver) -> None:
        self.pool_maxsize = pool_maxsize
        self.resolver = resolver
        self._pools: dict[tuple[object, ...], urllib3.HTTPConnectionPool] = {}
        self._lock = threading.Lock()

    def resolve_checked(self, host: str, port: int, rules: AddressRules) -> str:
        """The address to connect to, after checking every address of ``host``."""
        addresses = self.resolver(host, port)
        if not addresses:
            raise DeliveryError(f"host {host!r} resolved to no address")
        for address in addresses:
            rule = check_address(address, rules)
            if rule is not None:
                raise RefusedAddress(host, address, rule)
        return addresses[0]

    def _pool(self, scheme: str, address: str, port: int, host: str, tls: TlsConfig
              ) -> urllib3.HTTPConnectionPool:
        key = (scheme, address, port, host, tls)
        pool = self._pools.get(key)
        if pool is not None:
            return pool
        with self._lock:
            pool = self._pools.get(key)
            if pool is None:
                pool = self._new_pool(scheme, address, port, host, tls)
                self._pools[key] = pool
            return pool

    def _new_pool(self, scheme: str, address: str, port: int, host: str, tls: TlsConfig
                  ) -> urllib3.HTTPConnectionPool:
        if scheme == "http":
            return urllib3.HTTPConnectionPool(address, port, maxsize=self.pool_maxsize, block=False)
        context = create_urllib3_context(ssl_minimum_version=ssl.TLSVersion.TLSv1_2)
        if tls.verify:
            context.load_verify_locations(cafile=tls.ca_bundle or certifi.where())
            context.check_hostname = False  # urllib3 checks assert_hostname itself
            context.verify_mode = ssl.CERT_REQUIRED
        else:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        if tls.client_cert:
            context.load_cert_chain(tls.client_cert, tls.client_key)
        return urllib3.HTTPSConnectionPool(
            address, port, maxsize=self.pool_maxsize, block=False,
            ssl_context=context, server_hostname=host,
            assert_hostname=host if tls.verify else False,
            cert_reqs="CERT_REQUIRED" if tls.verify else "CERT_NONE",
        )

    def send(self, request: OutboundRequest, *, timeout_s: float, rules: AddressRules,
             tls: TlsConfig = TlsConfig()) -> Response:
        """Send once; raises DeliveryError/RefusedAddress or urllib3 errors."""
        address = self.resolve_checked(request.host, request.port, rules)
        pool = self._pool(request.scheme, address, request.port, request.host, tls)
        default_port = 443 if request.scheme == "https" else 80
        host_header = _bracket(request.host) + (
            "" if request.port == default_port else f":{request.port}"
        )
        headers = {"Host": host_header, **request.headers}
        started = time.perf_counter()
        response = pool.urlopen(
            request.method, request.target, body=request.body, headers=headers,
            redirect=False, retries=False, assert_same_host=False,
            timeout=urllib3.Timeout(connect=min(timeout_s, 10.0), read=timeout_s),
            preload_content=False,
        )
        try:
            response.read(64 * 1024)  # bounded: a receiver cannot make us buffer a huge body
        finally:
            response.release_conn()
        latency_ms = (time.perf_counter() - started) * 1000
        return Response(response.status, dict(response.headers), latency_ms, address)

    def close(self) -> None:
        with self._lock:
            for pool in self._pools.values():
                pool.close()
            self._pools.clear()


def _bracket(host: str) -> str:
    return f"[{host}]" if ":" in host else host


def rules_for(global_rules: AddressRules, allow: Sequence[str], deny: Sequence[str]
              ) -> AddressRules:
    """The rules of one destination: the global ones tightened by its own."""
    return AddressRules.combine(global_rules, allow, deny)
