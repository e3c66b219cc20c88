"""TLS against a real local HTTPS receiver, with a CA and certificates made here.

The PKI is generated with ``cryptography``: a CA, a server certificate for
``127.0.0.1``, ``localhost`` and ``receiver.test``, and a client certificate
for mutual TLS. ``receiver.test`` is resolved by an injected resolver, so the
certificate is checked against the name while the socket goes to 127.0.0.1.
"""

from __future__ import annotations

import datetime
import ipaddress
import logging
import re
import ssl
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import urllib3.exceptions
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from tests.helpers import WorkerFactory, fast_retry
from tests.http.test_transport import CountingResolver, destination, request_for
from tests.receiver import Receiver
from workers.delivery.deliverer import describe
from workers.errors import DeliveryError
from workers.http.netsafety import AddressRules
from workers.http.transport import MIN_TLS_VERSION, TlsConfig, Transport, tls_context

OPEN = AddressRules()


@dataclass(frozen=True)
class Pki:
    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _write_key(path: Path, key: ec.EllipticCurvePrivateKey) -> Path:
    path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                       serialization.PrivateFormat.PKCS8,
                                       serialization.NoEncryption()))
    return path


def _issue(path: Path, subject: str, key: ec.EllipticCurvePrivateKey, issuer: x509.Name,
           issuer_key: ec.EllipticCurvePrivateKey, *extensions: tuple[Any, bool]) -> Path:
    now = datetime.datetime.now(datetime.UTC)
    builder = (x509.CertificateBuilder().subject_name(_name(subject)).issuer_name(issuer)
               .public_key(key.public_key()).serial_number(x509.random_serial_number())
               .not_valid_before(now - datetime.timedelta(minutes=5))
               .not_valid_after(now + datetime.timedelta(days=2)))
    for extension, critical in extensions:
        builder = builder.add_extension(extension, critical=critical)
    cert = builder.sign(issuer_key, hashes.SHA256())
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return path


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    out = tmp_path_factory.mktemp("pki")
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = _issue(out / "ca.pem", "recnotify test CA", ca_key, _name("recnotify test CA"), ca_key,
                (x509.BasicConstraints(ca=True, path_length=None), True),
                (x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                               content_commitment=False, key_encipherment=False,
                               data_encipherment=False, key_agreement=False,
                               encipher_only=False, decipher_only=False), True))
    server_key = ec.generate_private_key(ec.SECP256R1())
    server_cert = _issue(
        out / "server.pem", "receiver.test", server_key, _name("recnotify test CA"), ca_key,
        (x509.SubjectAlternativeName([
            x509.DNSName("receiver.test"), x509.DNSName("localhost"),
            x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False),
        (x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), False))
    client_key = ec.generate_private_key(ec.SECP256R1())
    client_cert = _issue(out / "client.pem", "recnotify client", client_key,
                         _name("recnotify test CA"), ca_key,
                         (x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), False))
    return Pki(ca, server_cert, _write_key(out / "server.key", server_key), client_cert,
               _write_key(out / "client.key", client_key))


