"""The master key: wraps (encrypts) every data key the key store holds.

A master key is 32 random bytes, written as base64 (``parley keys new-master`` prints one).
Its *id* (16 hex digits of a SHA-256 over it) is stored beside each wrapped data key, so a
process holding the current key and the previous ones (``privacy.previous_master_keys``)
unwraps keys wrapped by any of them, and ``parley keys rewrap`` moves every data key to the
current one: rotating the master key rewrites the key store, never the log.

Data keys are wrapped with AES-256-GCM, the subject bound as associated data, so a wrapped
key copied onto another subject's row does not unwrap.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
import secrets
from collections.abc import Iterable

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from parley.privacy.errors import MasterKeyError

__all__ = ["MASTER_KEY_BYTES", "MasterKey", "MasterKeys", "new_master_key", "parse_master_key"]

MASTER_KEY_BYTES = 32
_NONCE_BYTES = 12
_WRAP_AAD = b"parley-data-key\x00"


def new_master_key() -> str:
    """A fresh master key, as base64 text (what configuration and key files hold)."""
    return base64.b64encode(secrets.token_bytes(MASTER_KEY_BYTES)).decode()


def parse_master_key(text: str, what: str) -> MasterKey:
    """The master key written as ``text`` (base64, standard or URL-safe; surrounding
    whitespace ignored). Errors name ``what`` (the setting or file), never the value."""
    raw = text.strip()
    try:
        padded = raw + "=" * (-len(raw) % 4)
        key = (base64.urlsafe_b64decode(padded) if ("-" in raw or "_" in raw)
               else base64.b64decode(padded, validate=True))
    except (binascii.Error, ValueError):
        raise MasterKeyError(f"{what} is not base64 (generate one with `parley keys new-master`)"
                             ) from None
    if len(key) != MASTER_KEY_BYTES:
        raise MasterKeyError(f"{what} decodes to {len(key)} bytes, not {MASTER_KEY_BYTES} "
                             "(generate one with `parley keys new-master`)")
    return MasterKey(key)


class MasterKey:
    """One master key; ``id`` names it in the key store (never the key itself)."""

    __slots__ = ("_aead", "id")

    def __init__(self, key: bytes) -> None:
        if len(key) != MASTER_KEY_BYTES:
            raise MasterKeyError(f"a master key has {MASTER_KEY_BYTES} bytes")
        self.id = hashlib.sha256(b"parley-master-key-id\x00" + key).hexdigest()[:16]
        self._aead = AESGCM(key)

    def __repr__(self) -> str:
        return f"MasterKey(id={self.id!r})"

    def wrap(self, subject: str, data_key: bytes) -> bytes:
        nonce = os.urandom(_NONCE_BYTES)
        return nonce + self._aead.encrypt(nonce, data_key, _WRAP_AAD + subject.encode())

    def unwrap(self, subject: str, wrapped: bytes) -> bytes:
        try:
            return self._aead.decrypt(wrapped[:_NONCE_BYTES], wrapped[_NONCE_BYTES:],
                                      _WRAP_AAD + subject.encode())
        except InvalidTag:
            raise MasterKeyError(f"the data key of {subject} does not unwrap with master key "
                                 f"{self.id}: the key store was altered or mixed up") from None


class MasterKeys:
    """The current master key (wraps new keys) and the previous ones (still unwrap)."""

    def __init__(self, current: MasterKey, previous: Iterable[MasterKey] = ()) -> None:
        self.current = current
        self._by_id = {k.id: k for k in (*previous, current)}

    def __repr__(self) -> str:
        return f"MasterKeys(current={self.current.id!r}, known={sorted(self._by_id)!r})"

    def wrap(self, subject: str, data_key: bytes) -> tuple[str, bytes]:
        """``(master id, wrapped key)`` under the current master key."""
        return self.current.id, self.current.wrap(subject, data_key)

    def unwrap(self, subject: str, master_id: str, wrapped: bytes) -> bytes:
        key = self._by_id.get(master_id)
        if key is None:
            raise MasterKeyError(
                f"the data key of {subject} is wrapped by master key {master_id}, which is not "
                "configured: add it to privacy.previous_master_keys (or restore it)")
        return key.unwrap(subject, wrapped)
