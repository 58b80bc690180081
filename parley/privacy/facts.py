"""What of a webhook body stays readable: its non-personal facts, per provider.

An allowlist, not a denylist: a member is kept only if the provider's fact schema names it,
so a field a provider adds tomorrow (a custom form, a new free-text note) is sealed, never
left readable. Kept: ids, times, statuses, event names and types, roles, flags, ratings,
counts, department and site names, and agents' ids and names (staff, not the data subject).
Dropped (readable only with the subject's key): visitor and contact names, emails and
telephones, IP addresses, cities, countries and time zones, message texts, chat subjects,
page URLs and titles, session tokens, custom data, ActivityStreams summaries (they quote
names), and anything unknown.

A schema node maps a member name to ``None`` (keep a scalar: string, number, bool, null, or
a list of them) or to a nested node (recurse into an object, or into each object of a
list). A nested node with the key :data:`ID` also keeps a plain scalar in its place (ChatShipper
refers to a contact, user or conversation by id or embeds the object). ``"*"`` keeps every
member's scalar (ChatShipper's ``links``: API URLs made of ids).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final, TypeAlias

import msgspec

__all__ = ["ID", "facts_of"]

Node: TypeAlias = "Mapping[str, Node | None]"
ID: Final = "\x00id"
_ANY: Final = "*"

_N_DEPARTMENT: Node = {"uuid": None, "name": None}
_N_SITE: Node = {"uuid": None, "name": None, "color": None, "initials": None}
_N_USER: Node = {"uuid": None, "name": None, "admin": None, "status": None}
_N_VISITOR: Node = {"uuid": None, "anonymous": None}
_N_SESSION: Node = {"uuid": None, "visitor": _N_VISITOR, "site": _N_SITE, "active_chat_id": None,
                    "language": None}
_N_MESSAGE: Node = {
    "uuid": None, "chat": None, "event": None, "posted_by_visitor": None, "created_at": None,
    "updated_at": None, "whisper": None,
    "author": {"type": None, "details": {"uuid": None, "anonymous": None}},
    "file": {"uuid": None, "size": None, "content_type": None},
}
_N_CHAT: Node = {
    "uuid": None, "status": None, "initiated_at": None, "last_message_at": None,
    "prompt_for_transcript": None, "prompt_for_rating": None, "closed_at": None,
    "verified": None, "trusted": None, "pending_message_set_at": None, "stale": None,
    "rating": None, "browser": None, "platform": None, "department": _N_DEPARTMENT,
    "user": _N_USER, "visitor": _N_VISITOR, "session": _N_SESSION, "session_id": None,
    "last_message": _N_MESSAGE, "site": _N_SITE,
}
NATTERLY: Node = {
    "event": None, "timestamp": None,
    "payload": {"chat": _N_CHAT, "messages": _N_MESSAGE, "user": _N_USER, "rating": None,
                "visitor": _N_VISITOR, "session": _N_SESSION, "session_id": None,
                "site": _N_SITE, "status": None},
}

_C_REF: Node = {"id": None, "type": None}
_C_USER: Node = {ID: None, "id": None, "organization": None, "name": None, "displayName": None,
                 "role": None, "status": None, "createdAt": None, "updatedAt": None}
_C_CONTACT: Node = {ID: None, "id": None, "organization": None, "conversation": None,
                    "createdAt": None, "updatedAt": None}
_C_CONVERSATION: Node = {
    ID: None, "id": None, "organization": None, "type": None, "contact": _C_CONTACT,
    "status": None, "category": None, "touchpoint": None, "createdAt": None, "updatedAt": None,
    "participants": {"user": _C_USER, "role": None, "active": None, "accepted": None,
                     "inbox": None},
}
_C_MESSAGE: Node = {
    "id": None, "organization": None, "orgPath": None, "conversation": _C_CONVERSATION,
    "type": None, "role": None, "contentType": None, "isBackchannel": None, "user": _C_USER,
    "touchpoint": None, "createdAt": None, "updatedAt": None,
}
CHATSHIPPER: Node = {
    "id": None, "event": None, "timestamp": None, "organization": None,
    "activity": {"@context": None, "type": None, "actor": _C_REF, "object": _C_REF,
                 "published": None},
    "data": {"conversation": _C_CONVERSATION, "message": _C_MESSAGE, "contact": _C_CONTACT,
             "user": _C_USER, "links": {_ANY: None}},
}

STANDARD: Node = {
    "type": None, "timestamp": None,
    "data": {"id": None, "chat_id": None, "conversation_id": None, "status": None,
             "type": None},
}

_SCHEMAS: Final[Mapping[str, Node]] = {"natterly": NATTERLY, "chatshipper": CHATSHIPPER,
                                       "standard": STANDARD}
_DROP: Final = object()
_ENCODE = msgspec.json.Encoder()


def facts_of(provider: str, tree: object) -> bytes:
    """The JSON of ``tree`` (a decoded body) with only the members the provider's fact
    schema keeps; ``{}`` for a body that is not an object."""
    kept = _keep(tree, _SCHEMAS.get(provider, STANDARD)) if isinstance(tree, dict) else _DROP
    return _ENCODE.encode(kept if kept is not _DROP else {})


def _keep(value: object, node: Node | None) -> object:
    if isinstance(value, dict):
        if node is None:
            return _DROP
        out = {}
        anything = node.get(_ANY, _DROP)
        for name, member in value.items():
            sub = node.get(name, anything)
            if sub is _DROP:
                continue
            kept = _keep(member, sub)  # type: ignore[arg-type]
            if kept is not _DROP:
                out[name] = kept
        return out
    if isinstance(value, list):
        return [k for k in (_keep(v, node) for v in value) if k is not _DROP]
    if node is None or ID in node:
        return value
    return _DROP