def https_receiver(pki: Pki, *, require_client_cert: bool = False,
                   max_version: ssl.TLSVersion | None = None) -> Receiver:
    """A :class:`Receiver` whose listening socket speaks TLS with the test's server cert."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(pki.server_cert, pki.server_key)
    if require_client_cert:
        context.verify_mode = ssl.CERT_REQUIRED
        context.load_verify_locations(cafile=pki.ca)
    if max_version is not None:
        context.set_ciphers("ALL:@SECLEVEL=0")
        context.minimum_version = ssl.TLSVersion.MINIMUM_SUPPORTED
        context.maximum_version = max_version
    receiver = Receiver()
    receiver.server.socket = context.wrap_socket(receiver.server.socket, server_side=True)
    return receiver


@pytest.fixture
def tls_receiver(pki: Pki) -> Iterator[Receiver]:
    with https_receiver(pki) as server:
        yield server


def send(url: str, tls: TlsConfig, resolver: CountingResolver | None = None) -> int:
    transport = Transport(resolver=resolver or CountingResolver("127.0.0.1"))
    try:
        return transport.send(request_for(destination(url)), timeout_s=5, rules=OPEN,
                              tls=tls).status
    finally:
        transport.close()


def test_certificate_from_an_unknown_ca_is_refused_by_default(tls_receiver: Receiver) -> None:
    with pytest.raises(urllib3.exceptions.SSLError) as failed:
        send(f"https://127.0.0.1:{tls_receiver.port}/h", TlsConfig())
    assert describe(failed.value).startswith("TLS error")
    assert "certificate verify failed" in describe(failed.value)
    assert tls_receiver.received() == []


def test_ca_bundle_makes_the_receiver_trusted_by_its_name(pki: Pki, tls_receiver: Receiver
                                                          ) -> None:
    status = send(f"https://receiver.test:{tls_receiver.port}/h", TlsConfig(ca_bundle=str(pki.ca)))
    assert status == 200
    (got,) = tls_receiver.received()
    assert got.header("Host") == f"receiver.test:{tls_receiver.port}"


def test_certificate_for_another_name_is_refused_even_from_a_trusted_ca(
        pki: Pki, tls_receiver: Receiver) -> None:
    with pytest.raises(urllib3.exceptions.SSLError, match=re.escape("other.test")):
        send(f"https://other.test:{tls_receiver.port}/h", TlsConfig(ca_bundle=str(pki.ca)))
    assert tls_receiver.received() == []


def test_mutual_tls_sends_the_client_certificate(pki: Pki) -> None:
    with https_receiver(pki, require_client_cert=True) as server:
        url = f"https://localhost:{server.port}/mtls"
        with pytest.raises((urllib3.exceptions.SSLError, urllib3.exceptions.ProtocolError,
                            OSError)):
            send(url, TlsConfig(ca_bundle=str(pki.ca)))
        assert server.received() == []
        status = send(url, TlsConfig(ca_bundle=str(pki.ca), client_cert=str(pki.client_cert),
                                     client_key=str(pki.client_key)))
        assert status == 200 and len(server.received()) == 1


def test_verification_opt_out_works_and_is_logged_as_a_warning(
        tls_receiver: Receiver, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="recnotify.transport"):
        status = send(f"https://localhost:{tls_receiver.port}/h", TlsConfig(verify=False))
    assert status == 200
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert any("verification is DISABLED for localhost" in r.getMessage() for r in warnings)


@pytest.mark.filterwarnings("ignore:ssl.TLSVersion.TLSv1_1 is deprecated")
def test_tls_1_1_receiver_is_refused_and_the_client_minimum_is_1_2(pki: Pki) -> None:
    assert tls_context(TlsConfig()).minimum_version == MIN_TLS_VERSION == ssl.TLSVersion.TLSv1_2
    assert tls_context(TlsConfig(verify=False)).minimum_version == ssl.TLSVersion.TLSv1_2
    with https_receiver(pki, max_version=ssl.TLSVersion.TLSv1_1) as old:
        with pytest.raises((urllib3.exceptions.SSLError, urllib3.exceptions.ProtocolError)):
            send(f"https://localhost:{old.port}/h", TlsConfig(ca_bundle=str(pki.ca)))
        assert old.received() == []


def test_unreadable_tls_files_are_a_delivery_error_naming_the_path(tmp_path: Path) -> None:
    missing = str(tmp_path / "nope.pem")
    with pytest.raises(DeliveryError, match=re.escape("nope.pem")):
        tls_context(TlsConfig(ca_bundle=missing))
    with pytest.raises(DeliveryError, match="client_cert"):
        tls_context(TlsConfig(client_cert=missing, client_key=missing))


@pytest.mark.slow
def test_worker_dead_letters_an_unverifiable_receiver_and_delivers_with_ca_bundle(
        pki: Pki, tls_receiver: Receiver, workers: WorkerFactory) -> None:
    base = f"https://127.0.0.1:{tls_receiver.port}"
    workers.configure(
        "destinations:\n"
        f"  - {{name: untrusted, events: all, scope: global, url: '{base}/untrusted',"
        f" retry: {fast_retry(max_attempts=2)}}}\n"
        f"  - {{name: trusted, events: all, scope: global, url: '{base}/trusted',"
        f" tls: {{ca_bundle: '{pki.ca}'}}}}\n")
    workers.start(concurrency=2)
    workers.publisher().publish("RECORDING_STARTED_EVENT", params={"UCID": "tls"})
    (got,) = tls_receiver.wait_for(1)
    (letter,) = workers.wait_dead_letters(1, timeout_s=30)
    time.sleep(0.3)
    assert got.path == "/trusted" and [r.path for r in tls_receiver.received()] == ["/trusted"]
    assert letter["destination"] == "untrusted"
    assert "TLS error" in letter["reason"] and "certificate verify failed" in letter["reason"]
