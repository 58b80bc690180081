"""The pure verifiers, without a server: known vectors, rotation, and every way to fail, each
with the reason the operator's log will show."""

from __future__ import annotations

import base64
import hashlib
import hmac

import pytest

from receiver.signatures import AuthFailure, BodyToken, HubSignature, StandardWebhooks

BODY = b'{"id": "774ae370-02cc-11e7-ac41-c38ce8763025", "event": "message.update"}'


def test_body_token_accepts_any_configured_token_and_nothing_else() -> None:
    v = BodyToken(["current", "previous"])
    assert v.check("current") is None and v.check("previous") is None
    for missing in ("", None):
        assert v.check(missing) == AuthFailure("missing_token", "auth_token")
    for bad in ("curren", "current ", "CURRENT", "currentx", "prévious"):
        assert v.check(bad) == AuthFailure("no_matching_secret", "auth_token")
    with pytest.raises(ValueError):
        BodyToken([])


def test_hub_signature_is_hmac_sha1_hex_of_the_raw_body_with_the_secret_as_is() -> None:
    secret = "zICWczLmAOEDvh1DiPGSHw=="  # looks base64 but is used as-is (as the SDK does)
    v = HubSignature(["other", secret])
    good = hmac.new(secret.encode(), BODY, hashlib.sha1).hexdigest()
    assert v.check(f"sha1={good}", BODY) is None
    assert v.check(f"sha1={good.upper()}", BODY) is None  # hex case does not matter
    decoded_key = hmac.new(base64.b64decode(secret), BODY, hashlib.sha1).hexdigest()
    missing = AuthFailure("missing_header", "X-Hub-Signature")
    wrong_scheme = AuthFailure("wrong_scheme", "X-Hub-Signature")
    no_match = AuthFailure("no_matching_secret", "X-Hub-Signature")
    for header, failure in ((None, missing), ("", missing), (good, wrong_scheme),
                            (f"sha256={good}", wrong_scheme), (f"sha1={decoded_key}", no_match),
                            ("sha1=", no_match), (f"sha1={good[:-1]}", no_match),
                            ("sha1=ü" + good[1:], no_match)):
        assert v.check(header, BODY) == failure, header
    assert v.check(f"sha1={good}", BODY + b" ") == no_match  # the signature covers every byte


def test_standard_webhooks_reference_vector() -> None:
    # The vector of the Standard Webhooks reference libraries' own tests.
    secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
    msg_id, ts, body = "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, b'{"test": 2432232314}'
    expected = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
    assert StandardWebhooks.sign(secret, msg_id, ts, body) == expected
    v = StandardWebhooks([secret], tolerance_s=300)
    assert v.check(msg_id, str(ts), expected, body, now_s=ts + 10) is None
    # several signatures (sender rotating) and an unknown scheme: any v1 match passes
    assert v.check(msg_id, str(ts), f"v1a,AAAA v1,bm9wZQ== {expected}", body, now_s=ts) is None


def test_standard_webhooks_rejections() -> None:
    secret = "whsec_" + base64.b64encode(b"k" * 24).decode()
    v = StandardWebhooks(["whsec_" + base64.b64encode(b"old-key").decode(), secret], 300)
    ts = 1_700_000_000
    sig = StandardWebhooks.sign(secret, "msg_1", ts, BODY)
    assert v.check("msg_1", str(ts), sig, BODY, now_s=ts - 299) is None
    no_match = AuthFailure("no_matching_secret", "webhook-signature")
    # too old, and from the future: the log says by how much
    assert v.check("msg_1", str(ts), sig, BODY, now_s=ts + 301) == AuthFailure(
        "timestamp_outside_tolerance", "webhook-timestamp", skew_s=301)
    assert v.check("msg_1", str(ts), sig, BODY, now_s=ts - 301) == AuthFailure(
        "timestamp_outside_tolerance", "webhook-timestamp", skew_s=-301)
    assert v.check("msg_2", str(ts), sig, BODY, now_s=ts) == no_match  # the id is signed
    assert v.check("msg_1", str(ts + 1), sig, BODY, now_s=ts) == no_match  # and the timestamp
    assert v.check("msg_1", str(ts), sig, BODY + b"\n", now_s=ts) == no_match
    assert v.check("msg_1", str(ts), sig.replace("v1,", "v2,"), BODY, now_s=ts) == AuthFailure(
        "wrong_scheme", "webhook-signature")
    for args, failure in (
            ((None, str(ts), sig), AuthFailure("missing_header", "webhook-id")),
            (("msg_1", None, sig), AuthFailure("missing_header", "webhook-timestamp")),
            (("msg_1", "", sig), AuthFailure("missing_header", "webhook-timestamp")),
            (("msg_1", str(ts), None), AuthFailure("missing_header", "webhook-signature")),
            (("msg_1", "1e9", sig), AuthFailure("malformed_timestamp", "webhook-timestamp")),
            (("msg_1", "-5", sig), AuthFailure("malformed_timestamp", "webhook-timestamp"))):
        assert v.check(*args, BODY, now_s=ts) == failure, args
    with pytest.raises(ValueError, match="secret #1") as info:
        StandardWebhooks(["whsec_not base64!"])
    assert "not base64!" not in str(info.value)  # a bad secret is never echoed


def test_standard_webhooks_v1a_and_configuration_of_public_keys() -> None:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

    key = Ed25519PrivateKey.generate()
    whpk = "whpk_" + base64.b64encode(
        key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)).decode()
    ts = 1_700_000_000
    sig = "v1a," + base64.b64encode(key.sign(f"msg_1.{ts}.".encode() + BODY)).decode()
    v = StandardWebhooks([whpk], 300)
    assert v.check("msg_1", str(ts), sig, BODY, now_s=ts) is None
    assert v.check("msg_1", str(ts), sig, BODY + b" ", now_s=ts) == AuthFailure(
        "no_matching_secret", "webhook-signature")
    assert v.check("msg_1", str(ts), sig, BODY, now_s=ts, family="svix-") is None
    # Only v1 signatures, and this source holds only a public key: nothing can match.
    assert v.check("msg_1", str(ts), StandardWebhooks.sign("whsec_" + "QUJD" * 8, "msg_1", ts, BODY),
                   BODY, now_s=ts) == AuthFailure("wrong_scheme", "webhook-signature")
    assert v.check("msg_1", str(ts), " ".join([sig] * 9), BODY, now_s=ts) == AuthFailure(
        "malformed_header", "webhook-signature")
    for bad in ("whpk_not base64!", "whpk_" + base64.b64encode(b"short").decode()):
        with pytest.raises(ValueError, match="secret #2 is not whpk_") as info:
            StandardWebhooks(["whsec_" + "QUJD" * 8, bad])
        assert bad.removeprefix("whpk_") not in str(info.value)

