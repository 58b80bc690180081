"""Pure verifiers for the authentication schemes of webhook providers. No I/O, no logging.

Each verifier is built once per configured source (keys decoded up front). ``check`` answers
None for an authentic request, else an :class:`AuthFailure` saying which check failed: the
receiver logs it for the operator and answers the sender with one generic 401, so the sender
learns nothing from it. A failure never holds a presented value or a secret. Every
comparison is constant-time (:func:`hmac.compare_digest`) and runs against every configured
credential, so the answer's timing says nothing about which credential, or how much of one,
matched. Several credentials exist for rotation.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

from contracts.errors import ContractError
from contracts.params import parse_uint

__all__ = ["AuthFailure", "AuthReason", "BodyToken", "HubSignature", "StandardWebhooks"]

AuthReason = Literal[
    "missing_token",                # natterly: no auth_token in the body
    "malformed_token",              # natterly: auth_token is not a string
    "missing_header",               # a signature header (or webhook-id/-timestamp) is absent
    "malformed_header",             # webhook-id is not UTF-8 text
    "wrong_scheme",                 # not `sha1=…` / no `v1,…` signature in the header
    "malformed_timestamp",          # webhook-timestamp is not whole seconds (19 digits at most)
    "timestamp_outside_tolerance",  # webhook-timestamp too far from now (replay or skewed clock)
    "no_matching_secret",           # well-formed, but matches no configured token or secret
]


@dataclass(frozen=True, slots=True)
class AuthFailure:
    """Which check failed, and where: for the operator's log line, never for the sender."""

    reason: AuthReason
    #: The header or body member checked (``X-Hub-Signature``, ``webhook-timestamp``,
    #: ``auth_token``): a name, never its value.
    field: str
    #: ``timestamp_outside_tolerance`` only: how far the timestamp is from now (+: in the past).
    skew_s: int | None = None


def _any_equal(presented: bytes, expected: Iterable[bytes]) -> bool:
    ok = False
    for candidate in expected:
        # No early exit: every candidate is compared, whatever the first one said.
        ok |= hmac.compare_digest(presented, candidate)
    return ok


class BodyToken:
    """Natterly: the account's ``auth_token`` travels inside the JSON body (a bearer secret)."""

    __slots__ = ("_tokens",)
    FIELD = "auth_token"

    def __init__(self, tokens: Iterable[str]) -> None:
        self._tokens = tuple(t.encode() for t in tokens if t)
        if not self._tokens:
            raise ValueError("at least one auth token is required")

    def check(self, presented: str | None) -> AuthFailure | None:
        if not presented:
            return AuthFailure("missing_token", self.FIELD)
        if not _any_equal(presented.encode(), self._tokens):
            return AuthFailure("no_matching_secret", self.FIELD)
        return None


class HubSignature:
    """ChatShipper: ``X-Hub-Signature: sha1=<hex HMAC-SHA1(secret, raw body)>``.

    The secret is used as-is as the HMAC key (the official SDK does not base64-decode it).
    """

    __slots__ = ("_keys",)
    HEADER = "X-Hub-Signature"
    PREFIX = "sha1="

    def __init__(self, secrets: Iterable[str]) -> None:
        self._keys = tuple(s.encode() for s in secrets if s)
        if not self._keys:
            raise ValueError("at least one secret is required")

    def check(self, header: str | None, body: bytes) -> AuthFailure | None:
        if not header:
            return AuthFailure("missing_header", self.HEADER)
        if not header.startswith(self.PREFIX):
            return AuthFailure("wrong_scheme", self.HEADER)
        # Hex digits compare case-insensitively; anything non-ASCII can never match.
        presented = header[len(self.PREFIX):].strip().lower().encode("ascii", "replace")
        if not _any_equal(presented, (hmac.new(k, body, hashlib.sha1).hexdigest().encode()
                                      for k in self._keys)):
            return AuthFailure("no_matching_secret", self.HEADER)
        return None


class StandardWebhooks:
    """Standard Webhooks v1 (symmetric): ``webhook-id``, ``webhook-timestamp``,
    ``webhook-signature: v1,<base64> [v1,<base64> …]``.

    Signed content is ``f"{id}.{timestamp}.".encode() + body``, HMAC-SHA256 with the key
    ``base64decode(secret.removeprefix("whsec_"))``. A request passes when its timestamp is
    within ``tolerance_s`` of now (either direction) and any listed ``v1`` signature matches
    any configured secret. Asymmetric ``v1a`` signatures are not supported (ignored).
    """

    __slots__ = ("_keys", "tolerance_s")
    PREFIX = "whsec_"

    def __init__(self, secrets: Iterable[str], tolerance_s: int = 300) -> None:
        keys = []
        for secret in secrets:
            try:
                keys.append(base64.b64decode(secret.removeprefix(self.PREFIX), validate=True))
            except (binascii.Error, ValueError):
                # Never echo the secret: say which position is wrong instead.
                raise ValueError(f"secret #{len(keys) + 1} is not whsec_<base64>") from None
        if not keys:
            raise ValueError("at least one secret is required")
        self._keys = tuple(keys)
        self.tolerance_s = tolerance_s

    def check(self, msg_id: str | None, timestamp: str | None, signatures: str | None,
              body: bytes, now_s: float) -> AuthFailure | None:
        if not msg_id:
            return AuthFailure("missing_header", "webhook-id")
        if not timestamp:
            return AuthFailure("missing_header", "webhook-timestamp")
        if not signatures:
            return AuthFailure("missing_header", "webhook-signature")
        try:
            skew = now_s - parse_uint(timestamp, "webhook-timestamp")
        except ContractError:
            return AuthFailure("malformed_timestamp", "webhook-timestamp")
        if abs(skew) > self.tolerance_s:
            return AuthFailure("timestamp_outside_tolerance", "webhook-timestamp",
                               skew_s=round(skew))
        presented: list[bytes] = []
        for token in signatures.split():
            version, _, sig = token.partition(",")
            if version == "v1" and sig:
                presented.append(sig.encode("ascii", "replace"))
        if not presented:
            return AuthFailure("wrong_scheme", "webhook-signature")
        try:
            # aiohttp hands over header bytes that are not UTF-8 as lone surrogates.
            signed = f"{msg_id}.{timestamp}.".encode() + body
        except UnicodeEncodeError:
            return AuthFailure("malformed_header", "webhook-id")
        expected = [base64.b64encode(hmac.new(k, signed, hashlib.sha256).digest())
                    for k in self._keys]
        ok = False
        for candidate in presented:
            ok |= _any_equal(candidate, expected)
        return None if ok else AuthFailure("no_matching_secret", "webhook-signature")

    @staticmethod
    def sign(secret: str, msg_id: str, timestamp: int, body: bytes) -> str:
        """The ``webhook-signature`` header a sender computes (for tests and tooling)."""
        key = base64.b64decode(secret.removeprefix(StandardWebhooks.PREFIX))
        mac = hmac.new(key, f"{msg_id}.{timestamp}.".encode() + body, hashlib.sha256).digest()
        return "v1," + base64.b64encode(mac).decode()
