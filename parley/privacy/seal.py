"""Sealing a record's personal parts with its subject's data key, and opening them again.

A sealed envelope's ``body`` holds only the body's facts (:mod:`parley.privacy.facts`) and
``sealed`` the whole stored body encrypted with AES-256-GCM under the subject's data key::

    sealed = 0x01 | generation (4 bytes, big-endian) | nonce (12 bytes) | ciphertext + tag

The associated data binds the ciphertext to its record: subject, event id and source, so a
sealed body copied into another record (or another subject's) fails to open. Opening
restores the body byte for byte; a record whose key is gone (destroyed, or of an older
generation) opens to its facts: never an error.
"""

from __future__ import annotations

import os
import struct

import msgspec
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from contracts.envelope import Envelope
from parley.privacy.datakey import DataKey
from parley.privacy.facts import facts_of
from parley.privacy.subjects import parent_in, subject_of

__all__ = ["facts_and_parent", "open_envelope", "seal_body", "seal_with_facts",
           "sealed_generation", "subject_for", "subject_in"]

_VERSION = 1
_HEAD = struct.Struct(">BI")  # version, generation
_HEADER = _HEAD.size + 12  # then the nonce


class _SubjectOnly(msgspec.Struct):
    subject: str | None = None


_SUBJECT = msgspec.json.Decoder(_SubjectOnly)


def subject_in(record_value: bytes | None) -> str | None:
    """The ``subject`` of a record value without decoding the rest (None: not sealed, or
    not an envelope at all: the fold dead-letters that itself)."""
    if not record_value:
        return None
    try:
        return _SUBJECT.decode(record_value).subject
    except (msgspec.DecodeError, ValueError, TypeError):
        return None


def subject_for(env: Envelope) -> str:
    """The subject that seals ``env`` (:func:`parley.privacy.subjects.subject_of`)."""
    return subject_of(env.provider, env.aggregate, env.key)


def _aad(subject: str, env: Envelope) -> bytes:
    return f"parley-seal-1\x00{subject}\x00{env.event_id}\x00{env.source}".encode()


def _blob(body: msgspec.Raw, key: DataKey, aead: AESGCM, aad: bytes) -> bytes:
    nonce = os.urandom(12)  # fresh for every seal: never reused under one key
    # The body's buffer is encrypted where it lies (no copy of it first).
    return b"".join((_HEAD.pack(_VERSION, key.generation), nonce,
                     aead.encrypt(nonce, body, aad)))


def seal_body(env: Envelope, key: DataKey, aead: AESGCM) -> bytes:
    """``env``'s whole body sealed under ``key``: the ``sealed`` blob (module docstring)."""
    return _blob(env.body, key, aead, _aad(key.subject, env))


def facts_and_parent(env: Envelope) -> tuple[bytes, str | None]:
    """``env``'s facts (what stays readable) and the visitor subject its body names: known
    before its key is, so a chat's first key and its link can be written together."""
    facts = facts_of(env.provider, env.body)
    # The facts keep every id the link is made of, and are a third of the body's size.
    return facts, parent_in(env.provider, env.aggregate, facts)


def seal_with_facts(env: Envelope, key: DataKey, aead: AESGCM, facts: bytes) -> Envelope:
    """``env`` with its body reduced to ``facts`` (:func:`facts_and_parent`) and the whole
    body sealed under ``key``."""
    return msgspec.structs.replace(env, body=msgspec.Raw(facts), subject=key.subject,
                                   sealed=seal_body(env, key, aead))


def sealed_generation(env: Envelope) -> int | None:
    """The key generation that sealed ``env``; None if it is not sealed (or not by us)."""
    blob = env.sealed
    if isinstance(blob, msgspec.UnsetType) or len(blob) < _HEADER or blob[0] != _VERSION:
        return None
    return int.from_bytes(blob[1:5], "big")


def open_envelope(env: Envelope, key: DataKey | None, aead: AESGCM | None) -> Envelope:
    """``env`` with its whole body back when ``key`` opens it, else with its facts only
    (``sealed`` unset either way). ``key``: the subject's live key, or None if it has none."""
    blob = env.sealed
    if isinstance(blob, msgspec.UnsetType):
        return env
    subject = env.subject
    if (key is not None and aead is not None and isinstance(subject, str)
            and len(blob) >= _HEADER and _HEAD.unpack_from(blob) == (_VERSION, key.generation)):
        try:
            body = aead.decrypt(blob[5:_HEADER], blob[_HEADER:], _aad(subject, env))
        except InvalidTag:
            pass  # tampered, or sealed under another key: the facts are what is left
        else:
            return msgspec.structs.replace(env, body=msgspec.Raw(body), sealed=msgspec.UNSET)
    return msgspec.structs.replace(env, sealed=msgspec.UNSET)
