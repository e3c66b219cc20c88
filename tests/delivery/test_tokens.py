"""Destinations with auth, the pure parts and one process: parsing the login answers,
the token request, the cache's refresh (injected clock), validation at save, secrets
at rest, and the token request going through the Transport's address rules."""

from __future__ import annotations

import base64
import ssl
import threading
import time
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.http.test_tls import Pki, pki
from tests.http.test_transport import CountingResolver
from tests.token_servers import TokenServer
from workers.delivery.tokens import (
    LoginRefused,
    LoginUnavailable,
    TokenCache,
    fetch_token,
    login_request,
    parse_face_login,
    parse_login_answer,
    parse_oauth2_token,
    refresh_at,
)
from workers.destinations import dump_file
from workers.destinations.auth import AuthConfig
from workers.destinations.model import MASK, TlsOptions
from workers.destinations.rules import parse_destination
from workers.errors import InvalidDestination, RecnotifyError
from workers.http.netsafety import AddressRules, parse_cidrs
from workers.http.transport import Transport
from workers.store.database import Store

__all__ = ["pki"]  # the fixture, re-exported for pytest

PASSWORD = "pa55-Word-9f3c"
FACE_OK = (b"<result><code>0</code><message>ACK</message><token>abc.DEF-123</token>"
           b"<expiration>3600seconds</expiration></result>")


def face_auth(**extra: Any) -> dict[str, Any]:
    return {"type": "login_form", "login_url": "https://face.example:8443/Face/login",
            "username": "ops@example.com", "password": PASSWORD, **extra}


def oauth_auth(**extra: Any) -> dict[str, Any]:
    return {"type": "oauth2_client_credentials", "token_url": "https://idp.example/oauth/token",
            "client_id": "recnotify", "client_secret": "cl1ent-s3cret", "scope": "notify",
            **extra}


def dest(auth: Any, **extra: Any) -> dict[str, Any]:
    return {"name": "face-auth", "preset": "face", "url": "https://face.example:8443/Face/notify",
            "auth": auth, **extra}


def refused(data: dict[str, Any], **kw: Any) -> dict[str, str]:
    with pytest.raises(InvalidDestination) as info:
        parse_destination(data, **kw)
    return {e.field: e.message for e in info.value.errors}


# -- the FACE login answer ----------------------------------------------------------------

def test_face_answer_gives_the_token_and_its_lifetime() -> None:
    assert parse_face_login(FACE_OK) == ("abc.DEF-123", 3600.0)
    no_expiry = b"<result><code>0</code><message>ACK</message><token>t-1</token></result>"
    assert parse_face_login(no_expiry) == ("t-1", None)


@pytest.mark.parametrize(("body", "words"), [
    (b"<result><code>1</code><message>Invalid credentials</message></result>",
     "code 1 (Invalid credentials)"),
    (b"<result><code>0</code><message>ACK</message></result>", "no token"),
    (b"<result><message>ACK</message><token>x</token></result>", "code (none)"),
    (b"<html>502 Bad Gateway", "not XML"),
    (b'<?xml version="1.0"?><!DOCTYPE r [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;">]>'
     b"<result><code>0</code><token>&b;</token></result>", "DTD"),
    (b"<result>" + b"x" * 70_000 + b"</result>", "over"),
])
def test_face_answer_that_is_no_token_is_a_login_refusal(body: bytes, words: str) -> None:
    with pytest.raises(LoginRefused, match=words.replace("(", r"\(").replace(")", r"\)")):
        parse_face_login(body)


def test_login_errors_are_recnotify_errors() -> None:
    assert issubclass(LoginRefused, RecnotifyError)
    assert issubclass(LoginUnavailable, RecnotifyError)


@pytest.mark.parametrize("status", [500, 502, 503, 408, 429])
def test_an_unavailable_endpoint_is_retryable_not_a_refusal(status: int) -> None:
    auth = AuthConfig("login_form", "https://h/Face/login", "u", PASSWORD)
    with pytest.raises(LoginUnavailable, match=str(status)):
        parse_login_answer(auth, status, b"")


# -- the OAuth2 answer (oauthlib) -------------------------------------------------------------

