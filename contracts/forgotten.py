"""Erasure on an immutable log: the ``forgotten`` record and the erasure ledger's entries.

Data only, no I/O (docs/privacy.md, "Forget a visitor").

A forget is published as one **forgotten record** per aggregate of the data subject (the
visitor, its provisional session visitors, each of its chats) on that aggregate's own event
topic, keyed by its id: so it sits in per-key order with the aggregate's events, reaches the
projector (which redacts the aggregate in the same place of the log on every replay) and
every consumer group that reads the topic. The record is an ordinary
:class:`~contracts.envelope.Envelope` (provider ``parley``, event type
:data:`FORGOTTEN_TYPE`, no domain events), so a consumer that does not know about erasure
keeps working; :func:`forgotten_of` reads it.

Every record that announces an erasure — the forgotten record, and the projector's state
change of a redacted chat or visitor — carries the header :data:`ERASURE_HEADER` (the
erasure id), so the consumer runtime can record in the ledger, without decoding any value,
that its group processed it.

The **ledger** is the topic ``<prefix>.erasures`` (:meth:`contracts.topics.Topics.erasures`):
a :class:`ErasureRequest` per forget (keyed by the erasure id) and an
:class:`ErasureProcessed` per group, copy and aggregate that processed one. It holds ids and
times only, never personal data.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Literal

import msgspec

from contracts.envelope import Envelope, encode_envelope

__all__ = [
    "ERASURE_HEADER",
    "FORGOTTEN_TYPE",
    "PARLEY_PROVIDER",
    "ErasureProcessed",
    "ErasureRequest",
    "Forgotten",
    "LedgerEntry",
    "decode_ledger_entry",
    "encode_ledger_entry",
    "erasure_header_of",
    "erasure_in_state",
    "forgotten_envelope",
    "forgotten_of",
    "forgotten_record",
]

#: The envelope ``provider`` of records Parley writes itself.
PARLEY_PROVIDER = "parley"
#: The envelope ``event_type`` of a forgotten record.
FORGOTTEN_TYPE = "parley.forgotten"
#: Record header naming the erasure a record announces (its value: the erasure id, UTF-8).
ERASURE_HEADER = "parley-erasure"

ForgottenKind = Literal["chat", "visitor"]


class Forgotten(msgspec.Struct, frozen=True, kw_only=True):
    """The body of a forgotten record: aggregate ``kind``/``id`` of ``source`` belongs to the
    data subject ``subject`` (``"<source>:<kind>:<id>"``, docs/privacy.md) and must lose its
    personal fields. ``messages``: a chat's message ids known when the forget was asked
    (their texts go too)."""

    erasure_id: str
    subject: str
    kind: ForgottenKind
    id: str
    source: str
    requested_at: datetime
    messages: tuple[str, ...] = ()


class ErasureRequest(msgspec.Struct, frozen=True, kw_only=True, tag="request"):
    """A forget as asked: the subject, every aggregate it covers (``"kind:id"``), whether the
    subject's keys were destroyed, and when."""

    erasure_id: str
    subject: str
    visitor: str
    aggregates: tuple[str, ...]
    keys_destroyed: int
    requested_at: datetime


class ErasureProcessed(msgspec.Struct, frozen=True, kw_only=True, tag="processed"):
    """Group ``group`` (``projector`` with ``copy`` its projection copy, or a consumer's name)
    processed the erasure of one aggregate (``"kind:id"``) at ``at``."""

    erasure_id: str
    group: str
    aggregate: str
    at: datetime
    copy: str | None = None


LedgerEntry = ErasureRequest | ErasureProcessed

_LEDGER = msgspec.json.Decoder(LedgerEntry)
_FORGOTTEN = msgspec.json.Decoder(Forgotten)
_json = msgspec.json.encode


def encode_ledger_entry(entry: LedgerEntry) -> bytes:
    """The JSON of a ledger record's value."""
    return _json(entry)


def decode_ledger_entry(data: bytes) -> LedgerEntry | None:
    """A ledger record's entry; None for a value this version cannot read."""
    try:
        return _LEDGER.decode(data)
    except (msgspec.DecodeError, msgspec.ValidationError):
        return None


def forgotten_envelope(forgotten: Forgotten) -> Envelope:
    """The envelope of ``forgotten``'s record (topic: its ``kind``'s event topic, key: its id).

    Its ``event_id`` is derived from the erasure and the aggregate, so publishing a forget
    again (after a failure) repeats the same events."""
    return Envelope(
        event_id=f"forgotten-{forgotten.erasure_id}-{forgotten.kind}-{forgotten.id}",
        provider=PARLEY_PROVIDER, source=forgotten.source, event_type=FORGOTTEN_TYPE,
        aggregate=forgotten.kind, key=forgotten.id, occurred_at=forgotten.requested_at,
        received_at=forgotten.requested_at, body=msgspec.Raw(_json(forgotten)))


def forgotten_record(forgotten: Forgotten) -> tuple[bytes, bytes, list[tuple[str, bytes]]]:
    """(key, value, headers) of ``forgotten``'s Kafka record."""
    env = forgotten_envelope(forgotten)
    return (env.record_key, encode_envelope(env),
            [(ERASURE_HEADER, forgotten.erasure_id.encode())])


def forgotten_of(env: Envelope) -> Forgotten | None:
    """The :class:`Forgotten` an envelope carries; None if it is not a forgotten record (or
    one this version cannot read)."""
    if env.provider != PARLEY_PROVIDER or env.event_type != FORGOTTEN_TYPE:
        return None
    try:
        return _FORGOTTEN.decode(env.body)
    except (msgspec.DecodeError, msgspec.ValidationError):
        return None


def erasure_header_of(headers: Sequence[tuple[str, bytes]] | None) -> str | None:
    """The erasure id a record's headers name (:data:`ERASURE_HEADER`), or None."""
    if not headers:
        return None
    for name, value in headers:
        if name == ERASURE_HEADER:
            return value.decode(errors="replace")
    return None


_MARK = b',"erasure":{"id":"'


def erasure_in_state(value: bytes) -> str | None:
    """The erasure id of an erased state's JSON (a view, or a state change carrying one), or
    None; without decoding it. Sound because every string inside is JSON-escaped, so the
    member's opening (with its unescaped quotes) can only be the member itself, and erasure
    ids are Parley's own (no characters that need escaping)."""
    at = value.rfind(_MARK)
    if at < 0:
        return None
    start = at + len(_MARK)
    end = value.find(b'"', start)
    return None if end < 0 else value[start:end].decode()
