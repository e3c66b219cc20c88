"""Sending one request to a checked address (SPEC 6 "Outbound safety", TLS).

The host is resolved once per send, every address is checked against the
outbound rules, and the connection goes to the first checked address: urllib3
connects to that IP while ``Host``, SNI and certificate verification use the
host name, so no second lookup can swap the address (DNS rebinding).

The request target is sent exactly as :mod:`workers.http.request` built (and signed)
it: urllib3's ``urlopen`` would re-encode it (``[`` -> ``%5B``, ``%c3`` ->
``%C3``), so the pool's connection is driven directly. Redirects are never
followed (the response is returned as it is). TLS: 1.2 at least, certificates
verified against the system bundle (certifi) or the destination's ``ca_bundle``,
an optional client certificate, and an opt-out that is logged as a warning.

Pools are kept per (address, port, host, TLS options) and reused across
attempts; each process builds its own (they are never shared across ``fork``).
"""

from __future__ import annotations

import ipaddress
import logging
import socket
import ssl
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import certifi
import urllib3
import urllib3.exceptions
from urllib3.util.ssl_ import create_urllib3_context

from workers.errors import DeliveryError, RefusedAddress
from workers.http.netsafety import AddressRules, check_address
from workers.http.request import OutboundRequest
from workers.http.tls import TlsOptions

__all__ = [
    "MIN_TLS_VERSION",
    "Resolver",
    "Response",
    "TlsConfig",
    "Transport",
    "system_resolver",
    "tls_context",
]

log = logging.getLogger("recnotify.transport")

#: Every address ``host`` resolves to, for a connection to ``port``.
Resolver = Callable[[str, int], list[str]]

MIN_TLS_VERSION = ssl.TLSVersion.TLSv1_2
#: At most this much of a response body is read (a receiver cannot make us buffer more).
MAX_RESPONSE_BYTES = 64 * 1024
#: This much of a response body is kept with its attempt record (the trace, the page).
RESPONSE_EXCERPT_BYTES = 2048


def system_resolver(host: str, port: int) -> list[str]:
    """Every address ``host`` resolves to (an IP literal resolves to itself)."""
    try:
        return [str(ipaddress.ip_address(host))]
    except ValueError:
        pass
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        raise DeliveryError(f"cannot resolve host {host!r}: {exc}") from None
    seen: list[str] = []
    for info in infos:
        address = str(info[4][0])
        if address not in seen:
            seen.append(address)
    return seen


#: A destination's TLS options (paths; ``verify=False`` is the logged opt-out).
TlsConfig = TlsOptions
DEFAULT_TLS = TlsOptions()


@dataclass(frozen=True, slots=True)
class Response:
    status: int
    headers: dict[str, str]
    latency_ms: float
    address: str
    #: The first RESPONSE_EXCERPT_BYTES of the body (UTF-8, undecodable bytes replaced).
    excerpt: str = ""
    #: The body as read (at most MAX_RESPONSE_BYTES): a token endpoint's answer.
    body: bytes = field(default=b"", repr=False)


def tls_context(tls: TlsConfig) -> ssl.SSLContext:
    """The client context for ``tls``: TLS 1.2+, verification unless opted out.

    Hostname checking is left to urllib3 (``assert_hostname``), because the
    socket connects to an IP address while the certificate names the host.
    A file that cannot be loaded is a :class:`DeliveryError` naming its path.
    """
    context = create_urllib3_context(ssl_minimum_version=MIN_TLS_VERSION)
    context.check_hostname = False
    if tls.verify:
        context.verify_mode = ssl.CERT_REQUIRED
        cafile = tls.ca_bundle or certifi.where()
        try:
            context.load_verify_locations(cafile=cafile)
        except (OSError, ssl.SSLError) as exc:
            raise DeliveryError(f"TLS error: cannot load ca_bundle {cafile!r}: {exc}") from None
    else:
        context.verify_mode = ssl.CERT_NONE
    if tls.client_cert:
        try:
            context.load_cert_chain(tls.client_cert, tls.client_key)
        except (OSError, ssl.SSLError) as exc:
            raise DeliveryError(
                f"TLS error: cannot load client_cert {tls.client_cert!r} / client_key "
                f"{tls.client_key!r}: {exc}"
            ) from None
    return context


class Transport:
    """Connection pools per checked address; thread-safe."""

    def __init__(self, *, pool_maxsize: int = 64, resolver: Resolver = system_resolver) -> None:
        self.pool_maxsize = pool_maxsize
        self.resolver = resolver
        self._pools: dict[tuple[object, ...], urllib3.HTTPConnectionPool] = {}
        self._lock = threading.Lock()

    def resolve_checked(self, host: str, port: int, rules: AddressRules) -> str:
        """The address to connect to, after checking every address of ``host`` (one lookup)."""
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
        key = (scheme, address, port, host, tls if scheme == "https" else None)
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
        if not tls.verify:
            log.warning("TLS certificate verification is DISABLED for %s:%s (destination "
                        "tls.verify: false): the receiver's identity is not checked", host, port)
            # Logged once here, per pool; urllib3 would also warn on every single request.
            urllib3.disable_warnings(urllib3.exceptions.InsecureRequestWarning)
        return urllib3.HTTPSConnectionPool(
            address, port, maxsize=self.pool_maxsize, block=False,
            ssl_context=tls_context(tls), server_hostname=host,
            assert_hostname=host if tls.verify else False,
            cert_reqs="CERT_REQUIRED" if tls.verify else "CERT_NONE",
        )

    def send(self, request: OutboundRequest, *, timeout_s: float, rules: AddressRules,
             tls: TlsConfig = DEFAULT_TLS) -> Response:
        """Send once; raises DeliveryError/RefusedAddress or urllib3 errors."""
        request.check()
        address = self.resolve_checked(request.host, request.port, rules)
        pool = self._pool(request.scheme, address, request.port, request.host, tls)
        headers = {"Host": request.host_header, **request.headers}
        started = time.perf_counter()
        conn = pool._get_conn()
        try:
            response = pool._make_request(
                conn, request.method, request.target, body=request.body, headers=headers,
                retries=urllib3.Retry(False),
                timeout=urllib3.Timeout(connect=min(timeout_s, 10.0), read=timeout_s),
                response_conn=conn, preload_content=False,
            )
        except BaseException:
            conn.close()
            pool._put_conn(None)
            raise
        try:
            body = response.read(MAX_RESPONSE_BYTES) or b""
        finally:
            if not response.closed:  # body longer than we read: the connection is unusable
                response.close()
            response.release_conn()
        latency_ms = (time.perf_counter() - started) * 1000
        excerpt = body[:RESPONSE_EXCERPT_BYTES].decode("utf-8", "replace")
        return Response(response.status, dict(response.headers), latency_ms, address, excerpt,
                        body)

    def close(self) -> None:
        with self._lock:
            for pool in self._pools.values():
                pool.close()
            self._pools.clear()
