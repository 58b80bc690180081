"""The receiver's hot path: a webhook body in, an :class:`Envelope` out.

Only what the envelope needs is decoded (event name, time, the aggregate's id),
with small Structs that declare just those fields; the rest of the body is
validated as JSON and UTF-8 but carried as bytes. Full typed decoding is the
normaliser's job (``contracts.normalise``), off the hot path.

Duplicate keys: like every common JSON parser, msgspec keeps the last value of
a repeated key, and so does Parley everywhere. Every top-level ``auth_token``
member is stripped.
"""

from __future__ import annotations

import hashlib
from datetime import datetime
from typing import Annotated, Final

import msgspec
from msgspec import Meta

from contracts.chatshipper import parse_resource_url
from contracts.decoding import check_utf8, decode
from contracts.envelope import Envelope
from contracts.errors import ContractError
from contracts.member_cut import cut_member, cut_trailing_string
from contracts.natterly import NATTERLY_EVENTS
from contracts.natterly_ids import chat_id_of, visitor_id_of
from contracts.timestamps import UnixSeconds, as_utc, from_unix, from_unix_or_none
from contracts.topics import EventTopicKind

__all__ = [
    "NATTERLY_EVENT_ID_PREFIX",
    "PROVIDERS",
    "derive_event_id",
    "natterly_auth_token",
    "parse_webhook",
]

#: Provider names a source may be configured with.
PROVIDERS: Final = ("natterly", "chatshipper", "standard")

#: Prefix of event ids Parley derives from a body (Natterly sends none).
NATTERLY_EVENT_ID_PREFIX: Final = "natterly-"

_JSON_WHITESPACE: Final = (b" ", b"\t", b"\n", b"\r")
_AUTH_TOKEN: Final = "auth_token"  # noqa: S105 - the member's name, not a secret
_NATTERLY_CHAT_EVENTS = frozenset(name for name in NATTERLY_EVENTS if name.startswith("Chat"))
_NATTERLY_VISITOR_EVENTS = frozenset(("VisitorCreated", "SessionRegistration"))

NonEmptyStr = Annotated[str, Meta(min_length=1)]
Aggregate = tuple[EventTopicKind, str]


# --- Natterly: only the ids the key needs -------------------------------------
# (gc=False on every Struct here: decoded trees hold no cycles; see contracts.natterly)


class _Uuid(msgspec.Struct, frozen=True, gc=False):
    uuid: str | None = None


class _NSession(msgspec.Struct, frozen=True, gc=False):
    uuid: str | None = None
    visitor: _Uuid | None = None


class _NChat(msgspec.Struct, frozen=True, gc=False):
    uuid: str | None = None
    visitor: _Uuid | None = None
    session: _NSession | None = None
    session_id: str | None = None


class _NMessage(msgspec.Struct, frozen=True, gc=False):
    chat: str | None = None


class _NPayload(msgspec.Struct, frozen=True, gc=False):
    chat: _NChat | None = None
    messages: list[_NMessage] | None = None
    visitor: _Uuid | None = None
    session: _NSession | None = None
    session_id: str | None = None
    user: _Uuid | None = None


class _NWebhook(msgspec.Struct, frozen=True, gc=False):
    event: NonEmptyStr
    timestamp: UnixSeconds | None = None
    payload: _NPayload | None = None
    # Kept raw: its exact bytes locate the member to cut (empty = absent).
    auth_token: msgspec.Raw = msgspec.Raw()


class _NToken(msgspec.Struct, frozen=True, gc=False):
    auth_token: str | None = None


_N_WEBHOOK = msgspec.json.Decoder(_NWebhook)
_N_TOKEN_ONLY = msgspec.json.Decoder(_NToken)
_N_TOKEN: msgspec.json.Decoder[str | None] = msgspec.json.Decoder(str | None)


def natterly_auth_token(body: bytes) -> str | None:
    """The top-level ``auth_token`` of a Natterly body, or None if absent/null.

    Decodes nothing else (the body must still be one JSON object). Compare the
    result with the configured tokens in constant time; never log it.
    """
    return decode(_N_TOKEN_ONLY, body).auth_token


def derive_event_id(stored_body: bytes) -> str:
    """A stable event id for a body that carries none: ``natterly-<uuid>``.

    The UUID is the first 128 bits of SHA-256 over the body as stored (token
    already stripped, so a re-delivery under any token gets the same id), with
    the RFC 9562 version-8 ("custom") and variant bits set.
    """
    digest = hashlib.sha256(stored_body).hexdigest()
    variant = "89ab"[int(digest[16], 16) & 0x3]
    return (
        f"{NATTERLY_EVENT_ID_PREFIX}{digest[:8]}-{digest[8:12]}-8{digest[13:16]}"
        f"-{variant}{digest[17:20]}-{digest[20:32]}"
    )


