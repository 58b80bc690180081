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

from collections.abc import Mapping
from typing import Final

__all__ = ["parent_of", "subject_of", "visitor_subject"]

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
