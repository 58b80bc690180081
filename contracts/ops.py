"""Operations records: rejected webhooks and console actions (pure data, no I/O).

Two small topics beside the log, written as JSON values (:meth:`contracts.topics.Topics.ops_specs`):

``<prefix>.ops.rejections``
    one :class:`Rejection` for each webhook the receiver answered with a 4xx (a bad token or
    signature, a malformed body, a body too large, an unknown source, …), keyed by source,
    kept a week. Records are rate-bounded per source; what the bound held back is written as
    one record with ``count`` > 1 (``sampled`` false), so counts stay whole under a flood.
    A record never holds a header, token, signature or key: ``body`` is kept only for a
    request that authenticated but did not fit its contract, cut to a size limit, with the
    credential member removed and every configured secret masked.

``<prefix>.ops.audit``
    one :class:`AuditRecord` for each console action (replay or skip of dead letters, …), keyed
    by the action's id, kept forever: who (a token's label, never the token), what, when, and
    the outcome. An action id is written once with its outcome, so an action sent twice (a
    double click, a resubmitted form) is found here and not done again.

Evolution policy (as for envelopes): new fields get defaults; never retype a field.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

import msgspec

from contracts.decoding import decode

__all__ = [
    "AuditOutcome",
    "AuditRecord",
    "Rejection",
    "decode_audit",
    "decode_rejection",
    "encode_audit",
    "encode_rejection",
]


class Rejection(msgspec.Struct, frozen=True, kw_only=True):
    """One webhook (or, with ``count`` > 1, several) the receiver turned away with a 4xx.

    Attributes:
        source: the configured source, or ``-`` when the URL named none.
        status: the HTTP status answered (400, 401, 404, 408, 413, 415).
        error: the answer's ``error`` code (``unauthorized``, ``invalid_body``, …).
        reason: what to fix: for a 401 which check failed (``no_matching_secret``,
            ``missing_header``, ``timestamp_outside_tolerance``, …), else the error code.
        at: when it was answered (for a summary: the last one it counts).
        count: how many rejections this record stands for: 1, or for a summary of those the
            per-source rate bound did not record one by one, their number.
        sampled: True for a record of one rejection; False for such a summary.
        field: for a 401, the header or body member checked (never its value).
        detail: the answer's detail (a JSON path, a limit; never a credential).
        requested: for ``unknown_source``, the name the URL gave, when it looks like one.
        body: only for a request that authenticated but did not fit its contract: its first
            bytes (see ``body_bytes``), credential removed and configured secrets masked.
        body_bytes: the whole body's size, when ``body`` is kept.
    """

    source: str
    status: int
    error: str
    reason: str
    at: datetime
    count: int = 1
    sampled: bool = True
    field: str | None = None
    detail: str | None = None
    requested: str | None = None
    body: str | None = None
    body_bytes: int | None = None


#: How a console action ended: done; failed part-way (``detail`` says what); refused before
#: anything changed (bad input, unknown group).
AuditOutcome = Literal["done", "failed", "refused"]


class AuditRecord(msgspec.Struct, frozen=True, kw_only=True):
    """One console action, written once it has ended.

    Attributes:
        action_id: the id the console gave the action when it offered it (the record key);
            the same id twice is one action.
        actor: who: the label of the API token used (``token sha256:1a2b3c4d``), or
            ``open console`` where no token is configured. Never the token.
        action: what, e.g. ``dlq.replay``, ``dlq.skip``.
        target: what it was done to (``group``, ``key``, ``topic``); names and ids only.
        at: when it ended.
        outcome: ``done``, ``failed`` or ``refused``.
        detail: one line for the operator (``replayed 3 event(s)``, the error).
    """

    action_id: str
    actor: str
    action: str
    target: dict[str, str]
    at: datetime
    outcome: AuditOutcome
    detail: str = ""


_REJECTION = msgspec.json.Decoder(Rejection)
_AUDIT = msgspec.json.Decoder(AuditRecord)
_ENCODER = msgspec.json.Encoder()


def encode_rejection(r: Rejection) -> bytes:
    return _ENCODER.encode(r)


def decode_rejection(value: bytes) -> Rejection:
    """ContractError (naming the JSON path) for a value that is not a rejection record."""
    return decode(_REJECTION, value)


def encode_audit(r: AuditRecord) -> bytes:
    return _ENCODER.encode(r)


def decode_audit(value: bytes) -> AuditRecord:
    """ContractError (naming the JSON path) for a value that is not an audit record."""
    return decode(_AUDIT, value)
