"""The canonical envelope: what Parley appends to Kafka for every accepted webhook.

Record value = ``encode_envelope(env)``; record key = ``env.key.encode()``
(:attr:`Envelope.record_key`); topic = ``Topics.for_aggregate(env.aggregate)``.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

import msgspec
from msgspec import Meta

from contracts.decoding import check_utf8, decode
from contracts.errors import ContractError
from contracts.topics import EventTopicKind
from contracts.upcast import SCHEMA_VERSION, upcast

__all__ = ["SCHEMA_VERSION", "Envelope", "decode_envelope", "encode_envelope"]

UtcDatetime = Annotated[datetime, Meta(tz=True)]
NonEmptyStr = Annotated[str, Meta(min_length=1)]


class Envelope(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    """One accepted webhook, as stored in the log.

    Attributes:
        schema_version: envelope schema version (see ``contracts.upcast``);
            first, so a reader can tell versions apart cheaply.
        event_id: stable id: ChatShipper's ``id``, the Standard Webhooks
            ``webhook-id``, or for Natterly an id derived from the body minus its
            token (so a re-delivery gets the same id). Idempotency key downstream.
        provider: ``"natterly"``, ``"chatshipper"`` or ``"standard"``.
        source: the configured source name (the URL path segment).
        event_type: the provider's event name as sent (``"ChatInitiated"``,
            ``"message.create.contact.chat"``); unknown names are kept too.
        aggregate: what the event is about; picks the topic.
        key: the aggregate's id (chat, visitor or agent id; for ``"other"`` a
            stable key such as the event id); the Kafka record key.
        occurred_at: when it happened per the body (UTC); ``received_at`` when
            the body does not say.
        received_at: when the receiver accepted it (UTC).
        body: the provider's JSON body exactly as received, minus secrets
            (Natterly's ``auth_token``) and minus whitespace around the
            top-level value; never re-encoded. When ``sealed`` is set, only the body's
            non-personal facts (docs/privacy.md); opening the record restores the whole body.
        subject: the data subject whose key sealed the body (``natterly:chat:C1``); unset
            for a record written without encryption.
        sealed: the whole body as above, encrypted with the subject's data key (AES-256-GCM;
            base64 in the JSON); unset once opened, or when written without encryption.
    """

    schema_version: int = SCHEMA_VERSION
    event_id: NonEmptyStr
    provider: str
    source: str
    event_type: str
    aggregate: EventTopicKind
    key: NonEmptyStr
    occurred_at: UtcDatetime
    received_at: UtcDatetime
    body: msgspec.Raw
    # New in issue 20; UNSET is never written, so records without encryption are unchanged.
    subject: str | msgspec.UnsetType = msgspec.UNSET
    sealed: bytes | msgspec.UnsetType = msgspec.UNSET

    @property
    def record_key(self) -> bytes:
        """The Kafka record key: ``key`` in UTF-8."""
        return self.key.encode()


class _Version(msgspec.Struct):
    schema_version: int = SCHEMA_VERSION


_ENCODER = msgspec.json.Encoder()
_DECODER = msgspec.json.Decoder(Envelope)
_VERSION = msgspec.json.Decoder(_Version)
_MEMBERS = msgspec.json.Decoder(dict[str, msgspec.Raw])


def encode_envelope(env: Envelope) -> bytes:
    """The Kafka record value for ``env``; ``body`` is written verbatim."""
    return _ENCODER.encode(env)


def decode_envelope(data: bytes) -> Envelope:
    """Decode a record value written by any schema version up to the current one.

    Older versions are lifted by ``contracts.upcast``. Raises ContractError for
    malformed records and for versions newer than this code.
    """
    check_utf8(data)
    try:
        env = decode(_DECODER, data)
    except ContractError as exc:
        # An older version may fail to decode as the current one; anything else
        # is simply bad input and the original error says where.
        version = _version_of(data)
        if version is None or version >= SCHEMA_VERSION:
            raise exc from None
        return _decode_old(data, version)
    if env.schema_version == SCHEMA_VERSION:
        return env
    return _decode_old(data, env.schema_version)


def _version_of(data: bytes) -> int | None:
    try:
        return decode(_VERSION, data).schema_version
    except ContractError:
        return None


def _decode_old(data: bytes, version: int) -> Envelope:
    members = upcast(decode(_MEMBERS, data), version)
    env = decode(_DECODER, _ENCODER.encode(members))
    if env.schema_version != SCHEMA_VERSION:  # pragma: no cover - upcast sets it
        raise ContractError("upcasting did not reach the current schema version")
    return env