def _decode_stored(body: bytes) -> tuple[_NWebhook, bytes]:
    """The receiver's view of a Natterly body, and the body minus its token."""
    # Common case: the token is the last member, a plain string (as in Natterly's example).
    # Cut it by text, then decode what is left: one pass validates the body and proves no
    # other auth_token member is left (see member_cut.cut_trailing_string).
    stored = cut_trailing_string(body, _AUTH_TOKEN)
    if stored is not None:
        try:
            webhook = _N_WEBHOOK.decode(stored)
        except (msgspec.MsgspecError, ValueError, RecursionError, OverflowError):
            pass  # decoded again below, as received, for the error and its path
        else:
            if not webhook.auth_token:
                return webhook, stored
    webhook = decode(_N_WEBHOOK, body)
    if not webhook.auth_token:
        return webhook, body
    decode(_N_TOKEN, webhook.auth_token, "$.auth_token")  # a token of the wrong type is bad input
    return webhook, cut_member(body, _AUTH_TOKEN, webhook.auth_token)


def _parse_natterly(source: str, body: bytes, received_at: datetime) -> Envelope:
    webhook, stored = _decode_stored(body)
    event_id = derive_event_id(stored)
    aggregate, key = _natterly_aggregate(webhook.event, webhook.payload, event_id)
    return Envelope(
        event_id=event_id,
        provider="natterly",
        source=source,
        event_type=webhook.event,
        aggregate=aggregate,
        key=key,
        occurred_at=from_unix_or_none(webhook.timestamp) or received_at,
        received_at=received_at,
        body=msgspec.Raw(stored),
    )


def _natterly_aggregate(event: str, payload: _NPayload | None, event_id: str) -> Aggregate:
    if payload is None:
        return ("other", event_id)
    chat = payload.chat
    is_chat = event in _NATTERLY_CHAT_EVENTS
    is_visitor = event in _NATTERLY_VISITOR_EVENTS
    is_agent = event == "UserStatusChanged"
    unknown = not (is_chat or is_visitor or is_agent)
    if is_chat or unknown:
        chat_id = chat_id_of(chat, payload.messages)
        if chat_id:
            return ("chat", chat_id)
    if is_visitor or unknown:
        visitor_id = visitor_id_of(
            visitor=payload.visitor,
            session=payload.session,
            session_id=payload.session_id,
            chat=chat,
        )
        if visitor_id:
            return ("visitor", visitor_id)
    if (is_agent or unknown) and payload.user is not None and payload.user.uuid:
        return ("agent", payload.user.uuid)
    return ("other", event_id)


# --- ChatShipper: id, event, time and the resource ids -------------------------


class _Ref(msgspec.Struct, frozen=True, gc=False):
    id: str | None = None


class _CMessage(msgspec.Struct, frozen=True, gc=False):
    conversation: str | _Ref | None = None


class _CData(msgspec.Struct, frozen=True, gc=False):
    conversation: _Ref | None = None
    message: _CMessage | None = None
    contact: _Ref | None = None
    user: _Ref | None = None


class _CActivity(msgspec.Struct, frozen=True, gc=False):
    target: _Ref | None = msgspec.field(default=None, name="object")
    published: datetime | None = None


class _CWebhook(msgspec.Struct, frozen=True, gc=False):
    id: NonEmptyStr
    event: NonEmptyStr
    timestamp: datetime | None = None
    activity: _CActivity | None = None
    data: _CData | None = None


_C_WEBHOOK = msgspec.json.Decoder(_CWebhook)


def _parse_chatshipper(source: str, body: bytes, received_at: datetime) -> Envelope:
    webhook = decode(_C_WEBHOOK, body)
    if webhook.timestamp is not None:
        occurred_at = as_utc(webhook.timestamp)
    elif webhook.activity is not None and webhook.activity.published is not None:
        occurred_at = as_utc(webhook.activity.published)
    else:
        occurred_at = received_at
    aggregate, key = _chatshipper_aggregate(webhook)
    return Envelope(
        event_id=webhook.id,
        provider="chatshipper",
        source=source,
        event_type=webhook.event,
        aggregate=aggregate,
        key=key,
        occurred_at=occurred_at,
        received_at=received_at,
        body=msgspec.Raw(body),
    )


