"""The pure verifiers, without a server: known vectors, rotation, and every way to fail."""

from __future__ import annotations

import base64
import hashlib
import hmac

import pytest

from receiver.signatures import BodyToken, HubSignature, StandardWebhooks

BODY = b'{"id": "774ae370-02cc-11e7-ac41-c38ce8763025", "event": "message.update"}'


def test_body_token_accepts_any_configured_token_and_nothing_else() -> None:
    v = BodyToken(["current", "previous"])
    assert v.verify("current") and v.verify("previous")
    for bad in ("", None, "curren", "current ", "CURRENT", "currentx", "prévious"):
        assert not v.verify(bad)
    with pytest.raises(ValueError):
        BodyToken([])


def test_hub_signature_is_hmac_sha1_hex_of_the_raw_body_with_the_secret_as_is() -> None:
    secret = "zICWczLmAOEDvh1DiPGSHw=="  # looks base64 but is used as-is (as the SDK does)
    v = HubSignature(["other", secret])
    good = hmac.new(secret.encode(), BODY, hashlib.sha1).hexdigest()
    assert v.verify(f"sha1={good}", BODY)
    assert v.verify(f"sha1={good.upper()}", BODY)  # hex case does not matter
    decoded_key = hmac.new(base64.b64decode(secret), BODY, hashlib.sha1).hexdigest()
    for header in (None, "", good, f"sha256={good}", f"sha1={decoded_key}", "sha1=",
                   f"sha1={good[:-1]}", "sha1=ü" + good[1:]):
        assert not v.verify(header, BODY)
    assert not v.verify(f"sha1={good}", BODY + b" ")  # the signature covers every byte


def test_standard_webhooks_reference_vector() -> None:
    # The vector of the Standard Webhooks reference libraries' own tests.
    secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
    msg_id, ts, body = "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, b'{"test": 2432232314}'
    expected = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
    assert StandardWebhooks.sign(secret, msg_id, ts, body) == expected
    v = StandardWebhooks([secret], tolerance_s=300)
    assert v.verify(msg_id, str(ts), expected, body, now_s=ts + 10)
    # several signatures (sender rotating) and an unknown scheme: any v1 match passes
    assert v.verify(msg_id, str(ts), f"v1a,AAAA v1,bm9wZQ== {expected}", body, now_s=ts)


def test_standard_webhooks_rejections() -> None:
    secret = "whsec_" + base64.b64encode(b"k" * 24).decode()
    v = StandardWebhooks(["whsec_" + base64.b64encode(b"old-key").decode(), secret], 300)
    ts = 1_700_000_000
    sig = StandardWebhooks.sign(secret, "msg_1", ts, BODY)
    assert v.verify("msg_1", str(ts), sig, BODY, now_s=ts - 299)
    assert not v.verify("msg_1", str(ts), sig, BODY, now_s=ts + 301)  # too old
    assert not v.verify("msg_1", str(ts), sig, BODY, now_s=ts - 301)  # from the future
    assert not v.verify("msg_2", str(ts), sig, BODY, now_s=ts)  # the id is signed
    assert not v.verify("msg_1", str(ts + 1), sig, BODY, now_s=ts)  # the timestamp is signed
    assert not v.verify("msg_1", str(ts), sig, BODY + b"\n", now_s=ts)
    assert not v.verify("msg_1", str(ts), sig.replace("v1,", "v2,"), BODY, now_s=ts)
    for missing in ((None, str(ts), sig), ("msg_1", None, sig), ("msg_1", str(ts), None),
                    ("msg_1", "1e9", sig), ("msg_1", "-5", sig), ("msg_1", "", sig)):
        assert not v.verify(*missing, BODY, now_s=ts)
    with pytest.raises(ValueError, match="secret #1") as info:
        StandardWebhooks(["whsec_not base64!"])
    assert "not base64!" not in str(info.value)  # a bad secret is never echoed
