"""Standard Webhooks signing (SPEC section 6)."""

from __future__ import annotations

import base64
import hashlib
import hmac

import pytest

from workers.http.signing import generate_secret, sign, validate_secret, verify

MSG_ID = "msg_2KWPBgLlAfxdpx2AI54pPJ85f4W"
TIMESTAMP = 1_700_000_000


def _secret_of(nbytes: int) -> str:
    return "whsec_" + base64.b64encode(bytes(range(nbytes))).decode()


def test_signature_matches_independent_hmac_computation() -> None:
    key = bytes(range(32))
    payload = b"/hook?event=RECORDING_STARTED_EVENT&ucid=13-23132%401.2.3.4"
    digest = hmac.new(key, f"{MSG_ID}.{TIMESTAMP}.".encode() + payload, hashlib.sha256).digest()
    expected = "v1," + base64.b64encode(digest).decode()
    assert sign([_secret_of(32)], MSG_ID, TIMESTAMP, payload) == expected


def test_official_standard_webhooks_vector() -> None:
    # from the Standard Webhooks reference libraries' test suites
    secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
    msg_id, timestamp, payload = "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, b'{"test": 2432232314}'
    expected = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
    assert sign([secret], msg_id, timestamp, payload) == expected
    assert verify(secret, msg_id, timestamp, payload, expected)


def test_rotation_gives_one_space_separated_signature_per_secret() -> None:
    old, new = generate_secret(), generate_secret(24)
    header = sign([old, new], MSG_ID, TIMESTAMP, b"body")
    parts = header.split(" ")
    assert len(parts) == 2 and all(p.startswith("v1,") for p in parts)
    assert parts[0] == sign([old], MSG_ID, TIMESTAMP, b"body")
    assert parts[1] == sign([new], MSG_ID, TIMESTAMP, b"body")
    assert verify(old, MSG_ID, TIMESTAMP, b"body", header)
    assert verify(new, MSG_ID, TIMESTAMP, b"body", header)


@pytest.mark.parametrize(
    ("msg_id", "timestamp", "payload"),
    [
        ("other-id", TIMESTAMP, b"body"),
        (MSG_ID, TIMESTAMP + 1, b"body"),
        (MSG_ID, TIMESTAMP, b"bodY"),
    ],
)
def test_verify_rejects_any_changed_part(msg_id: str, timestamp: int, payload: bytes) -> None:
    secret = generate_secret()
    header = sign([secret], MSG_ID, TIMESTAMP, b"body")
    assert not verify(secret, msg_id, timestamp, payload, header)


def test_verify_rejects_other_secret_and_other_version() -> None:
    secret = generate_secret()
    header = sign([secret], MSG_ID, TIMESTAMP, b"body")
    assert not verify(generate_secret(), MSG_ID, TIMESTAMP, b"body", header)
    assert not verify(secret, MSG_ID, TIMESTAMP, b"body", header.replace("v1,", "v2,"))
    assert not verify(secret, MSG_ID, TIMESTAMP, b"body", "")


def test_generated_secret_is_valid_and_random() -> None:
    secret = generate_secret()
    validate_secret(secret)
    assert secret.startswith("whsec_")
    assert len(base64.b64decode(secret.removeprefix("whsec_"))) == 32
    assert generate_secret() != secret


@pytest.mark.parametrize("nbytes", [24, 64])
def test_secret_of_24_to_64_bytes_is_accepted(nbytes: int) -> None:
    validate_secret(_secret_of(nbytes))


@pytest.mark.parametrize("nbytes", [23, 65])
def test_secret_outside_24_to_64_bytes_is_refused(nbytes: int) -> None:
    with pytest.raises(ValueError, match=f"24-64 bytes, got {nbytes}"):
        validate_secret(_secret_of(nbytes))
    with pytest.raises(ValueError):
        generate_secret(nbytes)


@pytest.mark.parametrize(
    ("secret", "problem"),
    [
        (_secret_of(32).replace("whsec_", "whsek_"), "must start with 'whsec_'"),
        (base64.b64encode(bytes(32)).decode(), "must start with 'whsec_'"),
        ("whsec_" + "!" * 44, "standard base64"),
        ("whsec_" + base64.urlsafe_b64encode(b"\xfb\xff" * 16).decode(), "standard base64"),
        (_secret_of(32).rstrip("="), "standard base64"),
    ],
)
def test_bad_secret_is_refused_naming_the_problem(secret: str, problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        validate_secret(secret)


@pytest.mark.parametrize("secret", [_secret_of(23), "whsec_" + "A" * 43 + "!", "wh" + "A" * 44])
def test_error_message_never_contains_the_secret(secret: str) -> None:
    with pytest.raises(ValueError) as excinfo:
        validate_secret(secret)
    body = secret.removeprefix("whsec_")
    assert body not in str(excinfo.value)
    assert body[:8] not in str(excinfo.value)


def test_sign_refuses_invalid_secret() -> None:
    with pytest.raises(ValueError):
        sign([generate_secret(), "whsec_short"], MSG_ID, TIMESTAMP, b"body")
