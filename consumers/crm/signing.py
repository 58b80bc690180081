"""Standard Webhooks request signatures (https://www.standardwebhooks.com), pure.

``webhook-signature: v1,<base64(HMAC-SHA256(key, f"{id}.{timestamp}.{body}"))>`` where the
key is the base64 part of a ``whsec_…`` secret. The receiver can verify that a request came
from Parley, and ``webhook-id`` doubles as an idempotency key.
"""

from __future__ import annotations

import base64
import hashlib
import hmac

__all__ = ["sign", "signature_headers", "verify"]

PREFIX = "whsec_"


def _key(secret: str) -> bytes:
    raw = secret.removeprefix(PREFIX)
    try:
        return base64.b64decode(raw, validate=True)
    except ValueError:
        raise ValueError("signing secret must be whsec_ followed by base64") from None


def sign(secret: str, msg_id: str, timestamp: int, body: bytes) -> str:
    mac = hmac.new(_key(secret), f"{msg_id}.{timestamp}.".encode() + body, hashlib.sha256)
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