def test_oauth2_answer_gives_the_access_token_and_expires_in() -> None:
    body = b'{"access_token": "at-1", "token_type": "Bearer", "expires_in": 120}'
    assert parse_oauth2_token(body, "notify") == ("at-1", 120.0)
    assert parse_oauth2_token(b'{"access_token": "at-2", "token_type": "Bearer"}', None) == (
        "at-2", None)


def test_oauth2_narrower_scope_is_accepted() -> None:
    body = b'{"access_token": "at-3", "token_type": "Bearer", "scope": "read"}'
    assert parse_oauth2_token(body, "read write")[0] == "at-3"


@pytest.mark.parametrize(("status", "body", "words"), [
    (401, b'{"error": "invalid_client"}', "invalid_client"),
    (400, b'{"error": "invalid_scope", "error_description": "no such scope"}', "no such scope"),
    (200, b'{"token_type": "Bearer"}', "access token"),
    (403, b"forbidden", "HTTP 403"),
])
def test_oauth2_error_answers_are_login_refusals(status: int, body: bytes, words: str) -> None:
    auth = AuthConfig("oauth2_client_credentials", "https://idp/token", "id", "s3cret-x")
    with pytest.raises(LoginRefused, match=words):
        parse_login_answer(auth, status, body)


# -- the token request ----------------------------------------------------------------------

def test_oauth2_request_is_client_credentials_with_basic_auth() -> None:
    auth = AuthConfig("oauth2_client_credentials", "https://idp.example/oauth/token?tenant=a",
                      "rec:notify", "s3cr&t", scope="notify read")
    request = login_request(auth)
    assert (request.method, request.host, request.port, request.target) == (
        "POST", "idp.example", 443, "/oauth/token?tenant=a")
    assert parse_qs((request.body or b"").decode()) == {
        "grant_type": ["client_credentials"], "scope": ["notify read"]}
    pair = base64.b64decode(request.headers["Authorization"].removeprefix("Basic ")).decode()
    assert pair == "rec%3Anotify:s3cr%26t"  # RFC 6749 2.3.1: form-encoded, then Basic
    assert request.headers["Content-Type"] == "application/x-www-form-urlencoded"


def test_oauth2_request_can_send_the_client_in_the_form() -> None:
    auth = AuthConfig("oauth2_client_credentials", "https://idp/token", "id-1", "s3cret-x",
                      client_auth="post")
    request = login_request(auth)
    assert "Authorization" not in request.headers
    assert parse_qs((request.body or b"").decode()) == {
        "grant_type": ["client_credentials"], "client_id": ["id-1"], "client_secret": ["s3cret-x"]}


def test_face_request_is_the_login_form() -> None:
    auth = AuthConfig("login_form", "https://face:8443/Face/login", "ops@example.com", "p&w",
                      expiration_s=600)
    request = login_request(auth)
    assert request.target == "/Face/login" and request.port == 8443
    assert parse_qs((request.body or b"").decode()) == {
        "userEmail": ["ops@example.com"], "password": ["p&w"], "expirationSeconds": ["600"]}


# -- refresh and the cache ------------------------------------------------------------------

def test_refresh_points() -> None:
    assert refresh_at(1000.0, 3600.0) == 1000.0 + 3240.0  # 90 % (earlier than 30 s before)
    assert refresh_at(0.0, 100.0) == 70.0  # 30 s before
    assert refresh_at(0.0, 40.0) == 20.0  # never before half the lifetime
    assert refresh_at(0.0, 2.0) == 1.0


@given(st.floats(0, 1e9), st.floats(0.001, 1e7))
def test_refresh_is_always_before_expiry_and_after_half_the_lifetime(
    issued: float, lifetime: float
) -> None:
    at = refresh_at(issued, lifetime)
    assert issued + 0.5 * lifetime - 1e-6 <= at <= issued + 0.9 * lifetime + 1e-6
    assert at < issued + lifetime or lifetime < 1e-6


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_cache_reuses_a_token_until_its_refresh_point_then_fetches_again() -> None:
    clock = Clock()
    cache = TokenCache(clock)
    issued: list[str] = []

    def fetch() -> tuple[str, float | None]:
        issued.append(f"t{len(issued) + 1}")
        return issued[-1], 100.0

    assert [cache.get("k", fetch) for _ in range(5)] == ["t1"] * 5
    clock.now += 69.9
    assert cache.get("k", fetch) == "t1"
    clock.now += 0.2  # past 70 s: refreshed before its expiry at 100 s
    assert cache.get("k", fetch) == "t2"
    assert cache.fetches == {"k": 2}
    assert "t2" not in repr(cache) and "t2" not in repr(cache.peek("k"))


