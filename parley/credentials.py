"""Minimum strength of the secrets Parley is configured with, checked once at start-up.

A webhook source or the read API is only as safe as its weakest credential: an empty HMAC
key (``whsec_`` alone) or a placeholder copied from an example file (``change-me``) verifies
requests that anyone can forge. The rules (docs/security.md, "Minimum secret strengths"):

- bearer tokens (``http.api_tokens``, a Natterly source's ``auth_tokens``) and ChatShipper
  HMAC ``secrets``: at least :data:`MIN_SECRET_CHARS` characters, no whitespace;
- Standard Webhooks ``secrets``: ``whsec_`` (optional) and the base64 of
  :data:`STANDARD_KEY_BYTES` bytes, the range the Standard Webhooks specification requires;
- every one of them: not a placeholder (no word of :data:`PLACEHOLDER_WORDS`, at least
  :data:`MIN_DISTINCT_CHARS` different characters).

Problems are phrased without the value, so they can be shown and logged.
"""

from __future__ import annotations

import base64
import binascii

__all__ = [
    "MIN_DISTINCT_CHARS",
    "MIN_SECRET_CHARS",
    "PLACEHOLDER_WORDS",
    "PUBLIC_PREFIX",
    "STANDARD_KEY_BYTES",
    "STANDARD_PREFIX",
    "decode_standard_secret",
    "outbound_credential_problem",
    "secret_problem",
    "standard_secret_problem",
]

#: The shortest bearer token or HMAC secret accepted (characters).
MIN_SECRET_CHARS = 16
#: The fewest different characters a secret may have: ``aaaaaaaaaaaaaaaa`` is no secret. A
#: random 16-character hex token falls below it about once in 70,000 draws.
MIN_DISTINCT_CHARS = 6
#: Decoded Standard Webhooks key sizes, inclusive (192 to 512 bits, as the specification says).
STANDARD_KEY_BYTES = (24, 64)
STANDARD_PREFIX = "whsec_"
PUBLIC_PREFIX = "whpk_"  # an Ed25519 public key, for v1a signatures
#: Words of example files and templates (lower case): a value containing one was never
#: generated for real. ``deploy/k8s/secrets.example.yaml`` uses "replace-with-…".
PLACEHOLDER_WORDS = ("change-me", "changeme", "change_me", "replace-with", "replace_with",
                     "replace-me", "replaceme", "placeholder", "example", "dummy", "<", ">", "…")
_GENERATE = "generate one with `openssl rand -hex 32`"


def _placeholder_problem(value: str) -> str | None:
    lowered = value.lower()
    if any(word in lowered for word in PLACEHOLDER_WORDS):
        return f"looks like a placeholder from an example file; {_GENERATE}"
    if len(set(value)) < MIN_DISTINCT_CHARS:
        return f"has fewer than {MIN_DISTINCT_CHARS} different characters; {_GENERATE}"
    return None


def secret_problem(value: str) -> str | None:
    """Why a bearer token or HMAC secret is too weak to use (one phrase), or None."""
    if len(value) < MIN_SECRET_CHARS:
        return f"is shorter than {MIN_SECRET_CHARS} characters; {_GENERATE}"
    if any(c.isspace() for c in value):
        return "contains whitespace"
    return _placeholder_problem(value)


def outbound_credential_problem(value: str) -> str | None:
    """Why a credential Parley *sends* (a CRM's ``auth_value``, e.g. ``Bearer <key>``) is
    unusable, or None. Its format is the other system's, so only what is never a real
    credential is refused: an empty value (which silently sends no authentication) and a
    placeholder copied from an example file."""
    if not value.strip():
        return "is empty; set it, or leave it out for a system without authentication"
    return _placeholder_problem(value)


def decode_standard_secret(secret: str) -> bytes:
    """The HMAC key of a Standard Webhooks secret: base64-decode of the part after
    ``whsec_``. Raises ValueError (without the value) if that part is not base64."""
    try:
        return base64.b64decode(secret.removeprefix(STANDARD_PREFIX), validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("is not whsec_<base64>") from None


def standard_secret_problem(secret: str) -> str | None:
    """Why a Standard Webhooks secret (``whsec_``) or public key (``whpk_``, Ed25519 for
    ``v1a`` signatures) cannot be used (one phrase), or None."""
    if secret.startswith(PUBLIC_PREFIX):
        try:
            raw = base64.b64decode(secret.removeprefix(PUBLIC_PREFIX), validate=True)
        except (binascii.Error, ValueError):
            raw = b""
        # A public key is no secret: only its shape matters (the verifier parses it).
        return None if len(raw) == 32 else "is not whpk_<base64 of a 32-byte Ed25519 public key>"
    try:
        key = decode_standard_secret(secret)
    except ValueError as exc:
        return str(exc)
    low, high = STANDARD_KEY_BYTES
    if not low <= len(key) <= high:
        return (f"decodes to {len(key)} bytes, not {low} to {high} (generate one with "
                f"`echo whsec_$(openssl rand -base64 32)`)")
    return _placeholder_problem(secret.removeprefix(STANDARD_PREFIX))
