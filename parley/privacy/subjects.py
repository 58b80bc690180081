"""Data subjects: whose data key seals a webhook's personal parts.

A subject id is ``"<provider>:<kind>:<id>"``, the kind in the provider's own words:

==============  ==================================  ==========================================
aggregate       Natterly                            ChatShipper
==============  ==================================  ==========================================
chat            ``natterly:chat:<chat uuid>``       ``chatshipper:conversation:<id>``
visitor         ``natterly:visitor:<visitor uuid>`` ``chatshipper:contact:<id>``
agent           ``natterly:agent:<user uuid>``      ``chatshipper:user:<id>``
other           ``natterly:event:<event id>``       ``chatshipper:event:<event id>``
==============  ==================================  ==========================================

Standard Webhooks senders: ``standard:chat:<id>`` and ``standard:event:<event id>``.

The subject follows the record's aggregate (its Kafka key), so every record of one chat is
sealed with that chat's key whatever the body says about its visitor, and one chat can be
forgotten alone. A chat is tied to its visitor by a *link* kept in the key store
(:meth:`~parley.privacy.keys.KeyStore.link`): the receiver records ``chat → visitor`` the
first time a webhook of the chat names the visitor's id (:func:`parent_of`). A Natterly chat
whose visitor has no id yet (an anonymous visitor, a ``ChatInitiated`` without
``chat.visitor.uuid``) has no link until a later webhook of that chat names one (a
``VisitorCreated`` or ``SessionRegistration`` carrying the chat, or any chat event with
``chat.visitor.uuid``, ``chat.session.visitor.uuid``); forgetting a visitor destroys the
visitor's key and the keys of every chat linked to it (docs/privacy.md).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Final

import msgspec

__all__ = ["parent_in", "parent_of", "subject_of", "visitor_subject"]

# aggregate -> the provider's word for it
_KINDS: Final[Mapping[str, Mapping[str, str]]] = {
    "natterly": {"chat": "chat", "visitor": "visitor", "agent": "agent", "other": "event"},
    "chatshipper": {"chat": "conversation", "visitor": "contact", "agent": "user",
                    "other": "event"},
    "standard": {"chat": "chat", "visitor": "visitor", "agent": "agent", "other": "event"},
}


def subject_of(provider: str, aggregate: str, key: str) -> str:
    """The subject of a record about ``aggregate`` ``key`` (the envelope's aggregate and
    Kafka key) from ``provider``."""
    kind = _KINDS.get(provider, _KINDS["standard"]).get(aggregate, "event")
    return f"{provider}:{kind}:{key}"


def visitor_subject(provider: str, visitor_id: str) -> str:
    """The subject of a visitor (Natterly) or contact (ChatShipper) by its id."""
    return subject_of(provider, "visitor", visitor_id)


def parent_of(provider: str, aggregate: str, body: object) -> str | None:
    """The visitor subject a chat record's decoded ``body`` names, or None.

    Natterly: ``payload.chat.visitor.uuid``, else ``payload.chat.session.visitor.uuid``,
    else ``payload.visitor.uuid``. ChatShipper: ``data.conversation.contact`` (an id, or an
    object with ``id``), else ``data.message.conversation.contact``. Only for chat records
    (a visitor's own records are sealed with the visitor's key already).
    """
    if aggregate != "chat" or not isinstance(body, dict):
        return None
    found: object = None
    if provider == "natterly":
        payload = _obj(body.get("payload"))
        chat = _obj(payload.get("chat"))
        found = (_obj(chat.get("visitor")).get("uuid")
                 or _obj(_obj(chat.get("session")).get("visitor")).get("uuid")
                 or _obj(payload.get("visitor")).get("uuid"))
    elif provider == "chatshipper":
        data = _obj(body.get("data"))
        conversation = _obj(data.get("conversation")) or _obj(
            _obj(data.get("message")).get("conversation"))
        contact = conversation.get("contact")
        found = _obj(contact).get("id") if isinstance(contact, dict) else contact
    if isinstance(found, str) and found:
        return visitor_subject(provider, found)
    return None


def _obj(value: object) -> dict[str, object]:
    return value if isinstance(value, dict) else {}


def parent_in(provider: str, aggregate: str, body: bytes) -> str | None:
    """:func:`parent_of` the JSON ``body`` (the receiver passes a body's facts, which keep
    every id the rule reads), without decoding all of it.

    Fast path: a decode into Structs that hold only the members the rule reads (the rest is
    skipped in C), about a third of a full decode. A shape they cannot hold or cannot tell
    apart (a member of another type; a ChatShipper ``conversation`` object without a
    ``contact``, where the rule depends on whether the object is empty) takes the full
    decode and :func:`parent_of` itself, so both always agree.
    """
    if aggregate != "chat":
        return None
    fast = _FAST_PARENT.get(provider)
    if fast is not None:
        try:
            found = fast(body)
        except (msgspec.DecodeError, _Ambiguous):  # ValidationError is a DecodeError
            pass
        else:
            return visitor_subject(provider, found) if found else None
    try:
        return parent_of(provider, aggregate, _TREE.decode(body))
    except msgspec.DecodeError:
        return None


class _Ambiguous(Exception):
    """The fast path cannot tell what :func:`parent_of` would say."""


class _Uuid(msgspec.Struct, gc=False):
    uuid: str | None = None


class _NSession(msgspec.Struct, gc=False):
    visitor: _Uuid | None = None


class _NChat(msgspec.Struct, gc=False):
    visitor: _Uuid | None = None
    session: _NSession | None = None


class _NPayload(msgspec.Struct, gc=False):
    chat: _NChat | None = None
    visitor: _Uuid | None = None


class _NBody(msgspec.Struct, gc=False):
    payload: _NPayload | None = None


class _CContact(msgspec.Struct, gc=False):
    id: str | None = None


class _CConversation(msgspec.Struct, gc=False):
    contact: str | _CContact | None = None


class _CMessage(msgspec.Struct, gc=False):
    conversation: str | _CConversation | None = None


class _CData(msgspec.Struct, gc=False):
    conversation: str | _CConversation | None = None
    message: _CMessage | None = None


class _CBody(msgspec.Struct, gc=False):
    data: _CData | None = None


_TREE = msgspec.json.Decoder()
_NATTERLY = msgspec.json.Decoder(_NBody)
_CHATSHIPPER = msgspec.json.Decoder(_CBody)


def _natterly_parent(body: bytes) -> str | None:
    payload = _NATTERLY.decode(body).payload
    if payload is None:
        return None
    chat = payload.chat or _NChat()
    session = chat.session or _NSession()
    return ((chat.visitor or _Uuid()).uuid or (session.visitor or _Uuid()).uuid
            or (payload.visitor or _Uuid()).uuid)


def _chatshipper_parent(body: bytes) -> str | None:
    data = _CHATSHIPPER.decode(body).data
    if data is None:
        return None
    conversation = data.conversation
    if isinstance(conversation, _CConversation):
        if conversation.contact is None:
            raise _Ambiguous  # {} falls through to the message's conversation, {"id": ..} not
    else:
        message = data.message
        conversation = message.conversation if message is not None else None
    if not isinstance(conversation, _CConversation):
        return None
    contact = conversation.contact
    return contact.id if isinstance(contact, _CContact) else contact


_FAST_PARENT: Final[Mapping[str, Callable[[bytes], str | None]]] = {
    "natterly": _natterly_parent, "chatshipper": _chatshipper_parent}
