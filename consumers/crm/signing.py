"""Standard Webhooks request signatures (https://www.standardwebhooks.com), pure.

``webhook-signature: v1,<base64(HMAC-SHA256(key, f"{id}.{timestamp}.{body}"))>`` where the
key is the base64 part of a ``whsec_…`` secret. The receiver can verify that a request came
from Parley, and ``webhook-id`` doubles as an idempotency key.
"""

from __future__ import annotations

import base64
import hashlib
import hmac

from parley.credentials import STANDARD_KEY_BYTES, STANDARD_PREFIX, decode_standard_secret

__all__ = ["MIN_KEY_BYTES", "sign", "signature_headers", "signing_key", "verify"]

MIN_KEY_BYTES = STANDARD_KEY_BYTES[0]  # the specification's lower bound (24 to 64 random bytes)


def signing_key(secret: object) -> bytes:
    """The HMAC key of a ``whsec_<base64>`` secret (the prefix is optional).

    Raises ``ValueError`` naming what is wrong (never the secret itself) for anything but a
    string of base64 that decodes to at least :data:`MIN_KEY_BYTES` bytes. An empty secret is
    an error rather than "sign nothing": a blank environment variable must not quietly turn
    signing off.
    """
    if not isinstance(secret, str):
        raise ValueError("signing_secret must be a string: whsec_ followed by base64")
    if not secret.removeprefix(STANDARD_PREFIX).strip():
        raise ValueError("signing_secret is empty: set the whsec_… secret the CRM gave you, or "
                         "remove the key to send unsigned requests")
    try:
        key = decode_standard_secret(secret)
    except ValueError:
        raise ValueError("signing_secret is not whsec_ followed by base64") from None
    if len(key) < MIN_KEY_BYTES:
        raise ValueError(f"signing_secret is too short: its key has {len(key)} bytes, Standard "
                         f"Webhooks secrets have {MIN_KEY_BYTES} to 64 random bytes")
    return key


def sign(secret: str, msg_id: str, timestamp: int, body: bytes) -> str:
    mac = hmac.new(signing_key(secret), f"{msg_id}.{timestamp}.".encode() + body,
                   hashlib.sha256)
    return "v1," + base64.b64encode(mac.digest()).decode()


def signature_headers(secret: str, msg_id: str, timestamp: int, body: bytes) -> dict[str, str]:
    return {"webhook-id": msg_id, "webhook-timestamp": str(timestamp),
            "webhook-signature": sign(secret, msg_id, timestamp, body)}


def verify(secret: str, headers: dict[str, str], body: bytes) -> bool:
    """True if any ``v1`` signature in ``webhook-signature`` matches (constant-time)."""
    try:
        want = sign(secret, headers["webhook-id"], int(headers["webhook-timestamp"]), body)
    except (KeyError, ValueError):
        return False
    return any(hmac.compare_digest(want, got) for got in headers.get("webhook-signature",
                                                                      "").split())