def _chatshipper_aggregate(webhook: _CWebhook) -> Aggregate:
    data = webhook.data or _CData()
    resource = webhook.event.split(".", 1)[0]

    conversation_id = data.conversation.id if data.conversation is not None else None
    if not conversation_id and data.message is not None:
        conv = data.message.conversation
        conversation_id = conv if isinstance(conv, str) else (conv.id if conv else None)
    contact_id = data.contact.id if data.contact is not None else None
    user_id = data.user.id if data.user is not None else None

    if resource in ("message", "conversation"):
        conversation_id = conversation_id or _activity_ref(webhook, "conversations")
        if conversation_id:
            return ("chat", conversation_id)
    elif resource == "contact":
        contact_id = contact_id or _activity_ref(webhook, "contacts")
        if contact_id:
            return ("visitor", contact_id)
    elif resource == "user":
        user_id = user_id or _activity_ref(webhook, "users")
        if user_id:
            return ("agent", user_id)
    elif conversation_id:
        return ("chat", conversation_id)
    elif contact_id:
        return ("visitor", contact_id)
    return ("other", webhook.id)


def _activity_ref(webhook: _CWebhook, collection: str) -> str | None:
    """The id in ``activity.object`` when it is an API URL of ``collection``."""
    target = webhook.activity.target if webhook.activity is not None else None
    ref = parse_resource_url(target.id) if target is not None else None
    return ref.id if ref is not None and ref.collection == collection else None


# --- Standard Webhooks: id from the header, everything else optional ------------


class _SData(msgspec.Struct, frozen=True, gc=False):
    chat_id: str | int | None = None
    conversation_id: str | int | None = None


class _SWebhook(msgspec.Struct, frozen=True, gc=False):
    type: str | None = None
    timestamp: datetime | UnixSeconds | None = None
    data: _SData | None = None


_S_WEBHOOK = msgspec.json.Decoder(_SWebhook)


def _parse_standard(source: str, body: bytes, received_at: datetime, webhook_id: str | None) -> Envelope:
    if not webhook_id:
        raise ContractError("the standard provider needs the webhook-id header as event id")
    webhook = decode(_S_WEBHOOK, body)
    if isinstance(webhook.timestamp, datetime):
        occurred_at = as_utc(webhook.timestamp)
    elif webhook.timestamp is not None:
        occurred_at = from_unix(webhook.timestamp)
    else:
        occurred_at = received_at
    aggregate: EventTopicKind = "other"
    key = webhook_id
    if webhook.data is not None:
        chat_id = webhook.data.chat_id
        if chat_id is None or chat_id == "":
            chat_id = webhook.data.conversation_id
        if chat_id is not None and chat_id != "":
            aggregate, key = "chat", str(chat_id)
    return Envelope(
        event_id=webhook_id,
        provider="standard",
        source=source,
        event_type=webhook.type or "unknown",
        aggregate=aggregate,
        key=key,
        occurred_at=occurred_at,
        received_at=received_at,
        body=msgspec.Raw(body),
    )


def parse_webhook(
    provider: str,
    source: str,
    body: bytes,
    *,
    received_at: datetime,
    webhook_id: str | None = None,
) -> Envelope:
    """Validate a webhook body and wrap it in the envelope Parley stores.

    Args:
        provider: the source's configured provider, one of :data:`PROVIDERS`.
        source: the configured source name, recorded in the envelope.
        body: the raw request body.
        received_at: when the request arrived; naive means UTC.
        webhook_id: the ``webhook-id`` header; required for ``"standard"``.

    Returns the envelope: event id, aggregate and key, times, and the body as
    received, byte for byte, except that Natterly's ``auth_token`` member is cut
    out and whitespace around the top-level JSON value is dropped.

    Raises:
        ContractError: the body is not valid UTF-8 JSON of the provider's outer
            shape (wrong types or missing required keys among the few fields
            read here), or the provider is unknown. Unknown event names are
            accepted.
    """
    received = as_utc(received_at)
    check_utf8(body)
    if body[:1] in _JSON_WHITESPACE or body[-1:] in _JSON_WHITESPACE:
        # Whitespace around the top-level value (often a trailing newline) is not
        # part of the JSON value and cannot survive inside the envelope's JSON.
        body = body.strip(b" \t\n\r")
    if provider == "natterly":
        return _parse_natterly(source, body, received)
    if provider == "chatshipper":
        return _parse_chatshipper(source, body, received)
    if provider == "standard":
        return _parse_standard(source, body, received, webhook_id)
    raise ContractError(f"unknown provider {provider!r}; expected one of {', '.join(PROVIDERS)}")