def test_cache_without_a_lifetime_assumes_300_s() -> None:
    clock = Clock()
    cache = TokenCache(clock)
    cache.get("k", lambda: ("t", None))
    clock.now += 269
    assert cache.peek("k") is not None
    clock.now += 2
    assert cache.peek("k") is None


def test_invalidate_drops_only_the_refused_token() -> None:
    cache = TokenCache(Clock())
    values = iter(["a", "b", "c"])
    assert cache.get("k", lambda: (next(values), 60.0)) == "a"
    cache.invalidate("k", "stale")  # another thread's older token: keep the new one
    assert cache.get("k", lambda: (next(values), 60.0)) == "a"
    cache.invalidate("k", "a")
    assert cache.get("k", lambda: (next(values), 60.0)) == "b"


def test_concurrent_gets_log_in_once() -> None:
    cache = TokenCache()
    calls: list[int] = []

    def slow_fetch() -> tuple[str, float | None]:
        calls.append(1)
        time.sleep(0.2)
        return "t", 60.0

    got: list[str] = []
    threads = [threading.Thread(target=lambda: got.append(cache.get("k", slow_fetch)))
               for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert got == ["t"] * 8 and len(calls) == 1


def test_a_failed_fetch_caches_nothing() -> None:
    cache = TokenCache(Clock())

    def down() -> tuple[str, float | None]:
        raise LoginUnavailable("connection refused")

    with pytest.raises(LoginUnavailable):
        cache.get("k", down)
    assert cache.get("k", lambda: ("t", 60.0)) == "t"


# -- validation at save -------------------------------------------------------------------

def test_valid_auths_parse_and_mask() -> None:
    d = parse_destination(dest(face_auth(expiration_s=600, token_header="X-Face-Token",
                                         token_prefix="")))
    assert d.auth is not None and d.auth.credential == PASSWORD
    shown = d.to_dict()["auth"]
    assert shown == {"type": "login_form", "login_url": "https://face.example:8443/Face/login",
                     "username": "ops@example.com", "password": MASK, "expiration_s": 600,
                     "token_header": "X-Face-Token", "token_prefix": ""}
    assert PASSWORD not in repr(d) and PASSWORD not in repr(d.auth)
    assert PASSWORD not in dump_file([d]) and PASSWORD in dump_file([d], include_secrets=True)
    o = parse_destination(dest(oauth_auth()))
    assert o.to_dict()["auth"]["client_secret"] == MASK and o.has_secrets


@pytest.mark.parametrize(("auth", "field", "words"), [
    ({"type": "basic"}, "auth.type", "oauth2_client_credentials or login_form"),
    ("token", "auth", "not a map"),
    ({"type": "oauth2_client_credentials", "client_id": "a", "client_secret": "b"},
     "auth.token_url", "token_url is required"),
    (oauth_auth(token_url="ftp://idp/token"), "auth.token_url", "absolute http(s) URL"),
    (oauth_auth(token_url="https://u:p@idp/token"), "auth.token_url", "remove user:password@"),
    (oauth_auth(client_id=""), "auth.client_id", "client_id"),
    (oauth_auth(client_secret=None), "auth.client_secret", "client_secret is required"),
    (oauth_auth(client_auth="jwt"), "auth.client_auth", "'basic'"),
    (face_auth(password=""), "auth.password", "password is required"),
    (face_auth(username=None), "auth.username", "username"),
    (face_auth(expiration_s=0), "auth.expiration_s", "integer number of seconds"),
    (face_auth(scope="x"), "auth.scope", "unknown field"),
    (face_auth(token_header="Bad Header"), "auth.token_header", "HTTP header name"),
    (face_auth(token_header="webhook-signature"), "auth.token_header", "set by recnotify"),
    (face_auth(token_in="cookie"), "auth.token_in", "'header' or 'params'"),
])
def test_bad_auth_is_refused_with_the_field_and_the_fix(auth: Any, field: str, words: str
                                                        ) -> None:
    errors = refused(dest(auth))
    assert field in errors, errors
    assert words in errors[field]
    assert all(PASSWORD not in m and "cl1ent-s3cret" not in m for m in errors.values())


def test_token_placeholder_needs_an_auth_with_the_token_in_params() -> None:
    params = "event=AudioRecordingStarted&ucid=%UCID%&token=%TOKEN%"
    data = {"name": "d", "events": ["RECORDING_STARTED_EVENT"], "url": "https://h/x",
            "params": params}
    assert "token_in: params" in refused(data)["params"]
    assert "token_in: params" in refused({**data, "auth": face_auth()})["params"]
    ok = parse_destination({**data, "auth": face_auth(token_in="params")})
    assert ok.auth is not None and ok.auth.in_params
    per_event = {**data, "params": {"RECORDING_STARTED_EVENT": params}}
    assert "token_in: params" in refused(per_event)["params.RECORDING_STARTED_EVENT"]
    no_placeholder = {**data, "params": "ucid=%UCID%", "auth": face_auth(token_in="params")}
    assert "%TOKEN%" in refused(no_placeholder)["auth.token_in"]


def test_masked_credential_is_kept_on_edit_only_for_the_same_login_host() -> None:
    stored = parse_destination(dest(face_auth()))
    kept = parse_destination(dest(face_auth(password=MASK, username="other@example.com")),
                             existing=stored)
    assert kept.auth is not None and kept.auth.credential == PASSWORD
    assert kept.auth.user == "other@example.com"
    moved = dest(face_auth(password=MASK, login_url="https://evil.example/Face/login"))
    assert "same host:port" in refused(moved, existing=stored)["auth.password"]
    assert "no stored password" in refused(dest(face_auth(password=MASK)))["auth.password"]
    other_type = dest(oauth_auth(client_secret=MASK))
    assert "no stored client_secret" in refused(other_type, existing=stored)[
        "auth.client_secret"]


def test_credential_is_encrypted_at_rest_and_comes_back(tmp_path: Path) -> None:
    store = Store(f"sqlite:///{tmp_path / 'db.sqlite'}", "test-secret-key-0123456789")
    store.upgrade()
    store.save(parse_destination(dest(oauth_auth())))
    loaded = store.get("face-auth")
    assert loaded.auth is not None and loaded.auth.credential == "cl1ent-s3cret"
    assert loaded.auth == parse_destination(dest(oauth_auth())).auth
    raw = (tmp_path / "db.sqlite").read_bytes() + b"".join(
        p.read_bytes() for p in tmp_path.glob("db.sqlite-*"))
    assert b"cl1ent-s3cret" not in raw
    assert b"idp.example" in raw  # the rest of the auth is plain config
    store.close()


# -- the token request goes through the Transport --------------------------------------------

def test_fetch_token_through_the_transport_and_its_address_rules() -> None:
    with TokenServer("oauth2", user="recnotify", password="cl1ent-s3cret", lifetime_s=90) as idp:
        auth = AuthConfig("oauth2_client_credentials", idp.url("/token"), "recnotify",
                          "cl1ent-s3cret", scope="notify")
        transport = Transport()
        token, lifetime = fetch_token(transport, auth, rules=AddressRules(), tls=TlsOptions(),
                                      timeout_s=5)
        assert token in idp.tokens and lifetime == 90.0
        assert idp.logins[0].form == {"grant_type": "client_credentials", "scope": "notify"}
        no_loopback = AddressRules(deny=parse_cidrs("127.0.0.0/8", where="test"))
        with pytest.raises(LoginRefused, match=r"127\.0\.0\.1"):
            fetch_token(transport, auth, rules=no_loopback, tls=TlsOptions(), timeout_s=5)
        assert len(idp.logins) == 1  # refused before any connection
        wrong = AuthConfig("oauth2_client_credentials", idp.url("/token"), "recnotify", "nope")
        with pytest.raises(LoginRefused, match="invalid_client"):
            fetch_token(transport, wrong, rules=AddressRules(), tls=TlsOptions(), timeout_s=5)
        port = idp.port
    closed = AuthConfig("login_form", f"http://127.0.0.1:{port}/Face/login", "u", PASSWORD)
    with pytest.raises(LoginUnavailable, match="refused"):
        fetch_token(Transport(), closed, rules=AddressRules(), tls=TlsOptions(), timeout_s=2)


@given(st.dictionaries(
    st.sampled_from(["type", "login_url", "token_url", "username", "password", "client_id",
                     "client_secret", "token_in", "token_header", "token_prefix", "scope",
                     "expiration_s", "client_auth", "username_field", "other"]),
    st.one_of(st.none(), st.booleans(), st.integers(), st.text(max_size=30),
              st.sampled_from(["login_form", "oauth2_client_credentials", "params", MASK,
                               "https://h/x"]),
              st.lists(st.integers(), max_size=2), st.dictionaries(st.text(max_size=3),
                                                                   st.integers(), max_size=2)),
    max_size=10),
    st.one_of(st.text(max_size=40), st.integers(), st.dictionaries(
        st.sampled_from(["RECORDING_STARTED_EVENT", "RECORDING_ENDED_EVENT"]),
        st.one_of(st.integers(), st.text(max_size=20), st.just("t=%TOKEN%")), max_size=2)))
def test_any_auth_value_parses_or_is_refused_never_crashes(auth: dict[str, Any], params: Any
                                                           ) -> None:
    try:
        d = parse_destination(dest(auth, params=params))
    except InvalidDestination as exc:
        assert exc.errors and all(e.message for e in exc.errors)
    else:
        assert d.auth is not None and d.auth.credential not in ("", MASK)


def test_token_request_uses_the_destinations_tls_options(pki: Pki) -> None:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(pki.server_cert, pki.server_key)
    idp = TokenServer("oauth2", user="recnotify", password="cl1ent-s3cret")
    idp.server.socket = context.wrap_socket(idp.server.socket, server_side=True)
    with idp:
        auth = AuthConfig("oauth2_client_credentials", f"https://receiver.test:{idp.port}/token",
                          "recnotify", "cl1ent-s3cret")
        transport = Transport(resolver=CountingResolver("127.0.0.1"))
        with pytest.raises(LoginUnavailable, match="TLS error"):  # unknown CA: refused
            fetch_token(transport, auth, rules=AddressRules(), tls=TlsOptions(), timeout_s=5)
        token, _ = fetch_token(transport, auth, rules=AddressRules(),
                               tls=TlsOptions(ca_bundle=str(pki.ca)), timeout_s=5)
        assert token in idp.tokens and idp.logins[0].header("Host") == f"receiver.test:{idp.port}"
        transport.close()


def test_the_published_schema_describes_auth_in_and_out() -> None:
    from workers.destinations.schema import DestinationIn, DestinationOut

    for auth in (face_auth(expiration_s=60, token_header="X-Token"),
                 oauth_auth(client_auth="post")):
        DestinationIn.model_validate({**dest(auth), "events": ["RECORDING_STARTED_EVENT"]})
        DestinationOut.model_validate(parse_destination(dest(auth)).to_dict())
    with pytest.raises(ValueError, match="client_secret"):
        DestinationIn.model_validate({**dest(oauth_auth()), "events": ["RECORDING_STARTED_EVENT"],
                                      "auth": {**oauth_auth(), "client_secret": None}})


def test_a_refused_login_is_not_asked_again_for_a_while() -> None:
    clock = Clock()
    cache = TokenCache(clock)
    asked: list[int] = []

    def wrong_password() -> tuple[str, float | None]:
        asked.append(1)
        raise LoginRefused("login answered code 1 (Invalid credentials)")

    for _ in range(5):  # a burst of notifications: one login
        with pytest.raises(LoginRefused, match="code 1"):
            cache.get("k", wrong_password)
    assert len(asked) == 1
    assert cache.get("other-key", lambda: ("t", 60.0)) == "t"  # corrected credentials
    clock.now += 61
    assert cache.get("k", lambda: ("t2", 60.0)) == "t2"  # asked again after the hold


def test_a_header_the_token_would_overwrite_is_refused() -> None:
    errors = refused(dest(face_auth(), headers={"authorization": "Basic abc"}))
    assert "token goes in this header" in errors["headers.Authorization"]
    ok = parse_destination(dest(face_auth(token_header="X-Face-Token"),
                                headers={"Authorization": "Basic abc"}))
    assert ok.headers[0].name == "Authorization"
    basic_too = refused({**dest(face_auth()), "url": "https://u:secretpw@face.example/n"})
    assert "both go in Authorization" in basic_too["url"]
    assert all("secretpw" not in m for m in basic_too.values())
