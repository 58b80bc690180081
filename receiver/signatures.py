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
import contextlib
import hashlib
import hmac
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from contracts.errors import ContractError
from contracts.params import parse_uint
from parley.credentials import decode_standard_secret

__all__ = ["AuthFailure", "AuthReason", "BodyToken", "HubSignature", "StandardWebhooks"]

AuthReason = Literal[
    "missing_token",                # natterly: no auth_token in the body
    "malformed_token",              # natterly: auth_token is not a string
    "missing_header",               # a signature header (or webhook-id/-timestamp) is absent
    "malformed_header",             # webhook-id is not UTF-8; over 8 signatures listed
    "wrong_scheme",                 # not `sha1=…` / no `v1,…` (or `v1a,…`) signature for our keys
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
    """Standard Webhooks: ``webhook-id``, ``webhook-timestamp`` and
    ``webhook-signature: <version>,<base64> [<version>,<base64> …]`` — or the same three
    under Svix's names (``svix-id``, ``svix-timestamp``, ``svix-signature``), as Svix
    delivers them; the handler picks the family (``receiver.handlers``).

    Signed content is ``f"{id}.{timestamp}.".encode() + body``. Two versions:

    - ``v1`` (symmetric): HMAC-SHA256 with the key ``base64decode(secret.removeprefix("whsec_"))``;
    - ``v1a`` (asymmetric): an Ed25519 signature, checked with a public key configured as
      ``whpk_<base64 of its 32 raw bytes>``.

    A request passes when its timestamp is within ``tolerance_s`` of now (either direction)
    and any listed signature matches any configured key of its version. A source may hold
    keys of both kinds (rotation from one to the other); the header may list at most
    :data:`MAX_SIGNATURES` signatures (one per key the sender is rotating through).
    """

    __slots__ = ("_keys", "_public_keys", "tolerance_s")
    PREFIX = "whsec_"
    PUBLIC_PREFIX = "whpk_"
    MAX_SIGNATURES = 8

    def __init__(self, secrets: Iterable[str], tolerance_s: int = 300) -> None:
        keys: list[bytes] = []
        public_keys: list[Ed25519PublicKey] = []
        for n, secret in enumerate(secrets, start=1):
            # Never echo the secret: say which position is wrong instead.
            if secret.startswith(self.PUBLIC_PREFIX):
                try:
                    raw = base64.b64decode(secret.removeprefix(self.PUBLIC_PREFIX), validate=True)
                    public_keys.append(Ed25519PublicKey.from_public_bytes(raw))
                except (binascii.Error, ValueError):
                    raise ValueError(f"secret #{n} is not whpk_<base64 of a 32-byte Ed25519 "
                                     "public key>") from None
                continue
            try:
                key = decode_standard_secret(secret)
            except ValueError as exc:
                raise ValueError(f"secret #{n} {exc}") from None
            if not key:  # `whsec_` alone: an empty HMAC key, which anyone can sign with
                raise ValueError(f"secret #{n} is empty")
            keys.append(key)
        if not keys and not public_keys:
            raise ValueError("at least one secret is required")
        self._keys = tuple(keys)
        self._public_keys = tuple(public_keys)
        self.tolerance_s = tolerance_s

    def check(self, msg_id: str | None, timestamp: str | None, signatures: str | None,
              body: bytes, now_s: float, *, family: str = "webhook-") -> AuthFailure | None:
        """None if authentic; ``family`` names the headers in the failure (``svix-``)."""
        if not msg_id:
            return AuthFailure("missing_header", family + "id")
        if not timestamp:
            return AuthFailure("missing_header", family + "timestamp")
        if not signatures:
            return AuthFailure("missing_header", family + "signature")
        try:
            skew = now_s - parse_uint(timestamp, "webhook-timestamp")
        except ContractError:
            return AuthFailure("malformed_timestamp", family + "timestamp")
        if abs(skew) > self.tolerance_s:
            return AuthFailure("timestamp_outside_tolerance", family + "timestamp",
                               skew_s=round(skew))
        listed = signatures.split()
        if len(listed) > self.MAX_SIGNATURES:
            return AuthFailure("malformed_header", family + "signature")
        symmetric: list[bytes] = []
        asymmetric: list[bytes] = []
        for token in listed:
            version, _, sig = token.partition(",")
            if version == "v1" and sig and self._keys:
                symmetric.append(sig.encode("ascii", "replace"))
            elif version == "v1a" and sig and self._public_keys:
                with contextlib.suppress(binascii.Error, ValueError):
                    asymmetric.append(base64.b64decode(sig, validate=True))
        if not symmetric and not asymmetric:
            return AuthFailure("wrong_scheme", family + "signature")
        try:
            # aiohttp hands over header bytes that are not UTF-8 as lone surrogates.
            signed = f"{msg_id}.{timestamp}.".encode() + body
        except UnicodeEncodeError:
            return AuthFailure("malformed_header", family + "id")
        expected = [base64.b64encode(hmac.new(k, signed, hashlib.sha256).digest())
                    for k in self._keys] if symmetric else []
        ok = False
        for candidate in symmetric:
            ok |= _any_equal(candidate, expected)
        # Public keys are no secret: an early exit tells an attacker nothing.
        ok = ok or any(_ed25519_valid(key, sig, signed)
                       for sig in asymmetric for key in self._public_keys)
        return None if ok else AuthFailure("no_matching_secret", family + "signature")

    @staticmethod
    def sign(secret: str, msg_id: str, timestamp: int, body: bytes) -> str:
        """The ``webhook-signature`` header a sender computes (for tests and tooling)."""
        key = decode_standard_secret(secret)
        mac = hmac.new(key, f"{msg_id}.{timestamp}.".encode() + body, hashlib.sha256).digest()
        return "v1," + base64.b64encode(mac).decode()


def _ed25519_valid(key: Ed25519PublicKey, signature: bytes, signed: bytes) -> bool:
    try:
        key.verify(signature, signed)
    except InvalidSignature:
        return False
    return True
